"""Where a run leaves a core idle: the machine's busy cores every half second of one `heartflow run`.

On 2 cores the run is CPU-bound for most of its length, so its wall time is its CPU seconds over two plus
the time a core waits; this prints, every 0.5 s, how many cores were busy (from /proc/stat, the whole
machine: run it on a quiet one) beside the run's last line of output, then the idle core-seconds in all.

    python bench/busy.py [heartflow run arguments]     (default: a fresh home, --stop-endpoint)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

INTERVAL_S = 0.5


def _cpu_ticks() -> tuple[int, int]:
    """(all ticks, idle + iowait ticks) of the machine since boot (Linux)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]


def watch(command: list[str], cores: int) -> tuple[float, float]:
    """Run ``command``, printing the busy cores every interval; (wall seconds, idle core-seconds)."""
    last_line = [""]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert process.stdout is not None
    stream = process.stdout

    def read() -> None:
        for line in stream:
            last_line[0] = line.strip()[:100]

    threading.Thread(target=read, daemon=True).start()
    total, idle = _cpu_ticks()
    busy_core_s = 0.0
    while process.poll() is None:
        time.sleep(INTERVAL_S)
        now_total, now_idle = _cpu_ticks()
        busy = cores * (1 - (now_idle - idle) / max(1, now_total - total))
        busy_core_s += busy * INTERVAL_S
        print(f"{time.perf_counter() - started:6.1f} s  {busy:4.2f} cores busy | {last_line[0]}", flush=True)
        total, idle = now_total, now_idle
    wall = time.perf_counter() - started
    return wall, cores * wall - busy_core_s


def main() -> int:
    import os

    cores = os.cpu_count() or 1
    heartflow = str(Path(sys.executable).parent / "heartflow")
    with tempfile.TemporaryDirectory() as tmp:
        arguments = sys.argv[1:] or ["--home", str(Path(tmp) / "home"), "--stop-endpoint"]
        wall, idle = watch([heartflow, "run", *arguments], cores)
    print(f"wall {wall:.1f} s on {cores} cores; idle core-seconds {idle:.1f} ({idle / (cores * wall):.0%} of the run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
