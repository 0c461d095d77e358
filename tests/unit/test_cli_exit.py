"""The console script ends without Python's module teardown (flows.cli.main): the exit status and every
line written before the end still arrive, through a pipe as a scheduler or CI reads them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each case is a fresh interpreter importing the CLI: `make test`, not `make test-fast`.
pytestmark = pytest.mark.full

MAIN = "import sys; from flows.cli import main; sys.argv = ['heartflow', *sys.argv[1:]]; main()"


def _heartflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", MAIN, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_command_that_succeeds_exits_0_with_its_whole_output() -> None:
    done = _heartflow("--help")
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout and "run" in done.stdout
    assert done.stdout.rstrip().endswith("─╯")  # the help's last box line: nothing cut off


def test_a_refused_command_keeps_its_status_and_its_message(tmp_path: Path) -> None:
    done = _heartflow("run", "--home", str(tmp_path / "home"), "--data", str(tmp_path / "missing.csv"))
    assert done.returncode == 1
    assert "does not exist" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
