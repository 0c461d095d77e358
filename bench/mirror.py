"""The client's latency with the shadow's mirror on and off, on the local host (``bench/endpoint.py --mirror``);
run alone (``python bench/mirror.py``), the worker's CPU per request with the mirror off and on.

One host, one worker: blue serves 100 % of traffic, green (the same model, at 0 %) is the candidate. wrk drives
1-row and 31-row bodies at 1 and 8 connections; rounds alternate mirror off / mirror on (every live request
copied to green), each cell keeps its best round, and the ratios on/off are taken within one invocation.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script (`python bench/mirror.py`) as well as imported

from backends.domain.shadow import summarize_shadow  # noqa: E402
from backends.local.endpoint import LocalEndpointManager  # noqa: E402
from backends.local.live_traffic import LocalLiveTraffic  # noqa: E402
from backends.results import Endpoint  # noqa: E402
from bench.wrk import report_line  # noqa: E402

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


def worker_cpu(model_dir: Path, work: Path, bodies: dict[int, bytes], rounds: int = 5) -> dict[int, dict[str, float]]:
    """The worker's own CPU time per request (user + system, its threads included; the mirror process is a
    process of its own), mirror off and on, the host's application driven in this process without a socket:
    what mirroring costs the worker that answers clients, a figure other work on the machine barely moves.
    Median of ``rounds`` alternating turns."""
    import asyncio
    import dataclasses
    import logging
    import resource
    import statistics

    from backends.local.endpoint.app import EndpointApp
    from backends.local.endpoint.capture import CaptureSettings
    from backends.local.endpoint.state import DeploymentConfig, EndpointPaths, EndpointState, ensure_key, write_state

    paths = EndpointPaths(work / "mirror-cpu-home", "bench-mirror-cpu")
    paths.root.mkdir(parents=True, exist_ok=True)
    key = ensure_key(paths)
    state = (EndpointState(name=paths.name).with_deployment(DeploymentConfig("blue", str(model_dir), "m", "1"))
             .with_deployment(DeploymentConfig("green", str(model_dir), "m", "2")))
    write_state(paths, dataclasses.replace(state, traffic={"blue": 100}))
    app = EndpointApp(paths, key)
    app.load_now()
    app._capture.settings = CaptureSettings(rate=0.0)  # the mirror's cost alone
    live = LocalLiveTraffic(paths.home)
    endpoint = Endpoint(name=paths.name, deployment="blue", scoring_uri="", model_name="m", model_version="1", key_hint="")

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    out: dict[int, dict[str, float]] = {}
    logging.disable(logging.INFO)
    try:
        for rows, body in bodies.items():
            scope = {"type": "http", "path": "/score", "method": "POST", "client": ("127.0.0.1", 1),
                     "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-length", str(len(body)).encode())]}

            async def receive(body: bytes = body) -> dict:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict) -> None:  # noqa: ARG001 - the ASGI signature
                return None

            async def serve(n: int, scope: dict = scope) -> None:
                for i in range(n):
                    await app(scope, receive, send)
                    if i % 50 == 0:
                        await asyncio.sleep(0.001)  # the loop's other callbacks, as between a host's requests

            n = 3000 if rows == 1 else 800
            found: dict[str, list[float]] = {OFF: [], ON: []}
            for _ in range(rounds):
                for mode in (OFF, ON):
                    if mode == ON:
                        live.start_mirror(endpoint, "green", 100)
                        asyncio.run(serve(200))
                        time.sleep(3)  # the mirror process starts (imports, the candidate's model)
                    asyncio.run(serve(50))
                    time.sleep(0.3)
                    before = cpu()
                    asyncio.run(serve(n))
                    time.sleep(0.5)  # the recorder thread's last tick is part of the cost
                    found[mode].append((cpu() - before) / n * 1e6)
                    if mode == ON:
                        live.stop_mirror(endpoint)
                        asyncio.run(serve(10))
                        time.sleep(0.5)
            out[rows] = {mode: statistics.median(values) for mode, values in found.items()}
            print(f"worker CPU per request, rows={rows:2d}: mirror off {out[rows][OFF]:.1f} us, on {out[rows][ON]:.1f} us",
                  flush=True)
    finally:
        app._live.close()
        app._capture.close()
        logging.disable(logging.NOTSET)
    return out


def main() -> int:
    """``python bench/mirror.py``: the worker's CPU per request with the mirror off and on (``worker_cpu``)."""
    import json
    import tempfile

    from src.scoring import read_features
    from tests.conftest import load_heart_frame, train_model_dir

    frame = load_heart_frame()
    work = Path(tempfile.mkdtemp(prefix="heartflow-bench-mirror-cpu-"))
    try:
        model_dir = train_model_dir(frame, work / "model" / "heart_classifier")
        names = [f.name for f in read_features(model_dir)]
        records = frame.loc[:, names].head(31).to_dict("records")
        found = worker_cpu(model_dir, work, {rows: json.dumps({"data": records[:rows]}).encode() for rows in (1, 31)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for rows, figures in found.items():
        print(f"| {rows} row(s) | {figures[OFF]:.1f} | {figures[ON]:.1f} | +{figures[ON] - figures[OFF]:.1f} us |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
