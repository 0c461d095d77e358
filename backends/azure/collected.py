"""What a managed deployment's data collector wrote, read back from the workspace's blob storage, as the
records ``backends.domain.monitoring`` and the shadow and watch read (the local capture's shape).

Layout and format relied on (Azure ML, "Collect production data from models deployed for real-time
inferencing", and azureml-ai-monitoring 1.0.0's source), documented in docs/azure.md:

- the default datastore (``workspaceblobstore``) holds ``modelDataCollector/{endpoint}/{deployment}/
  {collection}/{yyyy}/{MM}/{dd}/{HH}/{instance}.jsonl`` with rolling_rate "hour" (heartflow's);
- each line is one JSON object: ``data`` (the DataFrame as ``to_json(orient="records")``: a list of row
  objects), ``time`` (UTC, whole seconds, ``...Z``), ``correlationid`` and ``xrequestid`` (the context's id),
  ``type`` (``azureml.inference.<collection>``), ``modelversion``, ``id``, ``agent`` ...;
- close requests may be batched into one line under one id, so heartflow's score.py puts the id in each
  row (``correlationid`` column) and its own ``request_id``, ``row``, ``status``, ``latency_ms`` in
  ``model_outputs`` (src/score.py); rows are joined by that column, never by the line's id.

Labels that arrive later (``heartflow feedback``) are stored beside them, under ``heartflow/feedback/
{endpoint}/`` in the same container, one blob per batch, written whole.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from backends.azure.resilience import RetryPolicy, translate
from backends.errors import DeploymentError

logger = logging.getLogger(__name__)

COLLECTOR_ROOT = "modelDataCollector"
INPUTS, OUTPUTS = "model_inputs", "model_outputs"
FEEDBACK_ROOT = "heartflow/feedback"
CACHE_ROOT = "heartflow/monitor"
EVAL_PREFIX = "heartflow-"  # heartflow's own evaluation traffic (backends.client.evaluation)
ID_COLUMN = "correlationid"  # the column score.py adds to every collected row
OUTPUT_COLUMNS = frozenset({ID_COLUMN, "request_id", "row", "status", "latency_ms", "model_version", "prediction",
                            "probability", "positive_class", "reason"})
SLACK = timedelta(hours=1)  # a record lands in the hour folder of its writing, at or after its own time


def folder(endpoint: str, deployment: str, collection: str) -> str:
    return f"{COLLECTOR_ROOT}/{endpoint}/{deployment}/{collection}/"


def iso(when: datetime) -> str:
    """The collector's time format (whole seconds, UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Collected:
    """One collected line: its collection, time and rows (the ``data`` list)."""

    time: str
    rows: tuple[dict[str, Any], ...]
    model_version: str | None


