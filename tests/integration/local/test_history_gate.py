"""The gate's figures in the local history: a real promotion and a real rejection (MLflow on SQLite, the
local endpoint host on 127.0.0.1) record them in <home>/history.jsonl, and `heartflow history` shows
them, in its table and in --json; a line written before the figures were kept still reads."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from backends.base import EvalReport
from backends.domain.selection import decide_gate
from flows.cli import app
from tests.contract.harnesses import LocalHarness

OLD_LINE = {  # a history line as heartflow wrote it before HistoryEntry.gate existed
    "time": "2026-11-01T12:00:00.000000+00:00", "event": "promoted", "endpoint": "", "deployment": "blue",
    "model_name": "heart-classifier", "model_version": "1", "accuracy": 0.8, "champion_accuracy": None,
    "reason": "holdout accuracy 0.8000", "triggered_by": "ops@host",
}


def answers(right: int, version: str, rows: int = 60) -> EvalReport:
    labels = tuple(i % 2 for i in range(rows))  # both classes: a constant answer scores 0.5
    predictions = tuple(y if i < right else 1 - y for i, y in enumerate(labels))
    return EvalReport(endpoint="e", deployment="green", model_version=version, rows=rows, labels=labels,
                      predictions=predictions, accuracy=right / rows, report_text="",
                      report={}, confusion_matrix=((0, 0), (rows - right, right)), requests=1, latency_ms_p50=1.0)


def test_promotion_and_rejection_keep_the_gates_figures(tmp_path: Path, trained_model_dir: Path) -> None:
    home = tmp_path / "home"
    harness = LocalHarness(home, trained_model_dir, tmp_path)
    name = harness.spec.endpoint_name
    (home / "history.jsonl").write_text(json.dumps({**OLD_LINE, "endpoint": name}) + "\n")
    try:
        first = harness.model()
        endpoint = harness.backend.deploy(first, harness.spec)
        first_gate = decide_gate(answers(48, first.version), None)
        harness.backend.promote(endpoint, first, answers(48, first.version), reason=first_gate.reason,
                                gate=first_gate.figures())
        second = harness.model()
        endpoint = harness.backend.deploy(second, harness.spec)
        paired = decide_gate(answers(36, second.version), answers(48, first.version), rule="paired")
        assert not paired.promote
        harness.backend.reject(endpoint, second, paired.reason, report=answers(36, second.version),
                               gate=paired.figures())
    finally:
        harness.close()

    result = CliRunner().invoke(app, ["history", "--home", str(home), "--endpoint-name", name, "--json"])
    assert result.exit_code == 0, result.output
    old, promoted, rejected = (json.loads(line) for line in result.stdout.splitlines())
    assert old["gate"] is None and old["reason"] == OLD_LINE["reason"]
    assert {k: v for k, v in promoted["gate"].items() if not k.startswith("cv_")} == {
        "rule": "tolerance", "rows": 60, "candidate_accuracy": 0.8, "champion_accuracy": None, "difference": None,
        "p_value": None, "p_worse": None, "tolerance": 0.0, "metric": "accuracy", "candidate_value": 0.8,
        "champion_value": None, "baseline": 0.5, "baseline_p": first_gate.baseline_p}
    gate = rejected["gate"]
    assert (rejected["event"], rejected["model_version"]) == ("rejected", second.version)
    assert (gate["rule"], gate["rows"]) == ("paired", 60)
    assert (gate["candidate_accuracy"], gate["champion_accuracy"]) == (0.6, 0.8)
    assert gate["difference"] == paired.difference and gate["p_value"] == paired.p_value
    assert gate["p_worse"] == paired.p_worse < 0.05 and gate["tolerance"] == 0.05

    table = CliRunner().invoke(app, ["history", "--home", str(home), "--endpoint-name", name])
    assert table.exit_code == 0, table.output
    assert "gate: tolerance gate on 60 rows, candidate 0.8000, no champion" in table.stdout
    assert (f"gate: paired gate on 60 rows, candidate 0.6000, champion 0.8000, difference -0.2000, "
            f"McNemar p={paired.p_value:.3g} (worse: p={paired.p_worse:.3g})") in table.stdout
    assert table.stdout.count("gate:") == 2  # the old line has no figures to show


def test_the_shared_mlflow_history_keeps_the_figures_and_reads_old_entries(tmp_path: Path) -> None:
    """The history a shared MLflow store keeps (one run per entry), on a real SQLite store."""
    import dataclasses

    from backends.base import HistoryEntry
    from backends.local import tracking
    from backends.local.shared_history import TAG_ENDPOINT, TAG_ENTRY, MlflowHistoryLog

    client = tracking.make_client(tmp_path / "home")
    log = MlflowHistoryLog(client)
    old = client.create_run(client.create_experiment("heartflow-history"),
                            tags={TAG_ENDPOINT: "ep", TAG_ENTRY: json.dumps({**OLD_LINE, "endpoint": "ep"})})
    client.set_terminated(old.info.run_id, "FINISHED")
    decision = decide_gate(answers(50, "2"), answers(45, "1"), rule="paired")
    entry = HistoryEntry("2026-11-28T04:00:00.000000+00:00", "promoted", "ep", "green", "heart-classifier", "2",
                         50 / 60, 0.75, decision.reason, "ops@host", decision.figures())
    log.append(entry)
    before, after = log.read("ep")
    assert before == HistoryEntry.from_record({**OLD_LINE, "endpoint": "ep"}) and before.gate is None
    assert after == entry and dataclasses.asdict(after)["gate"]["p_value"] == decision.p_value
