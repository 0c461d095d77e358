"""The rollout policy, written once for every backend (a template method: the policy here, the primitives
in each backend's endpoints collaborator, the champion alias/tag in its registry, a ``ChampionRegistry``).

- **deploy**: when nothing serves but the registry has a champion (a new, stopped or deleted endpoint),
  the champion is put back first and given 100 %, so a candidate never lands alone; the new model goes to
  the colour that does not serve, with 0 % of traffic (100 % only when nothing serves and there is no
  champion: a first deploy); an optional smoke test runs against it, and a failed one removes it.
- **both colours serve** (a split an operator set by hand): deploy refuses, changes nothing and says what
  to do. Taking either colour would replace a model that serves live traffic, and keeping that colour's
  share would hand live traffic to a model nobody evaluated. Refusing is the one rule that never does.
- **promote**: traffic to the winner first (in full: the others 0 %), then the champion alias/tag with
  the holdout accuracy, then the old deployments are deleted, then the history entry.
- **reject**: the champion keeps serving; the version is tagged rejected with the reason; the candidate
  deployment is removed, even when it is the only one serving (a first deploy below the no-skill floor):
  a rejected model serves nobody, and the endpoint serves nothing until a model is promoted.
- **rollback**: a promotion with event "rollback" of the previous champion (``previous_champion_version``),
  deployed beside the serving model and evaluated first, like any candidate.
- **watch** (``backends.domain.shadow``): a promotion with a ``watch`` keeps the old deployments at 0 %
  (warm); ``end_watch`` removes them when the window ends clean, and a watch rollback is a promotion of the
  old deployment with event "rollback" (the path above, without a new deployment: the old one is warm).

A backend implements only the primitives (abstract methods below); it never decides a colour or a share.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from backends.errors import DeploymentError, HeartflowError
from backends.domain.history import who
from backends.domain.lineage import recorded_holdout_accuracy
from backends.results import Endpoint, EvalReport, GateFigures, HistoryEntry, ModelVersion, ShadowFigures, WatchRecord
from backends.domain.spec import DeploySpec

logger = logging.getLogger(__name__)

BLUE, GREEN = "blue", "green"


def serving(traffic: Mapping[str, int]) -> dict[str, int]:
    """The deployments with a share of traffic."""
    return {name: int(share) for name, share in traffic.items() if int(share) > 0}


def pick_colour(traffic: Mapping[str, int], colours: tuple[str, str] = (BLUE, GREEN)) -> str:
    """The colour that does not serve (blue when neither does). Refuses when both serve."""
    blue, green = colours
    live = serving(traffic)
    if blue in live and green in live:
        raise DeploymentError(
            f"both {blue} and {green} receive traffic ({live}); heartflow will not replace a deployment that "
            "serves, nor give live traffic to a model that was not evaluated. Send all traffic to one of them "
            "(promote or reject, or set the traffic by hand), then deploy again. Nothing was changed."
        )
    return green if blue in live else blue


def traffic_after_deploy(traffic: Mapping[str, int], new: str) -> dict[str, int]:
    """Every deployment keeps its share and the new one gets 0 %, or 100 % when nothing serves."""
    out = {name: int(share) for name, share in traffic.items() if name != new}
    out[new] = 0 if sum(out.values()) else 100
    return out


def traffic_for_promotion(names: Iterable[str], winner: str) -> dict[str, int]:
    """The winner 100 %, every other deployment 0 %, stated in full."""
    return {**{name: 0 for name in names}, winner: 100}


def previous_champion_version(entries: Iterable[HistoryEntry], current: str | None) -> str | None:
    """The last version promoted (or rolled back to) before the current champion took over."""
    served = [e.model_version for e in entries if e.event in {"promoted", "rollback"}]
    for version in reversed(served):
        if version != current:
            return version
    return None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


SmokeTest = Callable[[Endpoint], None]


class ChampionRegistry(Protocol):
    """What the policy needs of a backend's model registry (``LocalRegistry``, ``AzureRegistry``)."""

    def champion(self, model_name: str, /) -> ModelVersion | None:
        """The version holding the champion alias or tag."""
        ...

    def make_champion(self, model: ModelVersion, holdout_accuracy: float, /) -> None:
        """Move the champion alias/tag to ``model`` (tagged with its accuracy); the previous one retired."""
        ...

    def mark_rejected(self, model: ModelVersion, reason: str, holdout_accuracy: float | None, /) -> None:
        """Tag ``model`` rejected, with the reason (and its accuracy when it was evaluated)."""
        ...

    def get(self, model_name: str, version: str, /) -> ModelVersion:
        """One version; RegistrationError when it does not exist."""
        ...