class CollectedStore:
    """Reads (and, for labels, writes) one container: the workspace's default datastore's."""

    def __init__(self, container: Any, retry: RetryPolicy, timeout_s: float = 60.0) -> None:
        self.container = container
        self.retry = retry
        self.timeout_s = int(timeout_s)

    # ---- raw lines -------------------------------------------------------------------------------------
    def _names(self, prefix: str) -> list[str]:
        try:
            return [b.name for b in self.retry.call("list the data collector's blobs", lambda: list(
                self.container.list_blobs(name_starts_with=prefix, timeout=self.timeout_s)))]
        except ResourceNotFoundError:  # no container yet: nothing was collected
            return []
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"listing {prefix} in {self.container.container_name}",
                            check="the Storage Blob Data Reader role on the workspace's storage account") from exc

    def _text(self, name: str) -> str:
        try:
            data = self.retry.call("read a data collector blob", lambda: self.container.download_blob(
                name, timeout=self.timeout_s).readall())
        except ResourceNotFoundError:  # removed by a retention rule meanwhile
            return ""
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"reading {name}") from exc
        return bytes(data).decode("utf-8", errors="replace")

    def blobs(self, prefix: str, since: datetime | None, until: datetime) -> list[str]:
        """Blob names under ``prefix`` whose time folder can hold records of [since, until]; all when
        ``since`` is None. One listing per day of the window."""
        if since is None:
            return sorted(self._names(prefix))
        start, end = since - SLACK, until + SLACK
        names: list[str] = []
        day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= end:
            names += [n for n in self._names(f"{prefix}{day:%Y/%m/%d}/") if _in_window(n, prefix, start, end)]
            day += timedelta(days=1)
        return sorted(names)

    def lines(self, prefix: str, since: datetime | None, until: datetime) -> Iterator[Collected]:
        """The collected lines under ``prefix`` whose own time is in [since, until]."""
        low = iso(since) if since is not None else ""
        high = iso(until)
        for name in self.blobs(prefix, since, until):
            for line in self._text(name).splitlines():
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut short
                    continue
                if not isinstance(record, dict) or not low <= str(record.get("time", "")) <= high:
                    continue
                data = record.get("data")
                if isinstance(data, str):  # a payload kept as text
                    try:
                        data = json.loads(data)
                    except ValueError:
                        continue
                if isinstance(data, list):  # a payload kept in its own blob (over 4 MB) has a URL here: skipped
                    rows = tuple(r for r in data if isinstance(r, dict))
                    version = record.get("modelversion")
                    yield Collected(str(record["time"]), rows, None if version in (None, "", "default") else str(version))

    # ---- records in the local capture's shape -----------------------------------------------------------
    def records(self, endpoint: str, deployment: str, since: datetime | None, until: datetime,
                *, with_inputs: bool = True, only: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """One record per request a deployment answered in [since, until]: ``kind`` (scored, rejected,
        error), ``request_id``, ``time``, ``status``, ``latency_ms``, ``model_version``, ``predictions``,
        ``probabilities``, ``classes`` (the positive one), ``rows`` (the validated inputs, when each was
        collected), ``reason``. ``only``: keep these request ids alone (a prefix match with a trailing ``*``)."""
        keep = _matcher(only)
        answers: dict[str, list[tuple[int, dict[str, Any], str]]] = defaultdict(list)
        for line in self.lines(folder(endpoint, deployment, OUTPUTS), since, until):
            for row in line.rows:
                rid = str(row.get("request_id") or row.get(ID_COLUMN) or "")
                if rid and keep(rid):
                    answers[rid].append((_int(row.get("row"), -1), row, line.time))
        inputs: dict[str, dict[str, Any]] = {}
        if with_inputs and answers:
            for line in self.lines(folder(endpoint, deployment, INPUTS), since, until):
                for row in line.rows:
                    cid = str(row.get(ID_COLUMN, ""))
                    if cid.split("/")[0] in answers:
                        inputs[cid] = {k: v for k, v in row.items() if k != ID_COLUMN}
        return [_record(rid, sorted(parts, key=lambda p: p[0]), deployment, inputs) for rid, parts in answers.items()]

    def deployments(self, endpoint: str) -> list[str]:
        """The deployments the collector wrote anything for under ``endpoint``."""
        prefix = f"{COLLECTOR_ROOT}/{endpoint}/"
        return sorted({n[len(prefix):].split("/")[0] for n in self._names(prefix)})

    # ---- labels and caches --------------------------------------------------------------------------------
    def add_labels(self, endpoint: str, pairs: list[tuple[str, Any]], source: str) -> str:
        """Store (request id, label) pairs as one new blob, written whole; its name."""
        now = datetime.now(UTC)
        lines = [json.dumps({"request_id": rid, "label": label, "time": iso(now), "source": source}, default=str)
                 for rid, label in pairs]
        name = f"{FEEDBACK_ROOT}/{endpoint}/{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.jsonl"
        self.put(name, ("\n".join(lines) + "\n").encode("utf-8"), overwrite=False)
        return name

    def labels(self, endpoint: str) -> dict[str, Any]:
        """Request id -> label; a later label for the same id replaces the earlier one."""
        found: dict[str, Any] = {}
        for name in sorted(self._names(f"{FEEDBACK_ROOT}/{endpoint}/")):
            for line in self._text(name).splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and "request_id" in item:
                    found[str(item["request_id"])] = item.get("label")
        return found

    def put(self, name: str, payload: bytes, *, overwrite: bool = True) -> None:
        try:
            self.retry.call("write a blob", self.container.upload_blob, name, payload, overwrite=overwrite,
                            timeout=self.timeout_s)
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"writing {name} to {self.container.container_name}",
                            check="the Storage Blob Data Contributor role on the workspace's storage account") from exc

    def url(self, name: str) -> str:
        """The blob's URL (what ``backends.domain.sources`` reads as data)."""
        return str(self.container.get_blob_client(name).url)

    def read_json(self, name: str) -> Any:
        """A JSON blob heartflow wrote (a cache), or None when there is none."""
        text = self._text(name)
        try:
            return json.loads(text) if text else None
        except ValueError:
            return None


