"""The gate's figures in the history the Azure backend keeps on the endpoint's tags (what another machine
reads), through the control-plane fakes built on the SDK's operations classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.azure import AzureBackend
from backends.azure.deploy import HISTORY_PREFIX, TAG_VALUE_LIMIT, decode_history, encode_history
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.base import EvalReport, GateFigures, HistoryEntry
from backends.domain.selection import decide_gate
from backends.domain.spec import DeploySpec
from tests.contract.harnesses import sweep_of
from tests.unit.azure.fakes import FakeAzure


def make(settings: AzureSettings, fake: FakeAzure) -> AzureBackend:
    return AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=fake.trial_reader,
                        retry=RetryPolicy(attempts=2, initial_s=0, max_s=0, sleep=lambda s: None), sleep=lambda s: None)


def answers(right: int, rows: int = 31, version: str = "1") -> EvalReport:
    labels = tuple(i % 2 for i in range(rows))  # both classes: a constant answer scores about 0.5
    predictions = tuple(y if i < right else 1 - y for i, y in enumerate(labels))
    return EvalReport(endpoint="e", deployment="blue", model_version=version, rows=rows, labels=labels,
                      predictions=predictions, accuracy=right / rows, report_text="",
                      report={}, confusion_matrix=((0, 0), (rows - right, right)), requests=1, latency_ms_p50=1.0)


def elsewhere(settings: AzureSettings, fake: FakeAzure, tmp_path: Path) -> AzureBackend:
    """The same workspace seen from another machine: no local history record, only the endpoint's tags."""
    other = settings.model_copy(update={"ledger_path": str(tmp_path / "other" / "ledger.json")})
    return make(other, fake)


def test_the_gates_figures_travel_on_the_endpoints_tags(settings: AzureSettings, tmp_path: Path) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    first = backend.register(sweep_of("sweep_1", 1, 0.9), model_name="heart-classifier")
    endpoint = backend.deploy(first, DeploySpec())
    candidate, champion = answers(27), answers(24, version="0")
    decision = decide_gate(candidate, champion, rule="paired")
    backend.promote(endpoint, first, candidate, reason=decision.reason, gate=decision.figures())

    here = backend.history(endpoint.name)[-1].gate
    assert here == decision.figures()  # the local record is exact
    (entry,) = elsewhere(settings, fake, tmp_path).history(endpoint.name)
    there = entry.gate
    assert there is not None and (there.rule, there.rows) == ("paired", 31)
    for name in ("candidate_accuracy", "champion_accuracy", "difference", "p_value", "p_worse", "tolerance"):
        assert getattr(there, name) == pytest.approx(getattr(decision.figures(), name), rel=1e-5), name
    assert there.metric == "accuracy" and there.baseline == pytest.approx(decision.baseline, rel=1e-5)
    assert there.baseline_p == pytest.approx(decision.baseline_p, rel=1e-5)  # the floor travels too
    tags = fake.endpoint(endpoint.name).tags
    assert all(len(v) <= TAG_VALUE_LIMIT for k, v in tags.items() if k.startswith(HISTORY_PREFIX))


def test_a_tag_written_before_the_figures_were_kept_still_reads(settings: AzureSettings, tmp_path: Path) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    first = backend.register(sweep_of("sweep_1", 1, 0.9), model_name="heart-classifier")
    endpoint = backend.deploy(first, DeploySpec())
    stored = fake.endpoint(endpoint.name)
    stored.tags = {**(stored.tags or {}), f"{HISTORY_PREFIX}20261101T120000000000Z":
                   json.dumps(["promoted", "blue", "heart-classifier", "1", 0.9, None, "ops@host", "first"])}
    fake.online_endpoints.begin_create_or_update(stored).result()
    (entry,) = elsewhere(settings, fake, tmp_path).history(endpoint.name)
    assert (entry.event, entry.model_version, entry.accuracy, entry.reason, entry.gate) == (
        "promoted", "1", 0.9, "first", None)


def test_a_long_entry_leaves_the_figures_to_the_local_record_and_still_fits() -> None:
    gate = GateFigures("paired", 1234, 0.812345678, 0.798765432, 0.013580246, 0.123456789, 0.93456789, 0.05)
    entry = HistoryEntry("2026-11-28T04:00:00.123456+00:00", "rejected", "ep", "green", "m" * 150, "12", 0.81, 0.8,
                         "r" * 300, "someone@somewhere", gate)
    key, value = encode_history(entry)
    assert len(value) <= TAG_VALUE_LIMIT
    decoded = decode_history("ep", key, value)
    assert decoded is not None and decoded.gate is None and decoded.model_name == "m" * 150

    short = HistoryEntry(entry.time, "rejected", "ep", "green", "heart-classifier", "12", 0.81, 0.8, "r" * 300,
                         "someone@somewhere", gate)
    key, value = encode_history(short)
    decoded = decode_history("ep", key, value)
    assert len(value) <= TAG_VALUE_LIMIT and decoded is not None and decoded.gate is not None
    assert decoded.gate.rows == 1234 and decoded.gate.p_value == pytest.approx(0.123457, rel=1e-6)
    assert decoded.reason and short.reason.startswith(decoded.reason)