class RolloutPolicy(abc.ABC):
    """deploy / promote / reject over a backend's primitives and its registry (a collaborator the
    backend passes in). Subclasses implement the endpoint and history primitives only."""

    colours: tuple[str, str] = (BLUE, GREEN)

    def __init__(self, registry: ChampionRegistry) -> None:
        self.registry = registry

    # ---- primitives -------------------------------------------------------------------------------
    def endpoint_name(self, requested: str) -> str:
        """The endpoint a spec's name refers to on this backend (Azure derives a default)."""
        return requested

    def prepare(self, endpoint_name: str, spec: DeploySpec, model: ModelVersion) -> None:
        """Check limits and get-or-create what a deployment needs (the endpoint, an environment). The base
        has nothing to prepare: the local host starts with its first deployment."""
        return None

    @abc.abstractmethod
    def read_traffic(self, endpoint_name: str) -> dict[str, int]:
        """Every deployment of the endpoint and its share (0 included); {} when nothing is deployed or
        the endpoint does not serve (stopped, deleted)."""

    @abc.abstractmethod
    def put_deployment(self, endpoint_name: str, deployment: str, model: ModelVersion, spec: DeploySpec) -> None:
        """Create or replace ``deployment`` serving ``model`` and block until it answers. Must not give it
        traffic while another deployment serves. On failure: raise DeploymentError and leave no new
        deployment behind (the endpoint keeps what it had)."""

    @abc.abstractmethod
    def set_traffic(self, endpoint_name: str, traffic: Mapping[str, int]) -> None:
        """Replace the traffic split with ``traffic`` (stated in full, summing to 100 or 0)."""

    @abc.abstractmethod
    def delete_deployment(self, endpoint_name: str, deployment: str) -> None:
        """Remove a deployment that has no traffic; a missing one is not an error."""

    @abc.abstractmethod
    def describe(self, endpoint_name: str, deployment: str, model: ModelVersion) -> Endpoint:
        """The Endpoint result addressed to ``deployment``."""

    @abc.abstractmethod
    def append_history(self, entry: HistoryEntry) -> None:
        """Record one promotion, rejection or rollback."""

    @abc.abstractmethod
    def read_history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        """The endpoint's history, oldest first."""

    @abc.abstractmethod
    def deployed_versions(self, endpoint_name: str) -> dict[str, tuple[str, str]]:
        """Each deployment of the endpoint and the (model name, version) it serves; {} when none."""

    # ---- the policy -------------------------------------------------------------------------------
    def deploy(self, model: ModelVersion, spec: DeploySpec, smoke_test: SmokeTest | None = None) -> Endpoint:
        name = self.endpoint_name(spec.endpoint_name)
        self.prepare(name, spec, model)
        traffic = self.read_traffic(name)
        champion = self.registry.champion(model.name)
        if not serving(traffic) and champion is not None and champion.version != model.version:
            # Nothing serves but a champion exists: put it back first, so the candidate lands beside it
            # with 0 % and a rejected candidate never serves.
            logger.info("endpoint %s serves nothing: restoring champion %s v%s first", name, champion.name,
                        champion.version)
            restored = pick_colour(traffic, self.colours)
            self.put_deployment(name, restored, champion, spec)
            self.set_traffic(name, traffic_for_promotion(self.read_traffic(name), restored))
            traffic = self.read_traffic(name)
        colour = pick_colour(traffic, self.colours)
        logger.info("deploying %s v%s as %s on %s beside %s", model.name, model.version, colour, name,
                    serving(traffic) or "nothing")
        self.put_deployment(name, colour, model, spec)
        # Read again: a change made while the deployment was being created is not overwritten.
        after = traffic_after_deploy(self.read_traffic(name), colour)
        self.set_traffic(name, after)
        endpoint = self.describe(name, colour, model)
        if smoke_test is not None:
            try:
                smoke_test(endpoint)
            except HeartflowError:
                # A model that failed its smoke test serves nobody, not even on a first deploy.
                if serving(after).get(colour):
                    self.set_traffic(name, {deployment: 0 for deployment in after})
                self._remove_quietly(name, colour)
                raise
        logger.info("deployment %s of %s is ready; traffic %s", colour, name, dict(endpoint.traffic))
        return endpoint

    def promote(
        self, endpoint: Endpoint, model: ModelVersion, report: EvalReport, *, reason: str = "",
        triggered_by: str = "", event: str = "promoted", gate: GateFigures | None = None,
        shadow: ShadowFigures | None = None, watch: WatchRecord | None = None,
    ) -> Endpoint:
        traffic = self.read_traffic(endpoint.name)
        if endpoint.deployment not in traffic:
            raise DeploymentError(
                f"endpoint {endpoint.name} has no deployment {endpoint.deployment} to promote (it has "
                f"{sorted(traffic) or 'none'}); deploy again"
            )
        previous = self.registry.champion(model.name)
        self.set_traffic(endpoint.name, traffic_for_promotion(traffic, endpoint.deployment))
        self.registry.make_champion(model, report.accuracy)
        if watch is None or watch.outcome != "watching":  # a watched promotion keeps them warm at 0 %
            for old in sorted(set(traffic) - {endpoint.deployment}):
                self.delete_deployment(endpoint.name, old)
        self.append_history(HistoryEntry(
            time=now_iso(), event=event, endpoint=endpoint.name, deployment=endpoint.deployment,
            model_name=model.name, model_version=model.version, accuracy=report.accuracy,
            champion_accuracy=recorded_holdout_accuracy(previous),
            reason=reason or f"holdout accuracy {report.accuracy:.4f}", triggered_by=triggered_by or who(), gate=gate,
            shadow=shadow, watch=watch,
        ))
        logger.info("%s %s v%s: %s serves 100 %% of %s", event, model.name, model.version, endpoint.deployment,
                    endpoint.name)
        return self.describe(endpoint.name, endpoint.deployment, model)

    def reject(
        self, endpoint: Endpoint, model: ModelVersion, reason: str, *, report: EvalReport | None = None,
        triggered_by: str = "", gate: GateFigures | None = None, shadow: ShadowFigures | None = None,
    ) -> None:
        traffic = self.read_traffic(endpoint.name)
        share = traffic.get(endpoint.deployment, 0)
        others = serving({k: v for k, v in traffic.items() if k != endpoint.deployment})
        if share > 0 and others:
            raise DeploymentError(
                f"{endpoint.deployment} carries {share} % of {endpoint.name}'s traffic beside {others}; "
                "set its traffic to 0 before rejecting it"
            )
        if share > 0:
            # The only serving deployment (a first deploy): a rejected model serves nobody, as one that failed
            # its smoke test; the endpoint serves nothing until a model is promoted.
            logger.warning("rejected deployment %s was the only one serving %s; it is removed and the endpoint "
                           "serves nothing until a model is promoted", endpoint.deployment, endpoint.name)
            self.set_traffic(endpoint.name, {deployment: 0 for deployment in traffic})
            self.delete_deployment(endpoint.name, endpoint.deployment)
        elif endpoint.deployment in traffic:
            self.delete_deployment(endpoint.name, endpoint.deployment)
        accuracy = report.accuracy if report else None
        self.registry.mark_rejected(model, reason, accuracy)
        self.append_history(HistoryEntry(
            time=now_iso(), event="rejected", endpoint=endpoint.name, deployment=endpoint.deployment,
            model_name=model.name, model_version=model.version, accuracy=accuracy,
            champion_accuracy=recorded_holdout_accuracy(self.registry.champion(model.name)), reason=reason,
            triggered_by=triggered_by or who(), gate=gate, shadow=shadow,
        ))
        logger.info("rejected %s v%s: %s", model.name, model.version, reason)

    def end_watch(self, endpoint: Endpoint, model: ModelVersion, watch: WatchRecord) -> None:
        """The watch after ``model``'s promotion ended clean: the deployments kept warm are removed and the
        history says the watch passed."""
        traffic = self.read_traffic(endpoint.name)
        for old in sorted(set(traffic) - {endpoint.deployment}):
            if traffic.get(old, 0) == 0:
                self.delete_deployment(endpoint.name, old)
        self.append_history(HistoryEntry(
            time=now_iso(), event="watch-passed", endpoint=endpoint.name, deployment=endpoint.deployment,
            model_name=model.name, model_version=model.version, accuracy=None, champion_accuracy=None,
            reason=watch.reason or "watch passed", triggered_by="watch", watch=watch,
        ))

    def _remove_quietly(self, endpoint_name: str, deployment: str) -> None:
        try:
            self.delete_deployment(endpoint_name, deployment)
        except DeploymentError as exc:
            logger.warning("could not remove deployment %s of %s: %s", deployment, endpoint_name, exc)
