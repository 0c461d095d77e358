"""The monitor's figures from captured records: traffic, drift (the retraining rules), prediction drift,
quality, realized performance with an interval, the confidence-based estimate, and the degraded test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from backends.domain.drift import numeric_psi
from backends.domain.monitoring import ASSUMPTIONS, is_holdout_answer, parse_since, summarize
from backends.domain.outcomes import check_labels, read_feedback_file, receipt
from backends.errors import DataValidationError

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def _reference(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    chol = rng.normal(240, 45, rows)
    chol[rng.random(rows) < 0.05] = np.nan  # empty cells, as users' tables have
    return pd.DataFrame({"chol": chol, "Chest Pain": rng.choice(["ATA", "NAP", "ASY"], rows),
                         "target": rng.choice(["Absence", "Presence"], rows)})


def _records(frame: pd.DataFrame, proba: np.ndarray, prefix: str = "live", version: str = "3") -> list[dict]:
    out = []
    for i, (row, p) in enumerate(zip(frame.to_dict("records"), proba, strict=True)):
        out.append({"kind": "scored", "request_id": f"{prefix}-{i}", "time": "2026-12-03T09:30:00.000000Z",
                    "model_version": version, "status": 200, "latency_ms": 1.0 + i % 10,
                    "rows": [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items() if k != "target"}],
                    "predictions": ["Presence" if p >= 0.5 else "Absence"], "probabilities": [float(p)],
                    "classes": ["Absence", "Presence"]})
    return out


def _summary(records: list[dict], labels: dict | None = None, gate: float | None = 0.8, reference: pd.DataFrame | None = None):
    holdout = [r for r in records if is_holdout_answer(r, "3")]
    return summarize(records, labels or {}, holdout=holdout, endpoint="ep", model_name="m", model_version="3",
                     since=NOW - timedelta(hours=1), until=NOW, reference=_reference() if reference is None else reference,
                     numeric=["chol"], categorical=["Chest Pain"], metric="accuracy", gate_value=gate)


def test_shifted_column_drifts_and_traffic_is_counted_without_own_evaluation() -> None:
    rng = np.random.default_rng(1)
    live = _reference(300, seed=2)
    live["chol"] = live["chol"] * 1.5
    holdout = _records(_reference(40, seed=3), rng.uniform(0, 1, 40), prefix="heartflow-holdout-x")
    importance = _records(_reference(20, seed=4), rng.uniform(0, 1, 20), prefix="heartflow-importance-x")
    refused = [{"kind": "rejected", "request_id": "r1", "status": 400, "reason": "bad value in chol"},
               {"kind": "rejected", "request_id": "r2", "status": 401, "reason": "missing or wrong key"},
               {"kind": "error", "request_id": "r3", "status": 503}, {"kind": "unsampled", "count": 7}]
    report = _summary([*_records(live, rng.uniform(0, 1, 300)), *holdout, *importance, *refused])
    assert report.drifted == ("chol",)
    assert report.requests == 300 + 3 + 7 and report.scored_rows == 300
    assert report.errors == {"400": 1, "401": 1, "503": 1}
    assert report.rejected == {"bad value in chol": 1, "missing or wrong key": 1}
    assert report.prediction_drift.reference_rows == 40
    assert report.latency_p50_ms is not None and report.latency_p99_ms >= report.latency_p50_ms
    chest = next(q for q in report.quality if q.column == "Chest Pain")
    assert chest.unseen == 0 and next(q for q in report.quality if q.column == "chol").out_of_range > 0


def test_same_distribution_does_not_drift() -> None:
    rng = np.random.default_rng(5)
    report = _summary(_records(_reference(300, seed=6), rng.uniform(0, 1, 300)))
    assert report.drifted == ()


def test_missing_values_do_not_break_psi() -> None:
    ref = pd.Series([1.0, 2.0, np.nan, 3.0, 4.0] * 20)
    assert numeric_psi(ref, ref) == pytest.approx(0.0)
    assert numeric_psi(ref, ref * 3) > 0.25


def test_realized_and_estimated_performance() -> None:
    rng = np.random.default_rng(7)
    frame = _reference(300, seed=8)
    proba = rng.uniform(0, 1, 300)
    records = _records(frame, proba)
    truth = {f"live-{i}": ("Presence" if rng.random() < proba[i] else "Absence") for i in range(100)}
    truth["never-captured"] = "Absence"
    report = _summary(records, truth)
    realized = report.realized
    predicted = ["Presence" if p >= 0.5 else "Absence" for p in proba[:100]]
    expected = np.mean([truth[f"live-{i}"] == predicted[i] for i in range(100)])
    assert realized.rows == 100 and realized.value == pytest.approx(expected, abs=1e-4)
    assert realized.low <= realized.value <= realized.high
    unlabelled = proba[100:]
    assert report.estimated.rows == 200
    assert report.estimated.value == pytest.approx(np.mean(np.maximum(unlabelled, 1 - unlabelled)), abs=1e-4)
    assert report.unknown_labels == 1
    assert report.to_json()["realized"]["labelled"] == 100 and "concept shift" in ASSUMPTIONS


def test_degraded_when_realized_interval_is_below_the_gate() -> None:
    rng = np.random.default_rng(9)
    proba = rng.uniform(0.8, 1.0, 200)  # confident "Presence" ...
    records = _records(_reference(200, seed=10), proba)
    wrong = {f"live-{i}": "Absence" for i in range(120)}  # ... and wrong on the labelled rows
    report = _summary(records, wrong, gate=0.85)
    assert report.degraded and "realized accuracy" in report.degraded_reason
    fine = _summary(records, {f"live-{i}": "Presence" for i in range(120)}, gate=0.85)
    assert not fine.degraded


def test_degraded_when_the_estimate_falls_below_the_gate() -> None:
    unsure = np.full(100, 0.55)  # accuracy expected 0.55 when the probabilities are calibrated
    report = _summary(_records(_reference(100, seed=11), unsure), gate=0.85)
    assert report.degraded and "estimated accuracy 0.55" in report.degraded_reason


def test_since_accepts_durations_and_times() -> None:
    assert parse_since("6h", NOW) == NOW - timedelta(hours=6)
    assert parse_since("2026-12-03T08:00", NOW) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    with pytest.raises(DataValidationError, match="--since 'yesterday'"):
        parse_since("yesterday", NOW)


def test_labels_are_checked_against_the_model_classes(tmp_path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("request_id,label\na-1,Presence\na-2, Absence\n")
    pairs = check_labels(read_feedback_file(csv), ["Absence", "Presence"], str(csv))
    assert pairs == [("a-1", "Presence"), ("a-2", "Absence")]
    lines = tmp_path / "labels.jsonl"
    lines.write_text('{"request_id": "b-1", "label": 1}\n{"request_id": "b-2", "label": "0"}\n')
    assert check_labels(read_feedback_file(lines), [0, 1], "x") == [("b-1", 1), ("b-2", 0)]
    with pytest.raises(DataValidationError, match="label 'maybe', not one of the model's classes"):
        check_labels([{"request_id": "c", "label": "maybe"}], ["Absence", "Presence"], "x")
    with pytest.raises(DataValidationError, match="columns request_id and label"):
        (tmp_path / "bad.csv").write_text("id,outcome\n1,0\n")
        read_feedback_file(tmp_path / "bad.csv")
    assert receipt(pairs, {"a-1"}).to_json() == {"stored": 2, "matched": 1, "unknown": 1, "unknown_ids": ["a-2"]}
