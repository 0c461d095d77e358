"""The rollout primitives on a managed online endpoint (``AzureEndpoints``): read and write traffic, put and
delete deployments, record history. The policy (which colour, which share, in which order) is
``backends.domain.rollout.RolloutPolicy``; it tags model versions through ``AzureRegistry``, its
collaborator. Traffic is always written explicitly and in full, so no deployment loses its share by
accident (an endpoint update that omits traffic can zero it).

History is kept twice: as endpoint tags (the latest HISTORY_KEEP, seen from any machine) and in a local
JSON-lines log (every entry this machine wrote, kept after the endpoint is deleted).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from backends.azure import entities, naming
from backends.azure.deployment_state import IN_PROGRESS, DeploymentWanted, read_deployment, state_of, wait_for_deployment
from backends.azure.limits import check_traffic, enforce_limits
from backends.azure.provisioning import AzureProvisioner
from backends.azure.registry import AzureRegistry
from backends.azure.resilience import await_poller, translate
from backends.azure.session import AzureSession
from backends.domain.rollout import RolloutPolicy, serving
from backends.errors import DeploymentError, HeartflowError, TransientBackendError
from backends.domain.history import HistoryLog
from backends.results import Endpoint, GateFigures, HistoryEntry, ModelVersion
from backends.domain.spec import DeploySpec

logger = logging.getLogger(__name__)

HISTORY_PREFIX = "heartflow-history-"
HISTORY_KEEP = 20
TAG_VALUE_LIMIT = 256
LOG_LINES = 60


def _compact(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6g}")


def encode_gate(gate: GateFigures) -> list[Any]:
    """The gate's figures as a short JSON list (six significant digits) for a history tag."""
    return [gate.rule, gate.rows, _compact(gate.candidate_accuracy), _compact(gate.champion_accuracy),
            _compact(gate.difference), _compact(gate.p_value), _compact(gate.p_worse), _compact(gate.tolerance),
            # issue 17: the run's metric against its no-skill baseline (the folds' figures stay in the local record)
            gate.metric, _compact(gate.candidate_value), _compact(gate.baseline), _compact(gate.baseline_p)]


def decode_gate(items: Any) -> GateFigures:
    rule, rows, candidate, champion, difference, p_value, p_worse, tolerance = items[:8]
    metric, value, baseline, baseline_p = (list(items[8:12]) + [None] * 4)[:4]  # absent from older tags
    return GateFigures.from_record({
        "rule": rule, "rows": rows, "candidate_accuracy": candidate, "champion_accuracy": champion,
        "difference": difference, "p_value": p_value, "p_worse": p_worse, "tolerance": tolerance,
        "metric": metric, "candidate_value": value, "baseline": baseline, "baseline_p": baseline_p,
    })


def encode_history(entry: HistoryEntry) -> tuple[str, str]:
    """A history entry as one endpoint tag (ARM tag values hold at most 256 characters): the key carries
    the time, the value a compact JSON list (the gate's figures, when any, last); the reason is shortened
    to fit, and the figures are left to the local record when even an empty reason leaves no room."""
    stamp = datetime.fromisoformat(entry.time).astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    fields = [entry.event, entry.deployment, entry.model_name, entry.model_version, entry.accuracy,
              entry.champion_accuracy, entry.triggered_by[:40]]
    gate = [encode_gate(entry.gate)] if entry.gate is not None else []
    if gate and len(json.dumps(fields + [""] + gate, separators=(",", ":"))) > TAG_VALUE_LIMIT:
        gate = []
    room = TAG_VALUE_LIMIT - len(json.dumps(fields + [""] + gate, separators=(",", ":")))
    reason = entry.reason
    while len(json.dumps(reason)[1:-1]) > max(room, 0):
        reason = reason[: max(len(reason) - 8, 0)]
    return f"{HISTORY_PREFIX}{stamp}", json.dumps(fields + [reason] + gate, separators=(",", ":"))


