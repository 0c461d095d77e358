"""Benchmark: `heartflow run` with its defaults on a fresh home against a bare scikit-learn loop.

The contender is the installed CLI, `heartflow run --home <new folder> --stop-endpoint` (25 random trials,
5-fold + refit, register, deploy, evaluate through the endpoint, gate, importance, reports), timed from the
shell, Prefect's temporary server included. The baseline is the essential work: the same 25 trials (same
parameters, same data, same validation) fitted by bare scikit-learn on the same number of processes. They
alternate ``--rounds`` times; each keeps its best round.

    python bench/run.py [--rounds 2] [--profile] [--write]

With --profile, one more run goes under cProfile (the CLI process; the sweep's workers and the endpoint host
are other processes) and the summary lists where its wall time went.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sections import CpuClock, machine, stamp, write_section  # noqa: E402
from bench.sweep import bare_loop  # noqa: E402

# What a profile's cumulative times are grouped into, by the function that owns them.
STAGES = (
    ("the whole command (flows/cli.py run)", "cli.py", "run"),
    ("the largest import (the flow: Prefect, MLflow, scikit-learn, matplotlib)", "<frozen importlib._bootstrap>",
     "_find_and_load"),
    ("validate data (CLI, before the flow)", "dataset.py", "prepare_data"),
    ("waiting for Prefect's temporary server (its own process, launched first)", "early_server.py", "_wait_healthy"),
    ("the flow run (train_and_deploy, all stages)", "flow_engine.py", "run_flow_sync"),
    ("upload", "stages.py", "upload_data"),
    ("sweep (parent: bookkeeping and waiting)", "stages.py", "run_sweep"),
    ("register", "stages.py", "register_best_model"),
    ("deploy (endpoint start + smoke)", "stages.py", "deploy_endpoint"),
    ("evaluate through the endpoint", "stages.py", "evaluate_endpoint"),
    ("promotion gate", "stages.py", "promotion_gate"),
    ("feature importance", "stages.py", "measure_feature_importance"),
    ("sweep report and plots (a worker thread, beside register and deploy: the wait for it)", "train_and_deploy.py",
     "finish"),
    ("model report", "reports.py", "report_model"),
)


def default_trials() -> tuple[list[dict], object]:
    """The 25 trials `heartflow run` runs by default, and its training split."""
    from backends.domain.dataset import prepare_data
    from backends.domain.search import make_sampler
    from backends.domain.spec import DataSpec, SweepSpec

    spec = SweepSpec()
    prepared = prepare_data(None, None, DataSpec().holdout_fraction)
    sampler = make_sampler(spec)
    points = []
    while (asked := sampler.ask()) is not None:
        points.append(asked[1])
    return points, prepared


def heartflow_run(home: Path) -> float:
    command = [str(Path(sys.executable).parent / "heartflow"), "run", "--home", str(home), "--stop-endpoint"]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"heartflow run failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return elapsed


def profile_run(home: Path) -> tuple[float, list[tuple[str, float]], str]:
    """One `heartflow run` in this process under cProfile: (seconds, [(stage, cumulative s)], top functions)."""
    from flows import cli

    profiler = cProfile.Profile()
    argv = sys.argv
    sys.argv = ["heartflow", "run", "--home", str(home), "--stop-endpoint"]
    started = time.perf_counter()
    profiler.enable()
    try:
        cli.main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        profiler.disable()
        sys.argv = argv
    elapsed = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    stages = []
    for label, file, function in STAGES:
        best = 0.0
        for (path, _, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
            if name == function and path.endswith(file):
                best = max(best, cumulative)
        stages.append((label, best))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    return elapsed, stages, out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", action="store_true", help="also profile one run (cProfile, CLI process)")
    parser.add_argument("--write", action="store_true", help="replace the Run section of docs/benchmarks.md")
    args = parser.parse_args()

    points, prepared = default_trials()
    bare_s: list[float] = []
    run_s: list[float] = []
    bare_cpu: list[float] = []
    run_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        data_csv = str(Path(tmp) / "train.csv")
        prepared.train.to_csv(data_csv, index=False)  # type: ignore[attr-defined]
        for i in range(args.rounds):
            with CpuClock() as cpu:
                bare_s.append(bare_loop(data_csv, points, args.processes, "kfold"))
            bare_cpu.append(cpu.seconds)
            with CpuClock() as cpu:
                run_s.append(heartflow_run(Path(tmp) / f"home-{i}"))
            run_cpu.append(cpu.seconds)
            print(f"round {i + 1}: bare {bare_s[-1]:.2f} s ({bare_cpu[-1]:.1f} CPU s), heartflow run {run_s[-1]:.2f} s "
                  f"({run_cpu[-1]:.1f} CPU s)", flush=True)
        profile = profile_run(Path(tmp) / "home-profiled") if args.profile else None
    bare, run = min(bare_s), min(run_s)
    lines = [
        f"Measured {stamp()} on {machine()}.",
        "",
        f"Command: `python bench/run.py --rounds {args.rounds}{' --profile' if args.profile else ''}"
        f"{' --write' if args.write else ''}` (part of `make bench`)",
        "",
        f"`heartflow run --home <fresh folder> --stop-endpoint` (defaults: {len(points)} random trials, 5-fold + "
        f"refit, {args.processes} processes; register, deploy, evaluate, gate, importance, reports; Prefect's "
        "temporary server) against the same trials and validation in a bare scikit-learn loop on the same processes. "
        f"Best of {args.rounds} alternating rounds (all rounds: bare {', '.join(f'{x:.2f}' for x in bare_s)} s; "
        f"heartflow {', '.join(f'{x:.2f}' for x in run_s)} s).",
        "",
        "| contender | wall seconds | x baseline | CPU seconds | x baseline |",
        "|---|---:|---:|---:|---:|",
        f"| bare scikit-learn loop (baseline) | {bare:.2f} | 1.00 | {min(bare_cpu):.1f} | 1.00 |",
        f"| `heartflow run` (defaults, fresh home) | {run:.2f} | **{run / bare:.2f}** | {min(run_cpu):.1f} | "
        f"{min(run_cpu) / min(bare_cpu):.2f} |",
        "",
        "CPU seconds: user + system of every process involved (the CLI, Prefect's server, the sweep's workers, the "
        "endpoint host), the work done whatever the machine's load; wall time is what a user waits.",
        "",
    ]
    if profile is not None:
        elapsed, stages, top = profile
        lines += [
            f"Profile of one more run ({elapsed:.1f} s under cProfile, which slows Python code; the CLI's main thread "
            "in the bench's process, which had already imported pandas and pydantic; the sweep's workers, the "
            "endpoint host and Prefect's server are other processes). Cumulative seconds of the function that "
            "owns each stage, so nested stages overlap their parents:",
            "",
            "| stage | seconds |",
            "|---|---:|",
            *[f"| {label} | {seconds:.2f} |" for label, seconds in stages],
            "",
        ]
        print(top)
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(ROOT / "docs" / "benchmarks.md", "Run", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
