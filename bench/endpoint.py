"""Endpoint benchmark: the local host vs azmlinfsrv vs `mlflow models serve`, with in-process run() as floor.

All three servers serve the same MLflow model with the same number of workers; the first two run the same
src/score.py code (the local host calls its Scorer directly). One invocation measures requests/s and
p50/p99 latency at concurrency 1 and 8 with 1-row and 31-row bodies, prints a table and (with --write)
replaces the "Endpoint" section of docs/benchmarks.md.

    python bench/endpoint.py --workers 1 --seconds 4 --write
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.local.endpoint import LocalEndpointManager  # noqa: E402
from tests.conftest import load_heart_frame, train_model_dir  # noqa: E402


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    path: str
    headers: dict[str, str]
    wrap: Callable[[list[dict]], dict]


@dataclass(frozen=True)
class Result:
    target: str
    rows: int
    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(port: int, path: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered GET {path} on port {port}")


@contextlib.contextmanager
def subprocess_server(command: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


def load(target: Target, body: bytes, concurrency: int, seconds: float, warmup: int = 30) -> tuple[list[float], float]:
    """Closed-loop load: ``concurrency`` threads, one keep-alive connection each, for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    headers = {"Content-Type": "application/json", **target.headers}
    start_gate = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
        for _ in range(warmup):
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
        start_gate.wait()
        mine = latencies[index]
        clock = time.perf_counter
        while True:
            begin = clock()
            if begin > stop_at[0]:
                break
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append(clock() - begin)
            if response.status != 200:
                raise RuntimeError(f"{target.name}: {response.status}")
        connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + 3600
    start_gate.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return [x for part in latencies for x in part], elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(target: Target, records: list[dict], rows: int, concurrency: int, seconds: float) -> Result:
    body = json.dumps(target.wrap(records[:rows])).encode()
    latencies, elapsed = load(target, body, concurrency, seconds)
    return Result(target.name, rows, concurrency, len(latencies), len(latencies) / elapsed,
                  percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000)


def floor(model_dir: Path, records: list[dict], rows: int, seconds: float) -> Result:
    """In-process src/score.py run() on the JSON string, one call at a time."""
    os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
    from src import score

    score.init()
    body = json.dumps({"data": records[:rows]})
    for _ in range(200):
        score.run(body)
    latencies = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        begin = time.perf_counter()
        score.run(body)
        latencies.append(time.perf_counter() - begin)
    total = sum(latencies)
    return Result("in-process run() (floor)", rows, 1, len(latencies), len(latencies) / total,
                  percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000)


def render(results: list[Result], workers: int, command: str) -> str:
    by = {(r.target, r.rows, r.concurrency): r for r in results}
    lines = [
        "## Endpoint",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"every server runs {workers} worker process(es) and serves the same 100-tree forest (MLflow sklearn "
        "flavour, skops). The client runs on the same machine (threads, one keep-alive connection each).",
        "",
        f"Command: `{command}`",
        "",
        f"Local host HTTP stack: uvicorn {_stack()}. azmlinfsrv: gunicorn sync workers + Flask. "
        "`mlflow models serve`: uvicorn + FastAPI with pyfunc schema enforcement (body `dataframe_records`). "
        "The in-process floor is `src/score.py` `run()` on the JSON string, one call at a time. The machine is "
        "shared with other work, so single runs vary by 20-30 %; compare ratios within one run.",
        "",
        "| server | rows | concurrency | requests/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.target} | {r.rows} | {r.concurrency} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |")
    lines += ["", "Ratios (same invocation):", ""]
    for rows in (1, 31):
        for concurrency in (1, 8):
            local = by.get(("local host", rows, concurrency))
            azml = by.get(("azmlinfsrv", rows, concurrency))
            mlflow_serve = by.get(("mlflow models serve", rows, concurrency))
            if local and azml:
                text = f"- {rows} row(s), concurrency {concurrency}: local host / azmlinfsrv requests/s = {local.rps / azml.rps:.2f}x"
                if mlflow_serve:
                    text += f"; local host / mlflow models serve = {local.rps / mlflow_serve.rps:.2f}x"
                lines.append(text)
    for rows in (1, 31):
        local = by.get(("local host", rows, 1))
        base = by.get(("in-process run() (floor)", rows, 1))
        if local and base:
            lines.append(f"- {rows} row(s), concurrency 1: local host p50 - in-process floor p50 = "
                         f"{local.p50_ms - base.p50_ms:.2f} ms")
    lines.append("")
    return "\n".join(lines)


