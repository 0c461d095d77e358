"""The promotion history in a shared MLflow store: one run per entry in the ``heartflow-history``
experiment, so every machine that uses the store reads the same "what served when".

The home's own store keeps the history in <home>/history.jsonl instead (``backends.domain.history.HistoryLog``);
both have the same append/read.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from backends.base import HistoryEntry
from backends.errors import ConfigurationError

logger = logging.getLogger(__name__)

EXPERIMENT = "heartflow-history"
TAG_ENDPOINT = "heartflow.history.endpoint"
TAG_ENTRY = "heartflow.history.entry"
MAX_REASON = 3000  # an MLflow tag value holds 8000 characters; the rest of the entry is short
PAGE = 1000


class MlflowHistoryLog:
    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def _experiment_id(self, create: bool) -> str | None:
        experiment = self._client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        if not create:
            return None
        try:
            return self._client.create_experiment(EXPERIMENT)
        except MlflowException as exc:  # another machine created it first
            experiment = self._client.get_experiment_by_name(EXPERIMENT)
            if experiment is None:
                raise ConfigurationError(f"cannot create the MLflow experiment {EXPERIMENT}: {exc.message}") from exc
            return experiment.experiment_id

    def append(self, entry: HistoryEntry) -> None:
        record = dataclasses.asdict(entry)
        record["reason"] = record["reason"][:MAX_REASON]
        experiment_id = self._experiment_id(create=True)
        assert experiment_id is not None  # create=True returns an id or raises
        run = self._client.create_run(
            experiment_id,
            run_name=f"{entry.event}-{entry.model_name}-v{entry.model_version}",
            tags={TAG_ENDPOINT: entry.endpoint, TAG_ENTRY: json.dumps(record, sort_keys=True), "heartflow.kind": "history"},
        )
        self._client.set_terminated(run.info.run_id, "FINISHED")

    def read(self, endpoint_name: str | None = None) -> tuple[HistoryEntry, ...]:
        experiment_id = self._experiment_id(create=False)
        if experiment_id is None:
            return ()
        query = f"tags.`{TAG_ENDPOINT}` = '{endpoint_name}'" if endpoint_name else ""
        entries: list[tuple[int, HistoryEntry]] = []
        token = None
        while True:
            page = self._client.search_runs([experiment_id], filter_string=query, max_results=PAGE,
                                            order_by=["attributes.start_time ASC"], page_token=token)
            for run in page:
                raw = run.data.tags.get(TAG_ENTRY)
                if raw:
                    entries.append((run.info.start_time, HistoryEntry.from_record(json.loads(raw))))
            token = page.token
            if not token:
                break
        return tuple(e for _, e in sorted(entries, key=lambda pair: (pair[1].time, pair[0])))
