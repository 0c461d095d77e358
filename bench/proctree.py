"""Watch a command's whole process tree: wall time, peak resident memory of the tree, CPU seconds per process.

The tree is sampled every ``interval`` seconds with psutil (the command, its children and theirs: Prefect's
server, the sweep's workers, the endpoint host), so a process that lives less than one interval may be missed
and a process's last interval of CPU may be; the figures are for benchmarks, not accounting.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psutil


@dataclass
class TreeUsage:
    """What a command's process tree used: wall seconds, peak RSS (sum over the tree at one sample), and the
    last CPU seconds seen per process (keyed by pid, with its command line)."""

    wall_s: float = 0.0
    peak_rss_bytes: int = 0
    cpu_s: dict[int, tuple[str, float]] = field(default_factory=dict)
    returncode: int | None = None

    @property
    def total_cpu_s(self) -> float:
        return sum(seconds for _, seconds in self.cpu_s.values())

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds grouped by what each process is (its command line, recognised)."""
        roles: dict[str, float] = {}
        for command, seconds in self.cpu_s.values():
            role = role_of(command)
            roles[role] = roles.get(role, 0.0) + seconds
        return roles


def role_of(command: str) -> str:
    if "prefect.server" in command:
        return "Prefect server"
    if "multiprocessing.spawn" in command or "multiprocessing.resource_tracker" in command:
        return "sweep workers"
    if "backends.local.endpoint" in command:
        return "endpoint host"
    if "heartflow" in command:
        return "CLI"
    return "other"


def _sample(root: psutil.Process, usage: TreeUsage) -> None:
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    rss = 0
    for process in processes:
        try:
            with process.oneshot():
                times = process.cpu_times()
                rss += process.memory_info().rss
                # re-read: a spawned process shows its parent's command line until it execs; a zombie shows none
                command = " ".join(process.cmdline()) or usage.cpu_s.get(process.pid, ("", 0.0))[0]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        usage.cpu_s[process.pid] = (command, times.user + times.system)
    usage.peak_rss_bytes = max(usage.peak_rss_bytes, rss)


def run_watched(command: Sequence[str], *, env: Mapping[str, str] | None = None, interval: float = 0.1,
                timeout: float = 7200, stdout: int | None = subprocess.DEVNULL,
                stderr: int | None = subprocess.PIPE) -> tuple[TreeUsage, str]:
    """Run ``command`` to its end, sampling its tree; (usage, the tail of its stderr)."""
    usage = TreeUsage()
    started = time.perf_counter()
    process = subprocess.Popen(list(command), env=dict(env) if env is not None else None, stdout=stdout, stderr=stderr)
    root = psutil.Process(process.pid)
    errors: list[bytes] = []
    reader = None
    if stderr == subprocess.PIPE and process.stderr is not None:
        pipe = process.stderr
        reader = threading.Thread(target=lambda: errors.append(pipe.read()), daemon=True)
        reader.start()
    try:
        while process.poll() is None:
            _sample(root, usage)
            if time.perf_counter() - started > timeout:
                process.kill()
                raise TimeoutError(f"{command[0]} ran past {timeout} s")
            time.sleep(interval)
    finally:
        usage.wall_s = time.perf_counter() - started
        usage.returncode = process.wait()
        if reader is not None:
            reader.join(timeout=10)
    tail = b"".join(errors).decode("utf-8", "replace")[-4000:]
    return usage, tail
