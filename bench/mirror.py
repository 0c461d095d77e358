"""The client's latency with the shadow's mirror on and off, on the local host (``bench/endpoint.py --mirror``).

One host, one worker: blue serves 100 % of traffic, green (the same model, at 0 %) is the candidate. wrk drives
1-row and 31-row bodies at 1 and 8 connections; rounds alternate mirror off / mirror on (every live request
copied to green), each cell keeps its best round, and the ratios on/off are taken within one invocation.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backends.domain.shadow import summarize_shadow
from backends.local.endpoint import LocalEndpointManager
from backends.local.live_traffic import LocalLiveTraffic
from backends.results import Endpoint
from bench.wrk import report_line

OFF, ON = "mirror off", "mirror on"
READING = (
    "Reading it: the paced cells (one connection, 4 ms between requests) are a host with headroom, the case a "
    "shadow is meant for; the closed-loop cells saturate the worker, and there the copies' work competes for the "
    "same cores with the worker and wrk, the mirror dropping most copies rather than queueing them."
)


@contextlib.contextmanager
def host(work: Path, model_dir: Path) -> Iterator[tuple[LocalEndpointManager, int, str, int]]:
    manager = LocalEndpointManager(work / "mirror-home", "bench-mirror")
    common = dict(port=None, workers=1, max_rows=1000, request_timeout_ms=5000)
    manager.deploy("blue", model_dir, "heart-classifier", "1", **common)
    status = manager.deploy("green", model_dir, "heart-classifier", "2", **common)
    try:
        yield manager, status.port or 0, f"Bearer {manager.key()}", status.pid or 0
    finally:
        manager.stop()


PACED_MS = 4  # a paced cell: each connection waits 4 ms between requests (wrk's delay()), about 200 requests/s


def _paced_cells(server: Any, bodies: dict[int, bytes], seconds: float, best: dict, run_cell: Callable[..., Any]) -> None:
    for rows in (1, 31):
        cell = run_cell(server, bodies[rows], 1, seconds, paced_ms=PACED_MS)
        key = (server.name, rows, "paced")
        print(report_line(server.name, rows, "paced", cell), flush=True)
        if key not in best or cell.p50_ms < best[key].p50_ms:
            best[key] = cell


def measure(work: Path, model_dir: Path, bodies: dict[int, bytes], seconds: float, rounds: int,
            server_cls: type, measure_server: Callable[..., None], run_cell: Callable[..., Any] | None = None,
            ) -> tuple[dict, dict[str, int]]:
    """Best cell per (mode, rows, connections); and what the mirror recorded in its rounds."""
    best: dict = {}
    recorded = {"mirrored": 0, "dropped": 0}
    with host(work, model_dir) as (manager, port, auth, pid):
        live = LocalLiveTraffic(manager.paths.home)
        endpoint = Endpoint(name=manager.name, deployment="blue", scoring_uri="", model_name="", model_version="",
                            key_hint="")
        for _ in range(rounds):
            for mode in (OFF, ON):
                session = live.start_mirror(endpoint, "green", 100) if mode == ON else None
                if session is not None:
                    _wait_for_mirror(live, endpoint, session, port, auth, bodies[1])
                try:
                    server = server_cls(mode, port, auth, pid)
                    measure_server(server, bodies, seconds, best)
                    if run_cell is not None:
                        _paced_cells(server, bodies, seconds, best, run_cell)
                finally:
                    if session is not None:
                        live.stop_mirror(endpoint)
                if session is not None:
                    time.sleep(2)
                    answers, dropped = live.mirrored_answers(endpoint, session)
                    figures = summarize_shadow(answers, seconds, 1, dropped)
                    recorded["mirrored"] += figures.mirrored
                    recorded["dropped"] += dropped
    return best, recorded


def _wait_for_mirror(live: LocalLiveTraffic, endpoint: Endpoint, session: str, port: int, auth: str, body: bytes) -> None:
    """Send requests until the mirror process answers: its start (imports, the candidate's model) is paid once
    a session, before the shadow's window matters, and is not what a client's latency is measured against."""
    import http.client

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/score", body, {"Authorization": auth, "Content-Type": "application/json"})
        connection.getresponse().read()
        if live.mirrored_answers(endpoint, session)[0]:
            return
        time.sleep(0.2)
    raise RuntimeError("the mirror process did not answer within 60 s")


def render(best: dict, recorded: dict[str, int], cells: tuple[tuple[int, int], ...], load: tuple[float, float],
           seconds: float, rounds: int, stamp: str, machine: str) -> str:
    lines = [
        f"Measured {stamp} on {machine}. One local host with one worker: blue serves every request; with the "
        "mirror on, every request is also copied to green (the same model, 0 % of traffic), scored in the "
        f"worker's background thread and recorded. wrk {seconds:g} s a cell; rounds alternate off/on, {rounds} "
        f"times, best round per cell. Load average (1 min) {load[0]:.2f} before and {load[1]:.2f} after: the machine "
        "is shared and loaded, so only the ratios within this invocation mean anything.",
        "",
        "| mode | rows | connections | requests/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (mode, rows, c), cell in sorted(best.items(), key=lambda kv: (kv[0][1], str(kv[0][2]), kv[0][0] != OFF)):
        shown = f"1, paced {PACED_MS} ms" if c == "paced" else c
        lines.append(f"| {mode} | {rows} | {shown} | {cell.rps:.0f} | {cell.p50_ms:.2f} | {cell.p99_ms:.2f} |")
    lines += ["", "Ratios, mirror on / off (same invocation):", ""]
    for rows, c in [*cells, *(((r, "paced") for r in (1, 31)) if (ON, 1, "paced") in best else ())]:
        on, off = best[(ON, rows, c)], best[(OFF, rows, c)]
        lines.append(f"- {rows} row(s), {c} connection(s): p50 **{on.p50_ms / off.p50_ms:.2f}x**, p99 "
                     f"{on.p99_ms / off.p99_ms:.2f}x, requests/s {on.rps / off.rps:.2f}x")
    total = recorded["mirrored"] + recorded["dropped"]
    lines += ["", f"The mirror paired {recorded['mirrored']:,} requests and dropped {recorded['dropped']:,} copies "
              f"({100 * recorded['dropped'] / max(total, 1):.0f} %) whose queue was full: under wrk's closed loop "
              "the host answers as fast as it can, and a copy never waits in front of a client's request.",
              "", READING]
    return "\n".join(lines)


def cleanup(work: Path) -> None:
    shutil.rmtree(work / "mirror-home", ignore_errors=True)



