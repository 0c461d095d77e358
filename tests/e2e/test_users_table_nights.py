"""A users' table through a second night with its champion serving, and a run killed while it holds the rollout
slot, as a user runs heartflow: the real CLI in its own process group, Prefect's default temporary server on
one PREFECT_HOME, the endpoint serving between nights.

Night 1 trains on 700 rows of a table with text columns (Sex M/F, chest pain ATA/ASY...), text labels, empty
cells and an ID column. Night 2 brings all 918 rows: its first attempt is killed (SIGKILL of the whole process
group) right after it took the rollout slot; the rerun reclaims the slot at once, measures the champion's
decay on the new rows and the drift of the text columns, and ends in a gate decision, with no stage failed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.local.backend import LocalBackend
from tests.tables import TARGET, user_table, write_table

ENDPOINT = "nights-endpoint"
ARGS = ("--target", TARGET, "--trials", "4", "--endpoint-name", ENDPOINT)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("nights")
    yield path
    LocalBackend(path / "home").teardown(ENDPOINT)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # Prefect's default: a temporary server
    env.update(PREFECT_HOME=str(home / "prefect"), HEARTFLOW_HOME=str(home / "home"))
    return env


def _cli(home: Path, *args: str, kill_after: str | None = None) -> tuple[int, str]:
    """Run the CLI as a user would; with ``kill_after``, SIGKILL its process group when that line appears."""
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], env=_env(home), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if kill_after and kill_after in line:
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=900)
    return process.returncode, "".join(lines)


def test_a_users_table_through_a_killed_second_night_and_its_rerun(home: Path) -> None:
    table = user_table(918, seed=11)
    first = write_table(table.iloc[:700], home / "night1.csv")
    code, out = _cli(home, "run", "--data", str(first), *ARGS)
    assert code == 0, out[-3000:]

    second = write_table(table, home / "night2.csv")
    code, out = _cli(home, "run", "--data", str(second), *ARGS, kill_after="holding the rollout slot")
    assert code == -signal.SIGKILL, out[-3000:]

    code, out = _cli(home, "run", "--data", str(second), *ARGS)
    assert "stage " not in out or " failed: " not in out, out[-3000:]
    assert re.search(r"rollout slot of nights-endpoint was held by flow run \S+ \(crashed .*process \d+ .* is gone\): "
                     r"reclaimed", out), out[-3000:]
    waited = float(re.search(r"holding the rollout slot of nights-endpoint \(waited ([\d.]+) s\)", out).group(1))
    assert waited < 60, f"the rerun waited {waited} s for a dead holder"
    decay = re.search(r"champion v1 on (\d+) new rows through .*: accuracy ([\d.]+)", out)
    assert decay and int(decay.group(1)) > 100, out[-3000:]  # the 218 new rows, less the holdout's share
    assert "drift against v1's training data" in out
    assert "promoted heart-classifier v2" in out or "was rejected by the promotion gate" in out, out[-3000:]
    assert code in (0, 1) and ("was rejected by the promotion gate" in out) == (code == 1), out[-3000:]

    code, out = _cli(home, "status", "--json", "--endpoint-name", ENDPOINT)
    status = json.loads(out.strip().splitlines()[-1])
    assert status["serving"] and status["champion_serves"] and status["inconsistent"] == [], status
