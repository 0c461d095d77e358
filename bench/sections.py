"""docs/benchmarks.md is written by sections: each benchmark replaces its own `## Title` section and leaves
the others (and any section another tool appends) alone."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

DEFAULT_INTRO = (
    "# Benchmarks\n\nEvery figure is a ratio against a baseline run in the same invocation, on the same machine.\n"
)


def machine() -> str:
    """Cores, CPU model, memory and OS of this machine, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        memory = ""
    return f"{os.cpu_count()} cores ({cpu}){memory}, {platform.platform(terse=True)}, Python {platform.python_version()}"


def write_section(path: Path, title: str, body: str) -> None:
    """Replace (or append) the `## title` section of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else DEFAULT_INTRO
    section = f"## {title}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n", encoding="utf-8")


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


class CpuClock:
    """CPU seconds (user + system) of this process and its reaped children between start and stop: on a
    loaded machine, the work done, which wall time mixes with time spent waiting for a core."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    @staticmethod
    def _now() -> float:
        import multiprocessing
        import resource

        for child in multiprocessing.active_children():  # reap stopped workers, so that their time counts
            child.join(timeout=5)
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def __enter__(self) -> CpuClock:
        self._start = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = self._now() - self._start
