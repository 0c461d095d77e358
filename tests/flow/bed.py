"""The flow's test bed: one in-memory backend the flow runs on, the spec a branch test asks for, the
search spaces that make a candidate win or lose, a first run of the flow, and the artifacts a run published."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from backends.domain.spec import Choice, DataSpec, DeploySpec, PipelineSpec, SweepSpec, ValidationSpec
from backends.memory import Faults, InMemoryBackend
from tests.tables import LABELS, TARGET, write_table

ENDPOINT = "flow-endpoint"
MODEL = "flow-classifier"
# Two forests (the grid's two points): enough for a best trial to be chosen, cheap enough for every branch.
SMALL_SPACE = {"n_estimators": Choice(values=[20]), "max_depth": Choice(values=[4, 8])}
# One tree of depth one: a candidate the forests beat on the holdout, for the gate to reject.
STUMP_SPACE = {"n_estimators": Choice(values=[1]), "max_depth": Choice(values=[1]), "max_features": Choice(values=[1])}


@dataclass
class FlowBed:
    """One in-memory backend the flow runs on, and the tables a test writes for it."""

    backend: InMemoryBackend
    faults: Faults
    folder: Path

    def table(self, frame: pd.DataFrame, name: str) -> str:
        return str(write_table(frame, self.folder / f"{name}.csv"))

    def spec(self, path: str, *, space: dict[str, Any] | None = None, seed: int = 42, data: dict[str, Any] | None = None,
             deploy: dict[str, Any] | None = None, **changes: Any) -> PipelineSpec:
        sweep = SweepSpec(search_space=space or SMALL_SPACE, sampling="grid", max_total_trials=2, max_concurrent_trials=1,
                          seed=seed, validation=ValidationSpec(method="split"))
        return PipelineSpec(
            model_name=MODEL, sweep=sweep,
            data=DataSpec(path=path, target=TARGET, positive_class=LABELS[1], **(data or {})),
            deploy=DeploySpec(endpoint_name=ENDPOINT, **(deploy or {})), **changes,
        )

    def run(self, spec: PipelineSpec) -> Any:
        """The flow's final state (the flow is called in this process, against the harness's API)."""
        from flows.train_and_deploy import train_and_deploy

        return train_and_deploy(spec=spec, return_state=True)


def artifacts_of(state) -> dict:
    """The artifacts the flow run behind `state` published, by key."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    return {a.key: a for a in found if a.key}


def first_run(bed: FlowBed, table: pd.DataFrame):
    """Run the flow once on `table` as the first data; the table's path and the run's summary."""
    path = bed.table(table, "first")
    state = bed.run(bed.spec(path))
    assert state.is_completed(), state.message
    return path, state.result()
