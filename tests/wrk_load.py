"""Live load for tests: wrk (the native load generator, `make wrk`) in the background against an endpoint,
rotating through request bodies, each request with its own x-request-id; the summary counts every answer that
was not 2xx and every socket error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = """
local bodies = {}
for line in io.lines(os.getenv("LOAD_BODIES")) do bodies[#bodies + 1] = line end
local n = 0
local thread_id = 0
setup = function(thread) thread_id = thread_id + 1; thread:set("tid", thread_id) end
request = function()
  n = n + 1
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("LOAD_AUTH"),
                   ["x-request-id"] = "wrk-" .. tostring(tid) .. "-" .. tostring(n)}
  return wrk.format("POST", nil, headers, bodies[(n % #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('LOAD {"requests":%d,"non2xx":%d,"errors":%d}\\n', summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    non2xx: int
    errors: int


class Load:
    result: LoadResult | None = None


def need_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        pytest.fail("wrk is not installed: run `make test` (it installs wrk) or `make wrk`")
    return path


@contextmanager
def wrk_load(uri: str, key: str, bodies: Sequence[object], seconds: int, connections: int = 2) -> Iterator[Load]:
    """wrk against ``uri`` while the block runs (at most ``seconds``); ``Load.result`` is set after the block."""
    wrk = need_wrk()
    with tempfile.TemporaryDirectory() as folder:
        script, body_file = Path(folder) / "load.lua", Path(folder) / "bodies.jsonl"
        script.write_text(SCRIPT)
        body_file.write_text("\n".join(json.dumps(b) for b in bodies) + "\n")
        env = {**os.environ, "LOAD_BODIES": str(body_file), "LOAD_AUTH": f"Bearer {key}"}
        process = subprocess.Popen([wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), uri],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        load = Load()
        try:
            yield load
        finally:
            if process.poll() is None:  # the block ended first: wrk stops on SIGINT and still prints its summary
                process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=60)
        line = next((ln for ln in out.splitlines() if ln.startswith("LOAD ")), None)
        assert line is not None, f"wrk printed no summary:\n{out}"
        load.result = LoadResult(**json.loads(line[5:]))
