"""The automation's flow retrains on the backend the event names: an Azure endpoint's drift event (its
labelled window a blob URL) runs train-and-deploy with ``backend: azure``, under the name runs use for the
endpoint; the in-memory backend stands in for Azure (tests/flow/conftest.py's seam)."""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd
import pytest

from tests.flow.bed import FlowBed


def test_an_azure_event_retrains_on_the_azure_backend(bed: FlowBed, heart_frame: pd.DataFrame,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.retrain_on_event import retrain_on_event

    specs: list[Any] = []

    def backend_for(spec: Any, secrets: Any = None) -> Any:
        specs.append(spec)
        return bed.backend

    monkeypatch.setattr("flows.train_and_deploy.backend_for_spec", backend_for)
    window = bed.table(heart_frame, "labelled-window")
    done = retrain_on_event(event="heartflow.endpoint.drifted", event_id=uuid.uuid4().hex,
                            endpoint_name="heart-classify-endpoint", retrain=True, data_uri=window,
                            home=str(bed.folder), trials=2, backend="azure")
    assert done.startswith("retrained"), done
    assert specs and {s.backend for s in specs} == {"azure"}
    assert {s.deploy.endpoint_name for s in specs} == {"heart-classify-endpoint"} and specs[0].data.path == window
    assert f"on {window}" in done  # retrained (promoted, or kept the champion by the gate's decision)