def _stack() -> str:
    """Which optional fast parts uvicorn picks up here (it uses them automatically when installed)."""
    import importlib.util

    parts = [name for name in ("httptools", "uvloop") if importlib.util.find_spec(name) is not None]
    return "with " + " + ".join(parts) if parts else "with h11 and asyncio (httptools/uvloop not installed)"


def write_section(path: Path, section: str) -> None:
    """Replace the '## Endpoint' section of ``path`` (other sections untouched), or append it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    start = text.find("## Endpoint")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("" if end == -1 else text[end + 1 :])
    path.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per cell")
    parser.add_argument("--only", nargs="*", default=["local", "azmlinfsrv", "mlflow"])
    parser.add_argument("--write", action="store_true", help="replace the Endpoint section of docs/benchmarks.md")
    args = parser.parse_args()

    frame = load_heart_frame()
    work = Path(tempfile.mkdtemp(prefix="heartflow-bench-"))
    model_dir = train_model_dir(frame, work / "model" / "heart_classifier")
    from src.scoring import read_features

    names = [f.name for f in read_features(model_dir)]
    records = frame.loc[:, names].head(31).to_dict("records")
    python_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZUREML_")}
    env["PATH"] = f"{python_bin}{os.pathsep}{env.get('PATH', '')}"  # mlflow models serve execs `uvicorn`
    results: list[Result] = []
    cells = [(rows, c) for rows in (1, 31) for c in (1, 8)]

    def run_cells(target: Target) -> None:
        for rows, concurrency in cells:
            result = measure(target, records, rows, concurrency, args.seconds)
            results.append(result)
            print(f"{result.target:28s} rows={rows:2d} c={concurrency} {result.rps:7.0f} req/s  "
                  f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms", flush=True)

    try:
        if "local" in args.only:
            manager = LocalEndpointManager(work / "home", "bench-endpoint")
            status = manager.deploy("blue", model_dir, "heart-classifier", "1", port=None, workers=args.workers,
                                    max_rows=1000, request_timeout_ms=5000)
            try:
                run_cells(Target("local host", status.port or 0, "/score",
                                 {"Authorization": f"Bearer {manager.key()}"}, lambda r: {"data": r}))
            finally:
                manager.stop()
        if "azmlinfsrv" in args.only:
            port = free_port()
            azml_env = dict(env, AZUREML_MODEL_DIR=str(model_dir.parent), WORKER_COUNT=str(args.workers))
            with subprocess_server([str(python_bin / "azmlinfsrv"), "--entry_script", str(ROOT / "src" / "score.py"),
                                    "--port", str(port)], azml_env, work / "azmlinfsrv.log"):
                wait_http(port, "/")
                run_cells(Target("azmlinfsrv", port, "/score", {}, lambda r: {"data": r}))
        if "mlflow" in args.only:
            port = free_port()
            with subprocess_server([str(python_bin / "mlflow"), "models", "serve", "-m", str(model_dir),
                                    "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
                                    "-w", str(args.workers)], env, work / "mlflow.log"):
                wait_http(port, "/ping")
                run_cells(Target("mlflow models serve", port, "/invocations", {},
                                 lambda r: {"dataframe_records": r}))
        for rows in (1, 31):
            result = floor(model_dir.parent, records, rows, min(args.seconds, 3))
            results.append(result)
            print(f"{result.target:28s} rows={rows:2d}     {result.rps:7.0f} calls/s p50 {result.p50_ms:6.2f} ms", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    command = f"python bench/endpoint.py --workers {args.workers} --seconds {args.seconds:g}" + (" --write" if args.write else "")
    section = render(results, args.workers, command)
    print()
    print(section)
    if args.write:
        write_section(ROOT / "docs" / "benchmarks.md", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
