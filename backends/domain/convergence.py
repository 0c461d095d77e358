"""What a run does, holding the rollout slot, before it deploys: put the endpoint back in a state the policy
could have left, whatever a crashed run left behind.

A run is killed at any point of deploy, evaluate, gate or promote; the next run (or a rollback) holds the
slot, so no live run is changing the endpoint while this looks at it. Then:

- **a promotion cut short before the alias moved**: traffic went to the candidate but the champion alias
  still names the old version, whose deployment is still there. The alias is the registry's truth and the
  candidate's promotion was never recorded: traffic goes back to the champion's deployment.
- **deployments without traffic** beside a serving one: a candidate deployed at 0 % by a run that stopped
  before its gate decided, or the old champion's deployment a promotion did not get to remove. Each is
  deleted; a version that was never decided (status ``candidate``) is tagged rejected (``abandoned: ...``)
  and history gets one ``abandoned`` record for it.
- **the champion serves but history lacks its promotion** (a promotion killed after the alias moved, before
  the history entry): the ``promoted`` record is written, saying it was completed by this run.

Each action is returned as one sentence for the run's log. Nothing is done when nothing serves (the deploy
restores the champion first) or when the endpoint does not exist.
"""

from __future__ import annotations

import logging

from backends.domain.lineage import TAG_STATUS, recorded_holdout_accuracy
from backends.domain.rollout import RolloutPolicy, now_iso, serving, traffic_for_promotion
from backends.errors import RegistrationError
from backends.results import HistoryEntry, ModelVersion

logger = logging.getLogger(__name__)

ABANDONED = "abandoned"
UNDECIDED = "candidate"


def converge(policy: RolloutPolicy, requested_endpoint: str, model_name: str, triggered_by: str,
             adopting: ModelVersion | None = None) -> tuple[str, ...]:
    """Repair what a crashed run left on the endpoint (see the module); the actions taken, in order.
    ``adopting``: the version this run is about to deploy. A rerun after a crash registers the same version
    (registration is idempotent); its deployment left at 0 % is removed for this run to deploy again, but the
    version is not abandoned: this run decides it, once."""
    name = policy.endpoint_name(requested_endpoint)
    traffic = policy.read_traffic(name)
    if not serving(traffic):
        return ()
    actions: list[str] = []
    deployed = policy.deployed_versions(name)
    champion = policy.registry.champion(model_name)
    champion_deployment = _deployment_of(deployed, champion)
    if champion is not None and champion_deployment is not None and champion_deployment not in serving(traffic):
        cut_short = ", ".join(f"{d} (v{deployed.get(d, ('', '?'))[1]})" for d in serving(traffic))
        policy.set_traffic(name, traffic_for_promotion(traffic, champion_deployment))
        actions.append(f"{cut_short} served on {name} without being champion (a promotion cut short): traffic "
                       f"back to champion v{champion.version} on {champion_deployment}")
        traffic = policy.read_traffic(name)
    for deployment in sorted(set(traffic) - set(serving(traffic))):
        model = deployed.get(deployment)
        policy.delete_deployment(name, deployment)
        if model is None:
            actions.append(f"deployment {deployment} of {name} had no traffic and no model: removed")
            continue
        if adopting is not None and model == (adopting.name, adopting.version):
            actions.append(f"{adopting.name} v{adopting.version} was left on {deployment} at 0 % by a crashed run of "
                           "the same training: removed, this run deploys and decides it")
            continue
        version = _get(policy, model)
        if version is not None and version.tags.get(TAG_STATUS, UNDECIDED) == UNDECIDED:
            reason = (f"{ABANDONED}: deployed on {deployment} at 0 % by a run that stopped before its gate decided; "
                      f"removed by {triggered_by}")
            policy.registry.mark_rejected(version, reason, None)
            policy.append_history(HistoryEntry(
                time=now_iso(), event=ABANDONED, endpoint=name, deployment=deployment, model_name=version.name,
                model_version=version.version, accuracy=None,
                champion_accuracy=recorded_holdout_accuracy(champion), reason=reason, triggered_by=triggered_by,
            ))
            actions.append(f"{version.name} v{version.version} was left on {deployment} at 0 % by a crashed run: "
                           "deployment removed, version tagged rejected (abandoned)")
        else:
            actions.append(f"deployment {deployment} of {name} (v{model[1]}, no traffic) was left by a promotion "
                           "cut short: removed")
    if champion is not None and _deployment_of(policy.deployed_versions(name), champion) in serving(traffic):
        actions.extend(_record_missing_promotion(policy, name, champion, traffic, triggered_by))
    for action in actions:
        logger.warning("converged: %s", action)
    return tuple(actions)


