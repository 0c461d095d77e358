"""What the local backend tells a scheduled retrain: what serves now, lineage tags on a version, and the
champion's accuracy on each run's new data (MLflow metric history on the champion's trial run)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException

from backends.base import Endpoint, ModelVersion
from backends.errors import RegistrationError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DECAY_METRIC = "champion_accuracy_on_new_data"
DECAY_ROWS_METRIC = "champion_rows_on_new_data"


class LocalWatch:
    """LocalBackend's collaborator for scheduled retraining: what serves, lineage tags, the champion's scores."""

    def __init__(self, client: MlflowClient, endpoint: Callable[[str], Endpoint | None]) -> None:
        self._client = client
        self._endpoint = endpoint  # LocalBackend.endpoint: what an endpoint's host reports, or None

    def serving(self, endpoint_name: str) -> Endpoint | None:
        endpoint = self._endpoint(endpoint_name)
        if endpoint is None or endpoint.traffic.get(endpoint.deployment, 0) <= 0:
            return None
        return endpoint

    def tag_model(self, model: ModelVersion, tags: Mapping[str, str]) -> None:
        try:
            for key, value in tags.items():
                self._client.set_model_version_tag(model.name, model.version, key, value)
            if model.source_run_id:
                for key, value in tags.items():
                    self._client.set_tag(model.source_run_id, key, value)
        except MlflowException as exc:
            raise RegistrationError(f"could not tag {model.name} v{model.version}: {exc.message}") from exc

    def record_champion_score(self, model: ModelVersion, accuracy: float, rows: int) -> tuple[float, ...]:
        """Logged as the next step of ``champion_accuracy_on_new_data`` on the champion's trial run."""
        run_id = model.source_run_id
        try:
            history = self._client.get_metric_history(run_id, DECAY_METRIC)
            step = max((m.step for m in history), default=-1) + 1
            now = int(time.time() * 1000)
            self._client.log_metric(run_id, DECAY_METRIC, accuracy, timestamp=now, step=step)
            self._client.log_metric(run_id, DECAY_ROWS_METRIC, float(rows), timestamp=now, step=step)
            series = self._client.get_metric_history(run_id, DECAY_METRIC)
        except MlflowException as exc:
            raise RegistrationError(f"could not record the champion's score on run {run_id}: {exc.message}") from exc
        return tuple(m.value for m in sorted(series, key=lambda m: (m.step, m.timestamp)))
