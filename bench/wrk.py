"""wrk, the native HTTP load generator, for the benchmarks and the load tests: one Lua script, one invocation,
one summary.

The script POSTs JSON bodies read from a file (one body a line): a single body without request ids is set once
(``wrk.body``, no Lua per request, the cheapest for wrk); several bodies rotate, and ``request_ids`` gives each
request its own ``x-request-id`` (``wrk-<thread>-<n>``). wrk prints one ``WRK {...}`` line at the end: requests,
duration, p50/p99 latency, non-2xx answers and socket errors. ``run`` waits for it; ``background`` runs wrk
while a block runs (a test's load). Both report wrk's own CPU time, to tell when wrk, not the server, is the
limit.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

INSTALL_HINT = "wrk is not installed: `make wrk` installs it (Debian package wrk)"

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non2xx":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""

_FIXED = """
wrk.method = "POST"
wrk.body = io.open(os.getenv("WRK_BODIES")):read("*l")
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("WRK_AUTH")
if key and #key > 0 then wrk.headers["Authorization"] = key end
"""

_ROTATING = """
local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do bodies[#bodies + 1] = line end
local auth = os.getenv("WRK_AUTH")
local with_ids = os.getenv("WRK_REQUEST_IDS") == "1"
local n = 0
local thread_id = 0
setup = function(thread) thread_id = thread_id + 1; thread:set("tid", thread_id) end
request = function()
  n = n + 1
  local headers = {["Content-Type"] = "application/json"}
  if auth and #auth > 0 then headers["Authorization"] = auth end
  if with_ids then headers["x-request-id"] = "wrk-" .. tostring(tid) .. "-" .. tostring(n) end
  return wrk.format("POST", nil, headers, bodies[(n % #bodies) + 1])
end
"""


def script(rotating: bool, paced_ms: int | None = None) -> str:
    """The Lua script: fixed body or rotating bodies; ``paced_ms``: each connection waits that long between
    requests (wrk's ``delay()``)."""
    text = (_ROTATING if rotating else _FIXED) + _DONE
    if paced_ms:
        text += f"\ndelay = function() return {int(paced_ms)} end\n"
    return text


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    errors: int  # connect, read, write and timeout errors
    wrk_cpu_s: float  # wrk's own CPU time (user + system) over the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def wrk_cores(self) -> float:
        """wrk's CPU time over the wall time: near its thread count, wrk itself was the limit."""
        return self.wrk_cpu_s / self.seconds if self.seconds else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _write_bodies(folder: Path, bodies: Sequence[object | bytes]) -> Path:
    path = folder / "bodies.jsonl"
    lines = [b if isinstance(b, bytes) else json.dumps(b).encode() for b in bodies]
    assert all(b"\n" not in line for line in lines), "a body must be one line"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _command(uri: str, connections: int, seconds: float, threads: int, lua: Path, timeout_s: float) -> list[str]:
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError(INSTALL_HINT)
    return [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", f"{timeout_s:g}s", "-s", str(lua), uri]


def _env(folder: Path, bodies: Sequence[object | bytes], auth: str, request_ids: bool) -> dict[str, str]:
    return {**os.environ, "WRK_BODIES": str(_write_bodies(folder, bodies)), "WRK_AUTH": auth,
            "WRK_REQUEST_IDS": "1" if request_ids else "0"}


def _parse(out: str, cpu_s: float) -> WrkResult:
    line = next((x for x in out.splitlines() if x.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    data = json.loads(line.removeprefix("WRK "))
    return WrkResult(data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000, data["p99_us"] / 1000,
                     data["non2xx"], data["errors"], cpu_s)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(uri: str, bodies: Sequence[object | bytes], *, auth: str = "", connections: int = 1, seconds: float = 4.0,
        threads: int | None = None, request_ids: bool = False, paced_ms: int | None = None) -> WrkResult:
    """wrk against ``uri`` for ``seconds``; its summary once it ends."""
    threads = threads or min(connections, 2)
    with tempfile.TemporaryDirectory(prefix="heartflow-wrk-") as folder:
        lua = Path(folder) / "post.lua"
        lua.write_text(script(len(bodies) > 1 or request_ids, paced_ms))
        before = _children_cpu()
        out = subprocess.run(_command(uri, connections, seconds, threads, lua, 10), env=_env(Path(folder), bodies, auth, request_ids),
                             capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
        return _parse(out, _children_cpu() - before)


class Load:
    """What ``background`` measured; ``result`` is set once its block ended."""

    result: WrkResult | None = None


@contextmanager
def background(uri: str, bodies: Sequence[object | bytes], *, auth: str = "", seconds: float = 60, connections: int = 2,
               request_ids: bool = True) -> Iterator[Load]:
    """wrk against ``uri`` while the block runs (at most ``seconds``); ``Load.result`` is set after the block.
    Rotates through ``bodies``, each request with its own ``x-request-id`` unless told otherwise."""
    with tempfile.TemporaryDirectory(prefix="heartflow-wrk-") as folder:
        lua = Path(folder) / "load.lua"
        lua.write_text(script(True))
        before = _children_cpu()
        process = subprocess.Popen(_command(uri, connections, seconds, 1, lua, 10),
                                   env=_env(Path(folder), bodies, auth, request_ids),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        load = Load()
        try:
            yield load
        finally:
            if process.poll() is None:  # the block ended first: wrk stops on SIGINT and still prints its summary
                process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=60)
        load.result = _parse(out, _children_cpu() - before)


class Measured(Protocol):
    @property
    def rps(self) -> float: ...
    @property
    def p50_ms(self) -> float: ...
    @property
    def p99_ms(self) -> float: ...
    @property
    def wrk_cores(self) -> float: ...


def report_line(label: str, rows: int, connections: int | str, result: Measured) -> str:
    """The line a benchmark prints per cell."""
    return (f"{label:24s} rows={rows:2d} c={connections} {result.rps:7.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
            f"p99 {result.p99_ms:6.2f} ms  wrk {result.wrk_cores:.2f} core(s)")
