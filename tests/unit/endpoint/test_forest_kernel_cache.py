"""numba's on-disk cache of the forest kernel is shared by the two names this file is imported under:
``src.forest_kernel`` (the local host) and ``forest_kernel`` (score.py under azmlinfsrv or on Azure ML). A cache
written under one name once crashed every worker importing it under the other ("No module named
'forest_kernel'"), so each process here is a fresh interpreter on a copy of the file with its own cache."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import src.forest_kernel as kernel_module

pytestmark = pytest.mark.full  # fresh interpreters load numba's cache: `make test`, not `make test-fast`

PROBE = (
    "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
    "{import_line}\n"
    "print('available', fk.kernel_available())\n"
)


def _run(cwd: Path, path_entry: Path, import_line: str) -> str:
    code = f"import sys; sys.path.insert(0, {str(path_entry)!r})\n" + PROBE.format(import_line=import_line)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_cache_written_under_one_module_name_loads_under_the_other(tmp_path: Path) -> None:
    package = tmp_path / "copy" / "src"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(kernel_module.__file__, package / "forest_kernel.py")

    first = _run(tmp_path, package, "import forest_kernel as fk")  # as score.py imports it
    assert "available True" in first
    cached = sorted(p.name for p in (package / "__pycache__").glob("forest_kernel*.nb*"))
    assert cached, "the kernel was not cached next to its file"

    second = _run(tmp_path, package.parent, "import src.forest_kernel as fk")  # as the local host imports it
    assert "available True" in second
    assert "compiling it afresh" not in second and "does not compile" not in second
    assert sorted(p.name for p in (package / "__pycache__").glob("forest_kernel*.nb*")) == cached
