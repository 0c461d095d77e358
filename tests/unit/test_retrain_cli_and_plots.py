"""`history --json` / `status --json` lines, the situation sentences, and plots as data URIs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from typer.testing import CliRunner

from backends.reporting import plots
from backends.base import Endpoint, HistoryEntry, ModelVersion
from backends.domain.drift import ColumnDrift, DriftReport
from backends.domain.history import HistoryLog
from backends.domain.spec import DataSpec
from flows.cli import app
from tasks.watch import ChampionWatch, describe_situation, early_end_reason, unchanged_message

CHAMPION = ModelVersion("heart-classifier", "3", "run3", "sweep", "accuracy", 0.9, "ab" * 32, "models:/h/3")


def _entry(version: str, event: str) -> HistoryEntry:
    return HistoryEntry("2026-11-28T01:00:00+00:00", event, "ep-one", "blue", "heart-classifier", version, 0.9, None,
                        "because", "tester")


def test_history_json_prints_one_object_per_line(tmp_path: Path) -> None:
    log = HistoryLog(tmp_path / "history.jsonl")
    log.append(_entry("1", "promoted"))
    log.append(_entry("2", "rejected"))
    result = CliRunner().invoke(app, ["history", "--home", str(tmp_path), "--endpoint-name", "ep-one", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["event"], r["model_version"]) for r in lines] == [("promoted", "1"), ("rejected", "2")]
    # The versions are not in this home's registry: their lineage is null, not invented.
    assert lines[0]["data_sha256"] is None and lines[0]["source_uri"] is None and lines[0]["accuracy"] == 0.9


def test_status_json_says_nothing_serves_and_exits_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--home", str(tmp_path), "--endpoint-name", "ep-one", "--json"])
    assert result.exit_code == 3
    record = json.loads(result.stdout.strip())
    assert record == {**record, "endpoint": "ep-one", "serving": False, "champion_version": None, "champion_serves": False}


def test_situations_tell_no_champion_from_nothing_serving() -> None:
    serving = Endpoint("ep", "blue", "http://127.0.0.1:1/score", "heart-classifier", "3", "key file", {"blue": 100})
    assert describe_situation(None, None, "ep") == "no champion yet, and nothing serves on ep"
    assert describe_situation(CHAMPION, None, "ep") == (
        "champion heart-classifier v3 exists but nothing serves on ep: the run restores it")
    assert describe_situation(CHAMPION, serving, "ep") == "champion heart-classifier v3 serves on ep"
    assert unchanged_message(CHAMPION, CHAMPION.data_sha256) == f"no new data since heart-classifier v3 (sha256 {'ab' * 6})"


def test_plots_become_png_data_uris() -> None:
    uri = plots.png_data_uri(plots.decay_figure([0.9, 0.86, 0.8], "decay"))
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    drift = plots.png_data_uri(plots.drift_figure([("chol", 0.9, True), ("age", 0.01, False)], 0.25, 0.1))
    assert base64.b64decode(drift.split(",", 1)[1])[:4] == b"\x89PNG"


def _watch(unchanged: bool, drifted: bool) -> ChampionWatch:
    psi = 0.6 if drifted else 0.02
    drift = DriftReport(300, 400, (ColumnDrift("chol", "numeric", psi, None, 240.0, 300.0, "major" if drifted else "none", drifted),))
    return ChampionWatch(CHAMPION, None, unchanged, "situation", drift=drift)


def test_the_run_ends_early_on_the_champions_data_or_without_drift_when_asked() -> None:
    sha = CHAMPION.data_sha256
    assert early_end_reason(_watch(True, False), DataSpec(), sha) == unchanged_message(CHAMPION, sha)
    assert early_end_reason(_watch(True, False), DataSpec(force=True), sha) is None
    assert early_end_reason(_watch(False, False), DataSpec(), "cd" * 32) is None  # retrain_on always
    assert early_end_reason(_watch(False, False), DataSpec(retrain_on="drift"), "cd" * 32) == (
        "no column drifted since heart-classifier v3 (retrain_on drift; largest PSI 0.020)")
    assert early_end_reason(_watch(False, True), DataSpec(retrain_on="drift"), "cd" * 32) is None
    no_champion = ChampionWatch(None, None, False, "no champion yet, and nothing serves on ep")
    assert early_end_reason(no_champion, DataSpec(retrain_on="drift"), sha) is None
