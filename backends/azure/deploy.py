"""Blue/green deployment on a managed online endpoint: deploy beside the serving deployment, promote,
reject, tear down. Traffic is always written explicitly and in full, so no deployment loses its share by
accident (an endpoint update that omits traffic can zero it)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from backends.azure import entities
from backends.azure.limits import check_traffic, enforce_limits
from backends.azure.resilience import await_poller, translate
from backends.base import Endpoint, EvalReport, HistoryEntry, ModelVersion
from backends.errors import DeploymentError, RegistrationError
from backends.history import TAG_HOLDOUT_ACCURACY, TAG_REASON, TAG_STATUS, recorded_holdout_accuracy, who
from backends.spec import DeploySpec, PipelineSpec, SweepSpec

if TYPE_CHECKING:
    from backends.azure.backend import AzureBackend

logger = logging.getLogger(__name__)

HISTORY_PREFIX = "heartflow-history-"
HISTORY_KEEP = 20
TAG_VALUE_LIMIT = 256
CHAMPION_TAG = "champion"  # Azure ML has no model aliases: the champion version carries champion=true
LOG_LINES = 60


def serving(traffic: Mapping[str, int]) -> dict[str, int]:
    return {name: int(share) for name, share in traffic.items() if int(share) > 0}


def pick_deployment_name(existing: Mapping[str, int], blue: str, green: str) -> str:
    """The colour that is not serving. Refuses when both serve (a split someone set by hand)."""
    live = serving(existing)
    if blue in live and green in live:
        raise DeploymentError(
            f"both {blue} and {green} receive traffic ({live}); heartflow will not replace a serving deployment. "
            "Promote or reject one first (or set traffic by hand), then deploy again."
        )
    return green if blue in live else blue


def traffic_after_deploy(existing: Mapping[str, int], new: str) -> dict[str, int]:
    """The new deployment gets 0 % beside what serves, or 100 % when nothing serves."""
    traffic = {name: int(share) for name, share in existing.items() if name != new}
    traffic[new] = 0 if sum(traffic.values()) else 100
    return traffic


def traffic_for_promotion(existing: Mapping[str, int], winner: str) -> dict[str, int]:
    return {**{name: 0 for name in existing}, winner: 100}


def encode_history(entry: HistoryEntry) -> tuple[str, str]:
    """A history entry as one endpoint tag (ARM tag values hold at most 256 characters): the key carries
    the time, the value a compact JSON list; the reason is shortened to fit."""
    stamp = datetime.fromisoformat(entry.time).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    fields = [entry.event, entry.deployment, entry.model_name, entry.model_version, entry.accuracy,
              entry.champion_accuracy, entry.triggered_by[:40]]
    room = TAG_VALUE_LIMIT - len(json.dumps(fields + [""], separators=(",", ":")))
    reason = entry.reason
    while len(json.dumps(reason)[1:-1]) > max(room, 0):
        reason = reason[: max(len(reason) - 8, 0)]
    return f"{HISTORY_PREFIX}{stamp}", json.dumps(fields + [reason], separators=(",", ":"))


def decode_history(endpoint: str, key: str, value: str) -> HistoryEntry | None:
    try:
        stamp = datetime.strptime(key[len(HISTORY_PREFIX):], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)
        event, deployment, model_name, version, accuracy, champion, who, reason = json.loads(value)
    except (ValueError, TypeError):
        logger.warning("ignoring unreadable history tag %s on %s", key, endpoint)
        return None
    return HistoryEntry(time=stamp.isoformat(timespec="seconds"), event=event, endpoint=endpoint, deployment=deployment,
                        model_name=model_name, model_version=str(version), accuracy=accuracy, champion_accuracy=champion,
                        reason=reason, triggered_by=who)


def with_history(tags: Mapping[str, str] | None, entry: HistoryEntry) -> dict[str, str]:
    """Tags plus one history entry, keeping the latest HISTORY_KEEP (an endpoint holds at most 50 tags)."""
    key, value = encode_history(entry)
    out = dict(tags or {})
    out[key] = value
    for old in sorted(k for k in out if k.startswith(HISTORY_PREFIX))[:-HISTORY_KEEP]:
        del out[old]
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class DeployMixin:
    """deploy / endpoint_key / promote / reject / teardown for AzureBackend."""

    def _deploy_spec_limits(self: AzureBackend, spec: DeploySpec, model_name: str) -> None:
        enforce_limits(PipelineSpec.model_construct(model_name=model_name, sweep=SweepSpec(), deploy=spec), self.settings)

    def _endpoint_name(self: AzureBackend, spec: DeploySpec | None = None) -> str:
        return self.settings.endpoint_name or (spec.endpoint_name if spec else DeploySpec().endpoint_name)

    def _logs_hint(self: AzureBackend, endpoint: str, deployment: str) -> str:
        s = self.settings
        return (f"`az ml online-deployment get-logs --name {deployment} --endpoint-name {endpoint} "
                f"-g {s.resource_group} -w {s.workspace_name}` or the endpoint's Logs tab in Azure ML Studio")

    def _get_endpoint(self: AzureBackend, client: Any, name: str) -> Any | None:
        try:
            return self.call("read the endpoint", client.online_endpoints.get, name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"reading endpoint {name}") from exc

    def _update_endpoint(self: AzureBackend, client: Any, endpoint: Any, traffic: Mapping[str, int], what: str) -> Any:
        """Write the endpoint with ``traffic`` stated in full (checked: sums to 0 or 100)."""
        problems = check_traffic(traffic)
        if problems:
            raise DeploymentError(f"refusing to set traffic on {endpoint.name}: {'; '.join(map(str, problems))}")
        endpoint.traffic = dict(traffic)
        try:
            poller = self.call(what, client.online_endpoints.begin_create_or_update, endpoint)
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"{what} on endpoint {endpoint.name}") from exc
        return await_poller(poller, self.settings.operation_timeout_s, f"{what} on endpoint {endpoint.name}", DeploymentError)

    def _ensure_endpoint(self: AzureBackend, client: Any, name: str) -> Any:
        endpoint = self._get_endpoint(client, name)
        if endpoint is not None:
            return endpoint
        logger.info("creating endpoint %s (key auth)", name)
        try:
            poller = self.call("create the endpoint", client.online_endpoints.begin_create_or_update, entities.build_endpoint(name))
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"creating endpoint {name}") from exc
        created = await_poller(poller, self.settings.operation_timeout_s, f"creating endpoint {name}", DeploymentError)
        self.ledger.record("endpoint", name, self.workspace_scope)
        return created if created is not None else self._get_endpoint(client, name)

    def _deployment_names(self: AzureBackend, client: Any, endpoint: str, traffic: Mapping[str, int]) -> set[str]:
        names = set(traffic)
        try:
            names |= {d.name for d in self.call("list deployments", client.online_deployments.list, endpoint_name=endpoint)}
        except AzureError as exc:
            logger.warning("could not list deployments of %s: %s", endpoint, exc)
        return names

    def deploy(self: AzureBackend, model: ModelVersion, spec: DeploySpec) -> Endpoint:
        client = self.client("deploy")
        self._deploy_spec_limits(spec, model.name)
        name = self._endpoint_name(spec)
        env_ref = self.ensure_environment(client)
        endpoint = self._ensure_endpoint(client, name)
        before = {k: int(v) for k, v in (endpoint.traffic or {}).items()}
        champion = self.champion(model.name)
        if not serving(before) and champion is not None and champion.version != model.version:
            # Nothing serves (a new or emptied endpoint) but a champion exists: put it back first, so the
            # candidate lands beside it with 0 % and a rejected candidate never serves.
            logger.info("endpoint %s serves nothing: restoring champion %s:%s first", name, champion.name, champion.version)
            self.deploy(champion, spec)
            endpoint = self._get_endpoint(client, name) or endpoint
            before = {k: int(v) for k, v in (endpoint.traffic or {}).items()}
        new = pick_deployment_name(before, self.settings.blue_deployment, self.settings.green_deployment)
        deployment = entities.build_deployment(
            self.settings, spec, name=new, endpoint_name=name, model=f"azureml:{model.name}:{model.version}", environment=env_ref,
        )
        logger.info("deploying %s:%s as %s on %s beside %s", model.name, model.version, new, name, serving(before) or "nothing")
        logs = self._logs_hint(name, new)
        try:
            poller = self.call("create the deployment", client.online_deployments.begin_create_or_update, deployment)
            result = await_poller(poller, self.settings.deployment_timeout_s, f"deployment {new} of endpoint {name}",
                                  DeploymentError, logs=logs)
        except (AzureError, DeploymentError) as exc:
            raise self._failed_deployment(client, name, new, before, exc) from exc
        state = str(getattr(result, "provisioning_state", "Succeeded") or "Succeeded")
        if state.lower() != "succeeded":
            raise self._failed_deployment(client, name, new, before, DeploymentError(f"provisioning state {state}"))
        # Traffic stated in full: what served keeps its share, the new deployment gets 0 % (100 % when
        # nothing served). Read again first so a concurrent change is not overwritten with stale shares.
        current = self._get_endpoint(client, name) or endpoint
        after = traffic_after_deploy({k: int(v) for k, v in (current.traffic or {}).items()}, new)
        self._update_endpoint(client, current, after, f"setting traffic {after}")
        final = self._get_endpoint(client, name) or endpoint
        traffic = {k: int(v) for k, v in (final.traffic or after).items()}
        logger.info("deployment %s of %s is ready; traffic %s", new, name, traffic)
        return self._to_endpoint(final, new, model, traffic)

    def _failed_deployment(self: AzureBackend, client: Any, endpoint: str, name: str, before: Mapping[str, int],
                           exc: BaseException) -> DeploymentError:
        """Collect the container logs, remove the failed deployment (it would bill), keep the traffic."""
        tail = ""
        try:
            tail = str(self.call("read the deployment logs", client.online_deployments.get_logs, name, endpoint, LOG_LINES) or "")
        except AzureError as log_exc:
            logger.warning("could not read the logs of %s/%s: %s", endpoint, name, log_exc)
        if name not in serving(before):
            try:
                poller = self.call("remove the failed deployment", client.online_deployments.begin_delete, name=name, endpoint_name=endpoint)
                await_poller(poller, self.settings.operation_timeout_s, f"removing failed deployment {name}", DeploymentError)
            except (AzureError, DeploymentError) as del_exc:
                logger.warning("could not remove failed deployment %s/%s: %s", endpoint, name, del_exc)
        base = translate(exc, DeploymentError, f"deployment {name} of endpoint {endpoint}", logs=self._logs_hint(endpoint, name))
        last_lines = "\n".join(tail.strip().splitlines()[-20:])
        message = (f"{base} The endpoint keeps its previous traffic {dict(before) or '{}'}. Check the scoring container "
                   f"(score.py init/run, the model folder, the environment's packages).")
        if last_lines:
            message += f"\nLast container log lines:\n{last_lines}"
        return type(base)(message) if isinstance(base, DeploymentError) else base

    def _to_endpoint(self: AzureBackend, endpoint: Any, deployment: str, model: ModelVersion, traffic: Mapping[str, int]) -> Endpoint:
        s = self.settings
        return Endpoint(
            name=endpoint.name, deployment=deployment, scoring_uri=str(getattr(endpoint, "scoring_uri", "") or ""),
            model_name=model.name, model_version=model.version,
            key_hint=f"az ml online-endpoint get-credentials --name {endpoint.name} -g {s.resource_group} -w {s.workspace_name}",
            traffic=dict(traffic),
            url=(f"https://ml.azure.com/endpoints/realtime/{endpoint.name}/detail?wsid=/subscriptions/{s.subscription_id}"
                 f"/resourcegroups/{s.resource_group}/workspaces/{s.workspace_name}"),
        )

    def endpoint_key(self: AzureBackend, endpoint: Endpoint) -> str:
        client = self.client("evaluate")
        try:
            keys = self.call("read the endpoint key", client.online_endpoints.get_keys, endpoint.name)
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"reading the key of endpoint {endpoint.name}") from exc
        key = getattr(keys, "primary_key", None)
        if not key:
            raise DeploymentError(f"endpoint {endpoint.name} returned no key: is its auth_mode 'key'?")
        return str(key)

    def promote(
        self: AzureBackend, endpoint: Endpoint, model: ModelVersion, report: EvalReport, *, reason: str = "",
        triggered_by: str = "", event: str = "promoted",
    ) -> Endpoint:
        client = self.client("promote")
        current = self._get_endpoint(client, endpoint.name)
        if current is None:
            raise DeploymentError(f"endpoint {endpoint.name} does not exist any more; deploy again")
        before = {k: int(v) for k, v in (current.traffic or {}).items()}
        names = self._deployment_names(client, endpoint.name, before)
        traffic = traffic_for_promotion({n: before.get(n, 0) for n in names}, endpoint.deployment)
        previous = self.champion(model.name)
        entry = HistoryEntry(
            time=now_iso(), event=event, endpoint=endpoint.name, deployment=endpoint.deployment, model_name=model.name,
            model_version=model.version, accuracy=report.accuracy, champion_accuracy=recorded_holdout_accuracy(previous),
            reason=reason or f"holdout accuracy {report.accuracy:.4f}", triggered_by=triggered_by or who(),
        )
        current.tags = with_history(current.tags, entry)
        self._update_endpoint(client, current, traffic, f"sending 100 % of traffic to {endpoint.deployment}")
        self.history_log.append(entry)
        self._move_champion(client, model, report)
        for old in sorted(names - {endpoint.deployment}):
            self._delete_deployment(client, endpoint.name, old)
        logger.info("%s %s:%s: %s serves 100 %% of %s", event, model.name, model.version, endpoint.deployment, endpoint.name)
        return self._to_endpoint(current, endpoint.deployment, model, {endpoint.deployment: 100})

    def _move_champion(self: AzureBackend, client: Any, model: ModelVersion, report: EvalReport) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for holder in self._versions(client, model.name):
            if (holder.tags or {}).get(CHAMPION_TAG) == "true" and str(holder.version) != model.version:
                holder.tags = {k: v for k, v in holder.tags.items() if k != CHAMPION_TAG}
                holder.tags.update({TAG_STATUS: "retired", "heartflow.retired_at": now})
                self._save_model(client, holder)
        target = self._get_model(client, model)
        target.tags = {**(target.tags or {}), CHAMPION_TAG: "true", TAG_STATUS: "champion", "heartflow.promoted_at": now,
                       TAG_HOLDOUT_ACCURACY: f"{report.accuracy:.6f}"}
        self._save_model(client, target)

    def history(self: AzureBackend, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        """Promotions, rejections and rollbacks, oldest first: the endpoint's tags (the latest
        HISTORY_KEEP, seen from any machine) merged with the local record (every entry this machine
        wrote, kept after the endpoint is deleted)."""
        client = self.client("history")
        current = self._get_endpoint(client, endpoint_name)
        tagged = [] if current is None else [
            decode_history(endpoint_name, k, v) for k, v in sorted((current.tags or {}).items()) if k.startswith(HISTORY_PREFIX)
        ]
        merged: dict[tuple[str, str, str, str], HistoryEntry] = {}
        for entry in [*self.history_log.read(endpoint_name), *(e for e in tagged if e is not None)]:
            # Tags keep the time to the second and a shortened reason; the local record is complete.
            merged.setdefault((entry.time[:19], entry.event, entry.model_name, entry.model_version), entry)
        return tuple(sorted(merged.values(), key=lambda e: e.time))

    def _get_model(self: AzureBackend, client: Any, model: ModelVersion) -> Any:
        try:
            return self.call("read the model version", client.models.get, name=model.name, version=model.version)
        except AzureError as exc:
            raise translate(exc, RegistrationError, f"reading model {model.name}:{model.version}") from exc

    def _save_model(self: AzureBackend, client: Any, model: Any) -> None:
        try:
            self.call("update the model's tags", client.models.create_or_update, model)
        except AzureError as exc:
            raise translate(exc, RegistrationError, f"tagging model {model.name}:{model.version}") from exc

    def _delete_deployment(self: AzureBackend, client: Any, endpoint: str, name: str) -> None:
        try:
            poller = self.call("delete a deployment", client.online_deployments.begin_delete, name=name, endpoint_name=endpoint)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"deleting deployment {name} of {endpoint}") from exc
        await_poller(poller, self.settings.operation_timeout_s, f"deleting deployment {name} of {endpoint}", DeploymentError)
        logger.info("deleted deployment %s of %s", name, endpoint)

    def reject(
        self: AzureBackend, endpoint: Endpoint, model: ModelVersion, reason: str, *, report: EvalReport | None = None,
        triggered_by: str = "",
    ) -> None:
        client = self.client("reject")
        current = self._get_endpoint(client, endpoint.name)
        if current is not None:
            before = {k: int(v) for k, v in (current.traffic or {}).items()}
            others = serving({k: v for k, v in before.items() if k != endpoint.deployment})
            names = self._deployment_names(client, endpoint.name, before)
            if before.get(endpoint.deployment, 0) > 0 and not others:
                # The only serving deployment: removing it would leave the endpoint serving nothing.
                logger.warning("rejected deployment %s is the only one serving %s; it keeps serving",
                               endpoint.deployment, endpoint.name)
            elif before.get(endpoint.deployment, 0) > 0:
                raise DeploymentError(
                    f"{endpoint.deployment} carries {before[endpoint.deployment]} % of {endpoint.name}'s traffic beside "
                    f"{others}; set its traffic to 0 before rejecting it")
            elif endpoint.deployment in names:
                self._delete_deployment(client, endpoint.name, endpoint.deployment)
            refreshed = self._get_endpoint(client, endpoint.name)
            if refreshed is not None:
                champion = self.champion(model.name)
                rejection = HistoryEntry(
                    time=now_iso(), event="rejected", endpoint=endpoint.name, deployment=endpoint.deployment,
                    model_name=model.name, model_version=model.version, accuracy=report.accuracy if report else None,
                    champion_accuracy=recorded_holdout_accuracy(champion), reason=reason, triggered_by=triggered_by or who(),
                )
                refreshed.tags = with_history(refreshed.tags, rejection)
                live = self._deployment_names(client, endpoint.name, {})
                kept = {k: int(v) for k, v in (refreshed.traffic or {}).items() if k in live}
                self._update_endpoint(client, refreshed, kept, "recording the rejection")
                self.history_log.append(rejection)
        target = self._get_model(client, model)
        target.tags = {**(target.tags or {}), TAG_STATUS: "rejected", TAG_REASON: reason[:256],
                       "heartflow.rejected_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if report is not None:
            target.tags[TAG_HOLDOUT_ACCURACY] = f"{report.accuracy:.6f}"
        self._save_model(client, target)
        logger.info("rejected %s:%s: %s", model.name, model.version, reason)

    def teardown(self: AzureBackend, endpoint_name: str) -> None:
        client = self.client("teardown")
        try:
            poller = self.call("delete the endpoint", client.online_endpoints.begin_delete, name=endpoint_name)
        except ResourceNotFoundError:
            logger.info("endpoint %s does not exist; nothing to tear down", endpoint_name)
            return
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"deleting endpoint {endpoint_name}") from exc
        try:
            await_poller(poller, self.settings.operation_timeout_s, f"deleting endpoint {endpoint_name}", DeploymentError)
        except DeploymentError as exc:
            if isinstance(exc.__cause__, ResourceNotFoundError):
                return
            raise
        self.ledger.forget("endpoint", endpoint_name, self.workspace_scope)
        logger.info("deleted endpoint %s and its deployments", endpoint_name)

