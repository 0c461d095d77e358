"""The capture writer without a host: rotation by size, retention, settings followed, reasons without values."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from backends.local.endpoint.capture import (
    CaptureLog, CaptureSettings, Ticket, read_records, rejection_reason, request_id_of, set_capture_rate,
    sweep_expired, write_capture_settings,
)
from src.scoring import Scored


def _ticket(i: int) -> Ticket:
    ticket = Ticket(f"req-{i}".encode())
    ticket.deployment, ticket.model_name, ticket.model_version = "blue", "m", "1"
    data = [{"chol": 200 + i, "cp": "ASY"}]
    body = json.dumps({"data": data}).encode()
    ticket.scored = Scored(body, data if i % 2 else None, ["Presence"], np.array([0.9]), ["Absence", "Presence"])
    return ticket


def test_records_rotate_by_size_and_all_are_read_back(tmp_path: Path) -> None:
    log = CaptureLog(tmp_path, "ep", CaptureSettings(max_file_bytes=2048))
    for i in range(60):
        log.scored(_ticket(i), 200, 1.5)
    log.rejected(b"bad-1", 400, "bad value in chol", "blue")
    log.close()
    files = sorted((tmp_path / "capture").glob("*.jsonl"))
    assert len(files) > 1 and all(f.stat().st_size <= 2048 for f in files)
    records = list(read_records(tmp_path))
    scored = [r for r in records if r["kind"] == "scored"]
    assert all("request" not in r for r in scored)
    assert [r["request_id"] for r in scored] == [f"req-{i}" for i in range(60)]
    assert scored[5]["rows"] == [{"chol": 205, "cp": "ASY"}] and scored[5]["probabilities"] == [0.9]
    assert [r["reason"] for r in records if r["kind"] == "rejected"] == ["bad value in chol"]


def test_retention_deletes_old_files_only(tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    folder.mkdir()
    old, new = folder / "old.jsonl", folder / "new.jsonl"
    old.write_text("{}\n")
    new.write_text("{}\n")
    week_ago = time.time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))
    assert sweep_expired(folder, retention_days=7) == 1
    assert not old.exists() and new.exists()


def test_settings_are_checked_and_the_rate_is_followed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        CaptureSettings(rate=1.5)
    write_capture_settings(tmp_path, CaptureSettings(retention_days=3))
    set_capture_rate(tmp_path, 0.25)
    log = CaptureLog(tmp_path, "ep")
    assert log.settings == CaptureSettings(rate=0.25, retention_days=3)
    sampled = sum(log.sampled() for _ in range(4000))
    assert 700 < sampled < 1300


def test_request_ids_and_reasons() -> None:
    assert request_id_of([(b"x-request-id", b"abc-123")]) == b"abc-123"
    minted = request_id_of([(b"x-request-id", b"<script>")])
    assert minted != b"<script>" and len(minted) == 32
    assert rejection_reason(400, 'data[0].chol must be a number, got a string ("my secret")') == "bad value in chol"
    assert rejection_reason(400, "data[2] is missing 2 column(s): chol, cp") == "missing column(s)"
    assert rejection_reason(413, '"data" has 9 records, more than this endpoint accepts (5)') == "too many records"
    assert rejection_reason(401, "") == "missing or wrong key"


def test_batch_lines_read_back_as_records_beside_format_1_files(tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    folder.mkdir()
    old = {"kind": "scored", "request_id": "old-1", "time": "2026-12-01T10:00:00.000000Z", "endpoint": "ep",
           "deployment": "blue", "model_name": "m", "model_version": "1", "status": 200, "latency_ms": 2.0,
           "predictions": ["Absence"], "probabilities": [0.2], "classes": ["Absence", "Presence"],
           "request": {"data": [{"chol": 180, "cp": "TA"}]}}
    (folder / "20261201T100000-1-0001.jsonl").write_text(json.dumps(old) + "\n")
    log = CaptureLog(tmp_path, "ep")
    pretty = Ticket(b"pretty")
    pretty.deployment, pretty.model_name, pretty.model_version = "green", "m", "2"
    rows = [{"chol": 250, "cp": "ASY"}, {"chol": None, "cp": "NAP"}]
    pretty.scored = Scored(json.dumps({"data": rows}, indent=2).encode(), None, ["Presence", "Absence"], None,
                           ["Absence", "Presence"])
    log.scored(pretty, 200, 3.25)
    log.scored(_ticket(7), 200, 1.0)
    failed = _ticket(8)
    log.scored(failed, 500, 4.0)
    log.unsampled("blue", "")
    log.close()
    new_files = [f for f in folder.glob("*.jsonl") if not f.name.startswith("20261201")]
    assert any(json.loads(line)["kind"] == "scored-batch" for f in new_files for line in f.read_text().splitlines())
    records = {r.get("request_id", r["kind"]): r for r in read_records(tmp_path)}
    assert records["old-1"]["rows"] == [{"chol": 180, "cp": "TA"}] and "request" not in records["old-1"]
    got = records["pretty"]
    assert (got["kind"], got["deployment"], got["model_version"], got["status"]) == ("scored", "green", "2", 200)
    assert got["rows"] == rows and got["predictions"] == ["Presence", "Absence"] and got["probabilities"] is None
    assert got["latency_ms"] == 3.25 and got["time"].endswith("Z") and got["classes"] == ["Absence", "Presence"]
    assert records["req-7"]["probabilities"] == [0.9] and records["req-7"]["rows"] == [{"chol": 207, "cp": "ASY"}]
    assert records["req-8"]["kind"] == "error" and records["req-8"]["status"] == 500 and "rows" not in records["req-8"]
    assert records["unsampled"]["count"] == 1
    later = datetime.fromisoformat(got["time"].replace("Z", "+00:00")) + timedelta(seconds=1)
    assert list(read_records(tmp_path, since=later)) == []


def test_minted_request_ids_do_not_repeat() -> None:
    minted = {request_id_of([]) for _ in range(10_000)}
    assert len(minted) == 10_000 and all(len(m) == 32 for m in minted)
