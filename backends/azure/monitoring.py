"""Monitoring an Azure endpoint: what its deployments' data collectors wrote (``backends.azure.collected``),
the serving model's training split and gate figure from the registry, the figures from
``backends.domain.monitoring`` (the same MonitorReport as ``backends.local.monitoring``); labels stored beside
the collected records and joined by request id.

Beside them in the same container (``heartflow/monitor/{endpoint}/``): ``history.json``, the figures of the
last ``HISTORY_LIMIT`` monitor runs (what ``heartflow status`` and the flow's plots over time read), and
``windows/labelled-*.csv``, a window's labelled rows that a ``train-and-deploy --backend azure`` run reads
as new data (a blob URL, ``backends.domain.sources``). ``AzureEndpointMonitoring`` makes ``AzureBackend``
an ``EndpointMonitor``, so the ``monitor-endpoint`` flow runs on Azure as it does locally."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

from backends.azure.collected import CACHE_ROOT, EVAL_PREFIX, CollectedStore, open_collected
from backends.base import Endpoint
from backends.domain.lineage import TAG_DATA_URI, TAG_HOLDOUT_ACCURACY, TAG_METRIC, holdout_tag
from backends.domain.monitor_metrics import monitor_metrics
from backends.domain.monitoring import HOLDOUT_PREFIX, MonitorReport, is_holdout_answer, summarize
from backends.domain.realized import LabelledAnswer, join_labelled
from backends.domain.outcomes import FeedbackReceipt, check_labels, receipt
from backends.errors import ConfigurationError, HeartflowError

logger = logging.getLogger(__name__)

MAX_CODE_LEVELS = 10  # whole numbers with this many values or fewer are codes (categories), as inference says
LABEL = "\x00label"  # the label's column until the target's name is known (no data column is named so)
HISTORY_LIMIT = 200  # monitor runs kept in history.json (as many as `monitor_history` returns by default)


def history_blob(endpoint: str) -> str:
    return f"{CACHE_ROOT}/{endpoint}/history.json"


class AzureMonitor:
    """Figures over a window of what an Azure endpoint's serving deployments answered, and labels joined to
    them. ``backend`` is an AzureBackend (its serving endpoint, registry and blob storage)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def _serving(self, endpoint_name: str) -> Endpoint:
        serving = self.backend.serving(endpoint_name)
        if serving is None:
            raise ConfigurationError(f"nothing serves on the Azure endpoint {endpoint_name}: deploy with "
                                     "`heartflow run --backend azure` (or check --endpoint-name)")
        return serving

    def _store(self) -> CollectedStore:
        return open_collected(self.backend)

    def add_feedback(self, endpoint_name: str, items: list[dict[str, Any]], origin: str) -> FeedbackReceipt:
        """Check and store labels beside the collected records; report ids no collected prediction has."""
        name = self._serving(endpoint_name).name  # the workspace's own name for the tutorial's default
        store = self._store()
        captured: set[str] = set()
        classes: set[Any] = set()
        until = datetime.now(UTC)
        for deployment in store.deployments(name):
            for record in store.records(name, deployment, None, until, with_inputs=False):
                if record["kind"] != "scored":
                    continue
                predictions = record.get("predictions") or []
                rid = str(record["request_id"])
                captured.update([rid] if len(predictions) == 1 else [f"{rid}/{i}" for i in range(len(predictions))])
                classes.update(p for p in [*predictions, *record.get("classes", [])] if isinstance(p, (str, int)))
        # The labels a model answers with: known from its collected answers once both were seen.
        pairs = check_labels(items, sorted(classes, key=str) if len(classes) >= 2 else None, origin)
        store.add_labels(name, pairs, "file")
        return receipt(pairs, captured)

    def labelled_answers(self, endpoint_name: str, deployment: str, since: datetime) -> tuple[LabelledAnswer, ...]:
        """What ``deployment`` answered since ``since`` (its data collector's records) joined to the labels
        feedback stored beside them: the watch's realized performance on Azure."""
        store = self._store()
        labels = store.labels(endpoint_name)
        if not labels:
            return ()
        records = store.records(endpoint_name, deployment, since, datetime.now(UTC), with_inputs=False)
        return join_labelled(records, labels, deployment, since)

    def monitor(self, endpoint_name: str, since: datetime, until: datetime | None = None) -> MonitorReport:
        serving = self._serving(endpoint_name)
        endpoint_name = serving.name
        until = until or datetime.now(UTC)
        store = self._store()
        version = serving.model_version
        window = self._window(store, serving, since, until)
        holdout = self._holdout(store, serving)
        model = self.backend.get_model(serving.model_name, version)
        notes: list[str] = []
        reference = self._training_split(model.tags.get(TAG_DATA_URI), notes)
        numeric, categorical = column_kinds(reference, window, holdout)
        metric = model.tags.get(TAG_METRIC, "accuracy")
        gate = model.tags.get(holdout_tag(metric)) or (model.tags.get(TAG_HOLDOUT_ACCURACY) if metric == "accuracy" else None)
        report = summarize(
            window, store.labels(endpoint_name), holdout=holdout, endpoint=endpoint_name, model_name=serving.model_name,
            model_version=version, since=since, until=until, reference=reference, numeric=numeric,
            categorical=categorical, metric=metric, gate_value=float(gate) if gate else None,
        )
        notes.append("read from the data collector's records: requests are those collected (the deployment's "
                     "capture rate), latency is the scoring container's own")
        report = _with_notes(report, notes)
        self._remember(store, endpoint_name, report.to_json())
        return report

    def _window(self, store: CollectedStore, serving: Endpoint, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """The records of [since, until] on every deployment with live traffic, the serving model's alone."""
        version = serving.model_version
        live = [d for d, share in (serving.traffic or {serving.deployment: 100}).items() if share > 0]
        window: list[dict[str, Any]] = []
        for deployment in live:
            for record in store.records(serving.name, deployment, since, until):
                if deployment == serving.deployment:
                    if str(record.get("model_version") or version) != version:
                        continue  # an older model's answers under a reused deployment name
                    record["model_version"] = version
                window.append(record)
        return window

    # ---- EndpointMonitor: history, MLflow, the labelled window ---------------------------------------------
    def _remember(self, store: CollectedStore, endpoint: str, figures: dict[str, Any]) -> None:
        """The figures appended to the endpoint's history blob, the last HISTORY_LIMIT kept (written whole: a
        monitor running at the same moment may lose one of the two entries, never corrupt the blob)."""
        kept = store.read_json(history_blob(endpoint))
        entries = [*(kept if isinstance(kept, list) else []), figures][-HISTORY_LIMIT:]
        store.put(history_blob(endpoint), json.dumps(entries, sort_keys=True, default=str).encode("utf-8"))

    def history(self, endpoint_name: str, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
        """Earlier monitor figures on the endpoint, oldest first (none before the first monitor)."""
        kept = self._store().read_json(history_blob(self.backend.endpoints.endpoint_name(endpoint_name)))
        entries = [e for e in kept if isinstance(e, dict)] if isinstance(kept, list) else []
        return entries[-limit:] if limit > 0 else []

    def log(self, report: MonitorReport) -> None:
        """``monitor_*`` metrics on the serving model's trial run in the workspace's MLflow, step = the window's
        end (epoch seconds), the names the local backend logs."""
        from backends.azure.artifacts import log_metrics_for

        run_id = self.backend.get_model(report.model_name, report.model_version).source_run_id
        metrics = {name: float(value) for name, value in monitor_metrics(report).items() if value is not None}
        log_metrics_for(self.backend, run_id, metrics, int(_parse_time(report.until).timestamp()), "the monitor's figures")

    def export_labelled(self, endpoint_name: str, report: MonitorReport, minimum: int) -> str | None:
        """The window's labelled rows (clients' requests only) with the training split's target column, as a CSV
        blob beside the history; its URL, which a run reads as ``--data``. None below ``minimum`` rows."""
        import pandas as pd

        serving = self._serving(endpoint_name)
        store = self._store()
        labels = store.labels(serving.name)
        rows: list[dict[str, Any]] = []
        for record in self._window(store, serving, _parse_time(report.since), _parse_time(report.until)):
            rid = str(record.get("request_id", ""))
            if record.get("kind") != "scored" or rid.startswith(EVAL_PREFIX):
                continue
            batch = record.get("rows") or []
            for i, row in enumerate(batch):
                key = rid if len(batch) == 1 else f"{rid}/{i}"
                if key in labels and isinstance(row, dict):
                    rows.append({**row, LABEL: labels[key]})
        if len(rows) < max(minimum, 1):
            return None
        model = self.backend.get_model(serving.model_name, serving.model_version)
        reference = self._training_split(model.tags.get(TAG_DATA_URI), [])
        target = target_column(reference, [c for c in rows[0] if c != LABEL], [row[LABEL] for row in rows])
        table = pd.DataFrame(rows).rename(columns={LABEL: target})
        name = f"{CACHE_ROOT}/{serving.name}/windows/labelled-{report.until.replace(':', '').replace('-', '')}.csv"
        store.put(name, table.to_csv(index=False).encode("utf-8"))
        logger.info("%d labelled rows of %s exported to %s", len(table), serving.name, name)
        return store.url(name)

    def _holdout(self, store: CollectedStore, serving: Endpoint) -> list[dict[str, Any]]:
        """The model's collected answers to its holdout (sent when it was evaluated, before any window): read
        once from the deployment's whole record, then from a cache blob beside it."""
        cache = f"{CACHE_ROOT}/{serving.name}/holdout-{serving.model_name}-{serving.model_version}.json"
        cached = store.read_json(cache)
        if isinstance(cached, list) and cached:
            return cached
        found = []
        for record in store.records(serving.name, serving.deployment, None, datetime.now(UTC), only=[f"{HOLDOUT_PREFIX}*"]):
            record["model_version"] = str(record.get("model_version") or serving.model_version)
            if is_holdout_answer(record, serving.model_version):
                found.append(record)
        if found:
            store.put(cache, json.dumps(found, default=str).encode("utf-8"))
        return found

    def _training_split(self, uri: str | None, notes: list[str]) -> Any:
        """The serving model's training split (every cell as text), from the blob its data URI names."""
        if not uri:
            return None
        import pandas as pd
        from azure.core.exceptions import AzureError
        from azure.storage.blob import BlobClient

        try:
            where = BlobClient.from_blob_url(uri)
            service = self.backend.blob_store().service
            data = service.get_blob_client(where.container_name, where.blob_name).download_blob().readall()
            return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=True)
        except (AzureError, ValueError, HeartflowError) as exc:
            logger.warning("the training split %s is not readable: %s", uri, exc)
            notes.append(f"the training split is not readable ({type(exc).__name__}): input drift not measured")
            return None


def column_kinds(reference: Any, *record_sets: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) features: the columns the collected rows carry (the model's signature), typed
    from the training split: numbers with more than MAX_CODE_LEVELS values are numeric, the rest categories.
    Azure keeps no schema beside a model version, so this reads what the data shows."""
    features: list[str] = []
    for records in record_sets:
        for record in records:
            for row in record.get("rows") or ():
                features += [c for c in row if c not in features]
            if features:
                break
    if reference is None:
        return features, []
    import pandas as pd

    numeric, categorical = [], []
    for column in features:
        if column not in reference:
            continue
        values = reference[column].dropna()
        numbers = pd.to_numeric(values, errors="coerce")
        whole = bool(numbers.notna().all()) and bool((numbers.dropna() % 1 == 0).all())
        if numbers.notna().all() and not (whole and values.nunique() <= MAX_CODE_LEVELS):
            numeric.append(column)
        else:
            categorical.append(column)
    return numeric, categorical


def target_column(reference: Any, features: list[str], labels: list[Any]) -> str:
    """The training split's column the model learned: the one the collected rows lack, or of several (ID
    columns the model never saw), the one with two values among which every label is. The heart table's
    when the split is unreadable or no column fits (a retrain then says the target is missing)."""
    from src.features import HEART_SCHEMA

    extra = [] if reference is None else [str(c) for c in reference.columns if c not in features]
    if len(extra) > 1:
        given = {str(label) for label in labels}
        extra = [c for c in extra if reference[c].nunique() == 2 and given <= set(reference[c].dropna().astype(str))]
    if len(extra) != 1:
        logger.warning("the target column of the labelled window is not known from the training split: %s assumed",
                       HEART_SCHEMA.target)
        return HEART_SCHEMA.target
    return extra[0]


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class AzureEndpointMonitoring:
    """``backends.base.EndpointMonitor`` for ``AzureBackend`` (mixed in), through ``AzureMonitor``."""

    @property
    def monitoring(self) -> AzureMonitor:
        return AzureMonitor(self)

    def monitor(self, endpoint_name: str, since: datetime) -> MonitorReport:
        return self.monitoring.monitor(endpoint_name, since)

    def monitor_history(self, endpoint_name: str, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
        return self.monitoring.history(endpoint_name, limit)

    def log_monitor(self, report: MonitorReport) -> None:
        self.monitoring.log(report)

    def export_labelled(self, endpoint_name: str, report: MonitorReport, minimum: int) -> str | None:
        return self.monitoring.export_labelled(endpoint_name, report, minimum)

    def labelled_answers(self, endpoint: Endpoint, deployment: str, since: datetime) -> tuple[LabelledAnswer, ...]:
        """``backends.domain.realized.LabelledAnswers``: the collector's records joined to feedback's labels."""
        return self.monitoring.labelled_answers(endpoint.name, deployment, since)


def _with_notes(report: MonitorReport, notes: list[str]) -> MonitorReport:
    import dataclasses

    return dataclasses.replace(report, notes=(*report.notes, *notes))
