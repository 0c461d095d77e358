"""Monitoring a local endpoint: its captured records and labels (``backends.local.endpoint.capture``), the
serving model's training data and gate figure from the registry, the figures from
``backends.domain.monitoring``; the last figures kept in ``<endpoint>/monitor/last.json`` for ``status``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.domain.history import TAG_HOLDOUT_ACCURACY
from backends.domain.monitoring import MonitorReport, is_holdout_answer, summarize
from backends.domain.outcomes import FeedbackReceipt, check_labels, receipt
from backends.errors import ConfigurationError, HeartflowError
from backends.fileio import write_atomic
from backends.local.endpoint.capture import FEEDBACK_DIR, append_feedback, captured_ids, read_records
from backends.local.endpoint.state import EndpointPaths, read_state

if TYPE_CHECKING:
    from backends.local.registry import LocalRegistry

logger = logging.getLogger(__name__)

TAG_DATA_URI = "heartflow.data_uri"
TAG_METRIC = "heartflow.metric"  # the model's chosen metric, when its run recorded one (else accuracy)
LAST_FILE = "monitor/last.json"


class LocalMonitor:
    """Figures over a window of what a local endpoint's deployments were asked, and labels joined to them."""

    def __init__(self, home: Path, registry: LocalRegistry) -> None:
        self.home = Path(home)
        self.registry = registry

    def paths(self, endpoint_name: str) -> EndpointPaths:
        paths = EndpointPaths(self.home, endpoint_name)
        if not paths.state.exists():
            raise ConfigurationError(f"no local endpoint {endpoint_name} under {self.home}: deploy one with `heartflow run`")
        return paths

    def serving_deployment(self, endpoint_name: str) -> tuple[str, str, str, str]:
        """(deployment, model name, version, model folder) of the deployment with the most traffic."""
        state = read_state(self.paths(endpoint_name))
        if state is None or not state.deployments:
            raise ConfigurationError(f"endpoint {endpoint_name} has no deployment")
        name = max(state.deployments, key=lambda n: state.traffic.get(n, 0))
        config = state.deployments[name]
        return name, config.model_name, config.model_version, config.model_dir

    def add_feedback(self, endpoint_name: str, items: list[dict[str, Any]], origin: str) -> FeedbackReceipt:
        """Check and store labels (in the serving model's classes); report ids no captured prediction has."""
        paths = self.paths(endpoint_name)
        _, _, _, model_dir = self.serving_deployment(endpoint_name)
        pairs = check_labels(items, _classes(model_dir), origin)
        append_feedback(paths.root, pairs, "file")
        return receipt(pairs, captured_ids(paths.root))

    def monitor(self, endpoint_name: str, since: datetime, until: datetime | None = None) -> MonitorReport:
        paths = self.paths(endpoint_name)
        until = until or datetime.now(UTC)
        _, model_name, version, model_dir = self.serving_deployment(endpoint_name)
        schema = _schema(model_dir)
        model = self.registry.get(model_name, version)
        reference = None
        uri = model.tags.get(TAG_DATA_URI)
        if uri:
            from backends.domain.sources import read_stored_table

            try:
                reference = read_stored_table(uri, text_columns=schema.categorical)
            except HeartflowError as exc:
                logger.warning("the training data of %s v%s (%s) is not readable: %s", model_name, version, uri, exc)
        metric = model.tags.get(TAG_METRIC, "accuracy")
        gate = model.tags.get(f"heartflow.holdout_{metric}") or (model.tags.get(TAG_HOLDOUT_ACCURACY) if metric == "accuracy" else None)
        start, end = (t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for t in (since, until))
        window, holdout = [], []
        for record in read_records(paths.root):  # the holdout's answers may predate the window
            if is_holdout_answer(record, version):
                holdout.append(record)
            elif start <= str(record.get("time", "")) <= end:
                window.append(record)
        report = summarize(
            window, _labels(paths.root), holdout=holdout, endpoint=endpoint_name, model_name=model_name, model_version=version,
            since=since, until=until, reference=reference, numeric=[*schema.numeric, *schema.passthrough],
            categorical=list(schema.categorical), metric=metric, gate_value=float(gate) if gate else None,
        )
        write_atomic(paths.root / LAST_FILE, json.dumps(report.to_json(), indent=2).encode("utf-8"))
        return report


def last_figures(home: Path, endpoint_name: str) -> dict[str, Any] | None:
    """What the last ``monitor`` found on this endpoint, or None."""
    try:
        return json.loads((EndpointPaths(Path(home), endpoint_name).root / LAST_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _labels(root: Path) -> dict[str, Any]:
    """Request id -> label; a later label for the same id replaces the earlier one."""
    return {str(r["request_id"]): r.get("label") for r in read_records(root, folder=FEEDBACK_DIR) if "request_id" in r}


def _schema(model_dir: str) -> Any:
    from src.features import HEART_SCHEMA
    from src.model_files import find_model_dir, read_model_info

    info = read_model_info(find_model_dir(Path(model_dir)))
    return info.schema or HEART_SCHEMA


def _classes(model_dir: str) -> list[Any]:
    schema = _schema(model_dir)
    return list(schema.labels) if schema.labels else [0, 1]
