"""What a folder source records about each file it appended, and how that record fits in a tag."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from backends.domain.sources import DataSource, SourcePart, load_data, parts_json
from tasks.watch import _parts_table
from tests.tables import TARGET, user_table


def test_a_folder_read_whole_records_each_file_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    payloads = {name: user_table(60 + i * 10, i).to_csv(index=False).encode() for i, name in enumerate(("b.csv", "a.csv"))}
    for name, payload in payloads.items():
        (folder / name).write_bytes(payload)
    source = load_data(str(folder), None, 0.1, folder_rule="all", target=TARGET).source
    assert [p.name for p in source.parts] == ["a.csv", "b.csv"] and source.rows == 130
    for part in source.parts:
        assert part.size == len(payloads[part.name]) and part.sha256 == hashlib.sha256(payloads[part.name]).hexdigest()
        assert part.version.startswith("modified ")
    assert json.loads(source.tags()["heartflow.source_parts"])[0][:1] == ["a.csv"]
    # One file: no parts, and no parts tags.
    single = load_data(str(folder / "a.csv"), None, 0.1, target=TARGET).source
    assert single.parts == () and "heartflow.source_parts" not in single.tags()


def test_the_parts_tag_keeps_whole_entries_within_its_limit() -> None:
    parts = [SourcePart(f"daily/2026-11-{d:02d}.csv", f"etag 0x{d:015X}", 1000 + d, "ab" * 32) for d in range(1, 31)]
    full = json.loads(parts_json(parts, limit=100_000))
    assert len(full) == 30 and full[0] == ["daily/2026-11-01.csv", "etag 0x000000000000001", 1001, "ab" * 32]
    cut = parts_json(parts, limit=1000)
    assert len(cut) <= 1000 and json.loads(cut) == full[: len(json.loads(cut))] and 0 < len(json.loads(cut)) < 30
    source = DataSource("az://c/daily/", "x", "30 blobs", "cd" * 32, 900, tuple(parts))
    assert source.tags()["heartflow.source_parts_count"] == "30"


def test_the_data_source_artifact_lists_the_parts() -> None:
    parts = (SourcePart("daily/a.csv", "etag 0x1", 10, "ab" * 32), SourcePart("daily/b.csv", "etag 0x2", 20, "cd" * 32))
    lines = _parts_table(DataSource("az://c/daily/", "x", "2 blobs", "ef" * 32, 5, parts))
    assert "| `daily/b.csv` | etag 0x2 | 20 | `" + "cd" * 32 + "` |" in lines and "2 file(s) read, in this order:" in lines
    assert _parts_table(DataSource("f.csv", "f.csv", "v", "ef" * 32, 5)) == []
