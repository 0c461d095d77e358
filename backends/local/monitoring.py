"""Monitoring a local endpoint: its captured records and labels (``backends.local.endpoint.capture``), the
serving model's training data and gate figure from the registry, the figures from
``backends.domain.monitoring``; the last figures kept in ``<endpoint>/monitor/last.json`` for ``status``."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.domain.lineage import TAG_DATA_URI, TAG_HOLDOUT_ACCURACY, TAG_METRIC, holdout_tag
from backends.domain.monitor_metrics import monitor_metrics
from backends.domain.monitoring import MonitorReport, is_holdout_answer, summarize
from backends.domain.realized import LabelledAnswer, join_labelled
from backends.domain.outcomes import FeedbackReceipt, check_labels, receipt
from backends.errors import ConfigurationError, HeartflowError
from backends.fileio import write_atomic
from backends.local.endpoint.capture import FEEDBACK_DIR, append_feedback, captured_ids, read_records
from backends.local.endpoint.state import EndpointPaths, read_state

if TYPE_CHECKING:
    from backends.local.registry import LocalRegistry

logger = logging.getLogger(__name__)

LAST_FILE = "monitor/last.json"
HISTORY_FILE = "monitor/history.jsonl"


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

    def labelled_answers(self, endpoint_name: str, deployment: str, since: datetime) -> tuple[LabelledAnswer, ...]:
        """The live rows ``deployment`` answered since ``since`` that feedback labelled: captured records joined
        to the feedback files by request id (``<id>/<row>`` for a row of a batch); evaluation requests left out."""
        paths = self.paths(endpoint_name)
        labels = _labels(paths.root)
        return join_labelled(read_records(paths.root, since) if labels else (), labels, deployment, since)

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
                reference = read_stored_table(uri, schema=schema)
            except HeartflowError as exc:
                logger.warning("the training data of %s v%s (%s) is not readable: %s", model_name, version, uri, exc)
        metric = model.tags.get(TAG_METRIC, "accuracy")
        gate = model.tags.get(holdout_tag(metric)) or (model.tags.get(TAG_HOLDOUT_ACCURACY) if metric == "accuracy" else None)
        start, end = (t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for t in (since, until))
        # The holdout's answers were captured when the model was evaluated, before the window: read once from
        # every kept file, then from a cache, so later monitors read only the window's files.
        cache = paths.root / "monitor" / f"holdout-{_safe(model_name)}-{_safe(version)}.json"
        cached = _read_json_list(cache)
        holdout = cached or []
        window = []
        for record in read_records(paths.root, since if cached else None):
            if is_holdout_answer(record, version):
                if cached is None:
                    holdout.append(record)
            elif start <= str(record.get("time", "")) <= end:
                window.append(record)
        if holdout and cached is None:
            write_atomic(cache, json.dumps(holdout).encode("utf-8"))
        report = summarize(
            window, _labels(paths.root), holdout=holdout, endpoint=endpoint_name, model_name=model_name, model_version=version,
            since=since, until=until, reference=reference, numeric=[*schema.numeric, *schema.passthrough],
            categorical=list(schema.categorical), metric=metric, gate_value=float(gate) if gate else None,
        )
        figures = report.to_json()
        write_atomic(paths.root / LAST_FILE, json.dumps(figures, indent=2).encode("utf-8"))
        with open(paths.root / HISTORY_FILE, "a", encoding="utf-8") as history:  # one line per monitor run
            history.write(json.dumps(figures, sort_keys=True) + "\n")
        return report

    def export_labelled(self, endpoint_name: str, report: MonitorReport, minimum: int) -> str | None:
        """The window's labelled rows as a CSV with the model's target column (the data's own labels), for a
        retrain on the drifted window; None when fewer than ``minimum`` rows carry labels."""
        import pandas as pd

        paths = self.paths(endpoint_name)
        _, _, _, model_dir = self.serving_deployment(endpoint_name)
        labels = _labels(paths.root)
        start = report.since.replace("Z", "")
        end = report.until.replace("Z", "")
        rows = []
        for record in read_records(paths.root):
            rid = str(record.get("request_id", ""))
            if record.get("kind") != "scored" or rid.startswith("heartflow-") or not start <= str(record.get("time", ""))[:19] <= end:
                continue
            batch = record.get("rows") or []
            for i, row in enumerate(batch):
                key = rid if len(batch) == 1 else f"{rid}/{i}"
                if key in labels and isinstance(row, dict):
                    rows.append({**row, _schema(model_dir).target: labels[key]})
        if len(rows) < max(minimum, 1):
            return None
        folder = paths.root / "monitor" / "windows"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"labelled-{report.until.replace(':', '').replace('-', '')}.csv"
        pd.DataFrame(rows).to_csv(target, index=False)
        model_schema = _schema(model_dir)  # as a --schema file (`heartflow schema show`'s form): the retrain matches it
        schema = model_schema.to_mapping()
        schema.pop("labels", None)
        schema["missing"] = dict(model_schema.missing) if len(model_schema.missing) > 1 else model_schema.policy("")
        write_atomic(Path(f"{target}.schema.json"), json.dumps(schema, indent=2).encode("utf-8"))
        return str(target)

    def history(self, endpoint_name: str, limit: int = 200) -> list[dict[str, Any]]:
        try:
            lines = (self.paths(endpoint_name).root / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines[-limit:]:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
        return out

    def log(self, report: MonitorReport, client: Any) -> None:
        """``monitor_*`` metrics on the serving model's training run, step = the window's end (epoch seconds)."""
        from mlflow.entities import Metric

        run_id = self.registry.get(report.model_name, report.model_version).source_run_id
        now = int(datetime.now(UTC).timestamp() * 1000)
        step = int(datetime.fromisoformat(report.until.replace("Z", "+00:00")).timestamp())
        metrics = {name: value for name, value in monitor_metrics(report).items() if value is not None}
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def last_figures(home: Path, endpoint_name: str) -> dict[str, Any] | None:
    """What the last ``monitor`` found on this endpoint, or None."""
    try:
        return json.loads((EndpointPaths(Path(home), endpoint_name).root / LAST_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(text))


def _read_json_list(path: Path) -> list[dict[str, Any]] | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return found if isinstance(found, list) and found else None


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