def _deployment_of(deployed: dict[str, tuple[str, str]], model: ModelVersion | None) -> str | None:
    if model is None:
        return None
    return next((d for d, (m, v) in sorted(deployed.items()) if (m, v) == (model.name, model.version)), None)


def _get(policy: RolloutPolicy, model: tuple[str, str]) -> ModelVersion | None:
    try:
        return policy.registry.get(*model)
    except RegistrationError as exc:
        logger.warning("deployed model %s v%s is not in the registry: %s", model[0], model[1], exc)
        return None


def _record_missing_promotion(policy: RolloutPolicy, name: str, champion: ModelVersion,
                              traffic: dict[str, int], triggered_by: str) -> list[str]:
    served = [e for e in policy.read_history(name) if e.event in {"promoted", "rollback"}]
    if served and served[-1].model_version == champion.version:
        return []
    deployment = _deployment_of(policy.deployed_versions(name), champion) or next(iter(serving(traffic)))
    policy.append_history(HistoryEntry(
        time=now_iso(), event="promoted", endpoint=name, deployment=deployment, model_name=champion.name,
        model_version=champion.version, accuracy=recorded_holdout_accuracy(champion),
        champion_accuracy=None,
        reason=f"promotion of v{champion.version} completed: its run stopped after the alias moved, before this "
               "record; recorded by the next run", triggered_by=triggered_by,
    ))
    return [f"champion v{champion.version} served on {name} but its promotion was not in history: recorded"]


def inconsistencies(policy: RolloutPolicy, requested_endpoint: str, model_name: str) -> tuple[str, ...]:
    """What `heartflow status` names as not agreeing (read only; the next run repairs the first three)."""
    name = policy.endpoint_name(requested_endpoint)
    traffic = policy.read_traffic(name)
    live = serving(traffic)
    deployed = policy.deployed_versions(name) if traffic else {}
    champion = policy.registry.champion(model_name)
    found: list[str] = []
    for deployment in sorted(set(traffic) - set(live)):
        version = deployed.get(deployment, ("", "?"))[1]
        found.append(f"deployment {deployment} (v{version}) has no traffic: left by a run that stopped before its "
                     "gate decided; the next run removes it")
    champion_deployment = _deployment_of(deployed, champion)
    if champion is not None and live and champion_deployment not in live:
        versions = ", ".join(f"v{deployed.get(d, ('', '?'))[1]} on {d}" for d in live)
        found.append(f"{name} serves {versions}, not champion v{champion.version}")
    if champion is not None and live and champion_deployment in live:
        served = [e for e in policy.read_history(name) if e.event in {"promoted", "rollback"}]
        if not served or served[-1].model_version != champion.version:
            found.append(f"champion v{champion.version} serves but history has no record of its promotion")
    if champion is not None and not live:
        found.append(f"champion v{champion.version} exists but nothing serves on {name}: the next run restores it")
    if champion is None and live:
        versions = ", ".join(f"v{deployed.get(d, ('', '?'))[1]}" for d in live)
        found.append(f"{name} serves {versions} but no version is champion (a first run that stopped before its gate)")
    return tuple(found)
