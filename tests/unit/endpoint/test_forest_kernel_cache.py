"""numba's on-disk cache of the forest kernel, written by one process, is loaded by the next: the kernel is
src.forest_kernel in every process (the local host, and score.py on Azure ML or under azmlinfsrv, which import
src as a package from the code folder), so no process compiles it again. Each process here is a fresh
interpreter on the code folder heartflow uploads, with its own cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backends.azure.code import stage_code

pytestmark = pytest.mark.full  # fresh interpreters load numba's cache: `make test`, not `make test-fast`

PROBE = (
    "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import src.forest_kernel as fk\n"
    "print('module', fk.__name__, fk.__file__)\n"
    "print('available', fk.kernel_available())\n"
)


def _run(cwd: Path, code: Path) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, str(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_kernel_cached_by_one_process_loads_in_the_next(tmp_path: Path) -> None:
    code = stage_code(tmp_path / "code")
    first = _run(tmp_path, code)
    assert f"module src.forest_kernel {code / 'src' / 'forest_kernel.py'}" in first and "available True" in first
    cache = code / "src" / "__pycache__"
    written = {p.name: p.stat().st_mtime_ns for p in cache.glob("forest_kernel*.nb*")}
    assert written, "the kernel was not cached next to its file"

    second = _run(tmp_path, code)
    assert "available True" in second and "does not compile" not in second
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("forest_kernel*.nb*")} == written  # loaded, not rewritten