def decode_history(endpoint: str, key: str, value: str) -> HistoryEntry | None:
    """One history tag back as an entry; a tag written before the gate's figures were kept reads with
    ``gate`` None."""
    try:
        stamp = datetime.strptime(key[len(HISTORY_PREFIX):], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        items = json.loads(value)
        event, deployment, model_name, version, accuracy, champion, who, reason = items[:8]
        gate = decode_gate(items[8]) if len(items) > 8 else None
    except (ValueError, TypeError, KeyError):
        logger.warning("ignoring unreadable history tag %s on %s", key, endpoint)
        return None
    return HistoryEntry(time=stamp.isoformat(timespec="seconds"), event=event, endpoint=endpoint, deployment=deployment,
                        model_name=model_name, model_version=str(version), accuracy=accuracy, champion_accuracy=champion,
                        reason=reason, triggered_by=who, gate=gate)


def with_history(tags: Mapping[str, str] | None, entry: HistoryEntry) -> dict[str, str]:
    """Tags plus one history entry, keeping the latest HISTORY_KEEP (an endpoint holds at most 50 tags)."""
    key, value = encode_history(entry)
    out = dict(tags or {})
    out[key] = value
    for old in sorted(k for k in out if k.startswith(HISTORY_PREFIX))[:-HISTORY_KEEP]:
        del out[old]
    return out


def model_reference(model: Any) -> tuple[str, str] | None:
    """(name, version) of a deployment's model: ``azureml:name:version``, an ARM id ``.../models/<name>/versions/
    <version>``, or a Model entity; None when it names neither."""
    if model is None:
        return None
    if not isinstance(model, str):
        name, version = getattr(model, "name", None), getattr(model, "version", None)
        return (str(name), str(version)) if name and version else None
    parts = model.strip("/").split("/")
    if "models" in parts and "versions" in parts:
        at = parts.index("models")
        if at + 3 < len(parts) and parts[at + 2] == "versions":
            return parts[at + 1], parts[at + 3]
    if model.startswith("azureml:") and model.count(":") == 2:
        _, name, version = model.split(":")
        return name, version
    return None


class AzureEndpoints(RolloutPolicy):
    """The rollout on one workspace's managed online endpoints."""

    registry: AzureRegistry

    def __init__(self, session: AzureSession, registry: AzureRegistry, provisioner: AzureProvisioner,
                 history: HistoryLog) -> None:
        super().__init__(registry)
        self._az = session
        self.provisioner = provisioner
        self.history_log = history
        self.colours = naming.deployment_names(session.settings)

    # ---- reading and writing the endpoint ---------------------------------------------------------
    def endpoint_name(self, requested: str | None = None) -> str:
        return naming.endpoint_name(self._az.settings, requested)

    def _client(self, stage: str) -> Any:
        return self._az.client(stage)

    def get_endpoint(self, name: str) -> Any | None:
        client = self._client("endpoint")
        try:
            return self._az.call("read the endpoint", client.online_endpoints.get, name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"reading endpoint {name}") from exc

    def _write_endpoint(self, endpoint: Any, what: str) -> Any:
        client = self._client("endpoint")
        try:
            poller = self._az.call(what, client.online_endpoints.begin_create_or_update, endpoint)
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"{what} on endpoint {endpoint.name}") from exc
        return await_poller(poller, self._az.settings.operation_timeout_s, f"{what} on endpoint {endpoint.name}",
                            DeploymentError)

    def _deployment_names(self, endpoint: str) -> set[str]:
        client = self._client("endpoint")
        try:
            return {d.name for d in self._az.listing("list deployments", client.online_deployments.list, endpoint_name=endpoint)}
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"listing the deployments of {endpoint}") from exc

    def logs_hint(self, endpoint: str, deployment: str) -> str:
        s = self._az.settings
        return (f"`az ml online-deployment get-logs --name {deployment} --endpoint-name {endpoint} "
                f"-g {s.resource_group} -w {s.workspace_name}` or the endpoint's Logs tab in Azure ML Studio")

    # ---- the rollout primitives -------------------------------------------------------------------
    def prepare(self, endpoint_name: str, spec: DeploySpec, model: ModelVersion) -> None:
        """Limits first (nothing is called when one is broken), then the environment and the endpoint."""
        settings = self._az.settings
        enforce_limits({"model_name": model.name, "deploy": spec}, settings)
        self.provisioner.ensure_environment(self._az.client("deploy"))
        if self.get_endpoint(endpoint_name) is not None:
            return
        logger.info("creating endpoint %s (key auth)", endpoint_name)
        self._write_endpoint(entities.build_endpoint(endpoint_name), "creating the endpoint")
        self._az.ledger.record("endpoint", endpoint_name, self._az.workspace_scope)

    def read_traffic(self, endpoint_name: str) -> dict[str, int]:
        """The SDK's ``get`` lists every deployment, those without traffic at 0."""
        endpoint = self.get_endpoint(endpoint_name)
        return {} if endpoint is None else {str(k): int(v) for k, v in (endpoint.traffic or {}).items()}

    def set_traffic(self, endpoint_name: str, traffic: Mapping[str, int], tags: Mapping[str, str] | None = None) -> None:
        problems = check_traffic(traffic)
        if problems:
            raise DeploymentError(f"refusing to set traffic on {endpoint_name}: {'; '.join(map(str, problems))}")
        endpoint = self.get_endpoint(endpoint_name)
        if endpoint is None:
            raise DeploymentError(f"endpoint {endpoint_name} does not exist any more; deploy again")
        endpoint.traffic = {k: int(v) for k, v in traffic.items()}
        if tags is not None:
            endpoint.tags = dict(tags)
        self._write_endpoint(endpoint, f"setting traffic {dict(traffic)}")

    def put_deployment(self, endpoint_name: str, deployment: str, model: ModelVersion, spec: DeploySpec) -> None:
        """Create or update ``deployment`` with ``model`` and wait until it serves. A retried stage finds the
        deployment its earlier attempt left: one still being created is waited on (a second PUT would be
        refused), one already serving this model on this size and environment is kept as it is."""
        settings = self._az.settings
        client = self._az.client("deploy")
        environment = self.provisioner.ensure_environment(client)  # get-or-create once per backend
        before = self.read_traffic(endpoint_name)
        built = entities.build_deployment(settings, spec, name=deployment, endpoint_name=endpoint_name,
                                          model=f"azureml:{model.name}:{model.version}", environment=environment)
        wanted = DeploymentWanted.of(built)
        name = str(built.name)  # lowercased by build_deployment, as Azure keys it
        timeout = settings.deployment_timeout_s
        existing = read_deployment(self._az, client, endpoint_name, name)
        if existing is not None and state_of(existing) in IN_PROGRESS:
            logger.info("deployment %s of %s is %s (an earlier attempt); waiting on it before writing", name,
                        endpoint_name, state_of(existing))
            existing = wait_for_deployment(self._az, client, endpoint_name, name, timeout)
        if existing is not None and state_of(existing) == "succeeded" and wanted.matches(existing):
            logger.info("deployment %s of %s already serves %s v%s; keeping it", name, endpoint_name,
                        model.name, model.version)
            return
        try:
            poller = self._az.call("create the deployment", client.online_deployments.begin_create_or_update, built)
            result = await_poller(poller, timeout, f"deployment {deployment} of endpoint {endpoint_name}",
                                  DeploymentError, logs=self.logs_hint(endpoint_name, deployment))
        except TransientBackendError as blip:
            # The poll failed, not the deployment: Azure goes on creating it. Wait on the deployment itself; if
            # the service stays unreachable, the error propagates with the deployment left in place for a retry.
            logger.warning("polling deployment %s of %s failed (%s); reading its state instead", name,
                           endpoint_name, blip.__cause__ or blip)
            result = wait_for_deployment(self._az, client, endpoint_name, name, timeout)
        except ResourceExistsError:
            # 409: another operation on this deployment is under way (an earlier attempt racing this one).
            result = wait_for_deployment(self._az, client, endpoint_name, name, timeout)
            if not wanted.matches(result):
                raise DeploymentError(f"deployment {name} of {endpoint_name} was being changed by another "
                                      "operation and now holds something else; deploy again") from None
        except (AzureError, DeploymentError) as exc:
            raise self._failed(endpoint_name, deployment, before, exc) from exc
        state = state_of(result) or "succeeded"
        if state != "succeeded":
            raise self._failed(endpoint_name, deployment, before, DeploymentError(f"provisioning state {state}"))

    def _failed(self, endpoint: str, name: str, before: Mapping[str, int], exc: BaseException) -> HeartflowError:
        """Collect the container logs, remove the failed deployment (it would bill), keep the traffic."""
        client = self._client("deploy")
        tail = ""
        try:
            tail = str(self._az.call("read the deployment logs", client.online_deployments.get_logs, name, endpoint, LOG_LINES) or "")
        except AzureError as log_exc:
            logger.warning("could not read the logs of %s/%s: %s", endpoint, name, log_exc)
        if name not in serving(before):
            try:
                self.delete_deployment(endpoint, name)
            except HeartflowError as del_exc:  # a transient failure too: the original error is the one to report
                logger.warning("could not remove failed deployment %s/%s: %s", endpoint, name, del_exc)
        base = translate(exc, DeploymentError, f"deployment {name} of endpoint {endpoint}", logs=self.logs_hint(endpoint, name))
        last_lines = "\n".join(tail.strip().splitlines()[-20:])
        message = (f"{base} The endpoint keeps its previous traffic {serving(before) or '{}'}. Check the scoring "
                   f"container (score.py init/run, the model folder, the environment's packages).")
        if last_lines:
            message += f"\nLast container log lines:\n{last_lines}"
        return type(base)(message) if isinstance(base, DeploymentError) else base

    def delete_deployment(self, endpoint_name: str, deployment: str) -> None:
        client = self._client("deploy")
        try:
            poller = self._az.call("delete a deployment", client.online_deployments.begin_delete, name=deployment,
                                   endpoint_name=endpoint_name)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"deleting deployment {deployment} of {endpoint_name}") from exc
        await_poller(poller, self._az.settings.operation_timeout_s, f"deleting deployment {deployment} of {endpoint_name}",
                     DeploymentError)
        logger.info("deleted deployment %s of %s", deployment, endpoint_name)

    def describe(self, endpoint_name: str, deployment: str, model: ModelVersion) -> Endpoint:
        endpoint = self.get_endpoint(endpoint_name)
        if endpoint is None:
            raise DeploymentError(f"endpoint {endpoint_name} does not exist any more; deploy again")
        s = self._az.settings
        return Endpoint(
            name=endpoint.name, deployment=deployment, scoring_uri=str(getattr(endpoint, "scoring_uri", "") or ""),
            model_name=model.name, model_version=model.version,
            key_hint=f"az ml online-endpoint get-credentials --name {endpoint.name} -g {s.resource_group} -w {s.workspace_name}",
            traffic={str(k): int(v) for k, v in (endpoint.traffic or {}).items()},
            url=(f"https://ml.azure.com/endpoints/realtime/{endpoint.name}/detail?wsid=/subscriptions/{s.subscription_id}"
                 f"/resourcegroups/{s.resource_group}/workspaces/{s.workspace_name}"),
        )

    def append_history(self, entry: HistoryEntry) -> None:
        """The local log first (complete), then the endpoint's tags, written with its traffic unchanged."""
        self.history_log.append(entry)
        endpoint = self.get_endpoint(entry.endpoint)
        if endpoint is None:
            return
        traffic = {k: v for k, v in self.read_traffic(entry.endpoint).items() if k in self._deployment_names(entry.endpoint)}
        self.set_traffic(entry.endpoint, traffic, tags=with_history(endpoint.tags, entry))

    def read_history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        return self.history(endpoint_name)

    def deployed_versions(self, endpoint_name: str) -> dict[str, tuple[str, str]]:
        """Each deployment's model, read from its ``model`` reference (``azureml:name:version`` or an ARM id)."""
        if self.get_endpoint(endpoint_name) is None:
            return {}
        client = self._client("endpoint")
        try:  # the pager is read inside the call, so a blip while paging is retried with the rest
            found = self._az.call("list deployments",
                                  lambda: list(client.online_deployments.list(endpoint_name=endpoint_name)))
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"listing the deployments of {endpoint_name}") from exc
        out = {}
        for deployment in found:
            model = model_reference(getattr(deployment, "model", None))
            if model is not None:
                out[str(deployment.name)] = model
        return out

    # ---- beyond the rollout -----------------------------------------------------------------------
    def history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        """Promotions, rejections and rollbacks, oldest first: the endpoint's tags merged with the local log."""
        current = self.get_endpoint(endpoint_name)
        tagged = [] if current is None else [
            decode_history(endpoint_name, k, v) for k, v in sorted((current.tags or {}).items()) if k.startswith(HISTORY_PREFIX)
        ]
        merged: dict[tuple[str, str, str, str], HistoryEntry] = {}
        for entry in [*self.history_log.read(endpoint_name), *(e for e in tagged if e is not None)]:
            # Tags keep the time to the second and a shortened reason; the local record is complete.
            merged.setdefault((entry.time[:19], entry.event, entry.model_name, entry.model_version), entry)
        return tuple(sorted(merged.values(), key=lambda e: e.time))

    def endpoint_key(self, endpoint: Endpoint) -> str:
        client = self._az.client("evaluate")
        try:
            keys = self._az.call("read the endpoint key", client.online_endpoints.get_keys, endpoint.name)
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"reading the key of endpoint {endpoint.name}") from exc
        key = getattr(keys, "primary_key", None)
        if not key:
            raise DeploymentError(f"endpoint {endpoint.name} returned no key: is its auth_mode 'key'?")
        return str(key)

    def teardown(self, endpoint_name: str) -> None:
        client = self._az.client("teardown")
        try:
            poller = self._az.call("delete the endpoint", client.online_endpoints.begin_delete, name=endpoint_name)
        except ResourceNotFoundError:
            logger.info("endpoint %s does not exist; nothing to tear down", endpoint_name)
            return
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"deleting endpoint {endpoint_name}") from exc
        try:
            await_poller(poller, self._az.settings.operation_timeout_s, f"deleting endpoint {endpoint_name}", DeploymentError)
        except DeploymentError as exc:
            if isinstance(exc.__cause__, ResourceNotFoundError):
                return
            raise
        self._az.ledger.forget("endpoint", endpoint_name, self._az.workspace_scope)
        logger.info("deleted endpoint %s and its deployments", endpoint_name)