def open_collected(backend: Any) -> CollectedStore:
    """The store of ``backend`` (an AzureBackend): the container of the workspace's default datastore, where
    the data collector writes, whichever container the training data goes to."""
    store = getattr(backend, "_collected_store", None)
    if store is not None:
        return store
    from backends.azure.storage import create_blob_service, datastore_account_url, datastore_secret

    default = backend.default_datastore()
    if backend.settings.storage_mode == "workspace":
        service = backend.blob_store().service
    else:
        secret = datastore_secret(backend.client("monitor"), backend.call)
        service = create_blob_service(backend.settings, secret or backend.credential, account_url=datastore_account_url(default))
    store = CollectedStore(service.get_container_client(default.container_name), backend.retry, backend.settings.http_timeout_s)
    backend._collected_store = store
    return store


def _matcher(only: Iterable[str] | None) -> Any:
    wanted = None if only is None else list(only)
    exact = {o for o in wanted or () if not o.endswith("*")}
    prefixes = tuple(o[:-1] for o in wanted or () if o.endswith("*"))

    def keep(rid: str) -> bool:
        return wanted is None or rid in exact or (bool(prefixes) and rid.startswith(prefixes))
    return keep


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _record(rid: str, parts: list[tuple[int, dict[str, Any], str]], deployment: str, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    first = parts[0][1]
    status = _int(first.get("status"), 200)
    record: dict[str, Any] = {
        "request_id": rid, "time": min(p[2] for p in parts), "deployment": deployment, "status": status,
        "latency_ms": float(first.get("latency_ms") or 0.0), "model_version": first.get("model_version"),
    }
    if status != 200:
        record.update(kind="rejected" if status < 500 else "error", reason=str(first.get("reason") or f"status {status}"))
        return record
    ids = [str(row.get(ID_COLUMN, rid)) for _, row, _ in parts]
    record.update(
        kind="scored", predictions=[row.get("prediction") for _, row, _ in parts],
        probabilities=[row.get("probability") for _, row, _ in parts],
        classes=[first["positive_class"]] if first.get("positive_class") is not None else [],
    )
    if all(cid in inputs for cid in ids):  # a capture rate below 1 samples each collection on its own
        record["rows"] = [inputs[cid] for cid in ids]
    return record


def _in_window(name: str, prefix: str, start: datetime, end: datetime) -> bool:
    """Whether a blob's time folder (yyyy/MM/dd[/HH[/mm]]) overlaps [start, end]."""
    parts = name[len(prefix):].split("/")[:-1]
    numbers = [int(p) for p in parts if p.isdigit()]
    if len(numbers) < 3:
        return True  # an unexpected layout: read it rather than miss it
    opened = datetime(numbers[0], numbers[1], numbers[2], tzinfo=UTC) + timedelta(
        hours=numbers[3] if len(numbers) > 3 else 0, minutes=numbers[4] if len(numbers) > 4 else 0)
    width = [timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)][min(len(numbers), 5) - 3]
    return opened <= end and opened + width >= start
