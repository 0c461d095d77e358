"""Benchmark: `heartflow run` with its defaults on a fresh home against a bare scikit-learn loop.

The contender is the installed CLI, `heartflow run --home <new folder> --stop-endpoint` (25 random trials,
5-fold + refit, register, deploy, evaluate through the endpoint, gate, importance, reports), timed from the
shell, Prefect's temporary server included. The baseline is the essential work: the same 25 trials (same
parameters, same data, same validation) fitted by bare scikit-learn on the same number of processes. They
alternate ``--rounds`` times, one single round each time, and the medians are compared (issue 21's measure).

With --grid, each round also runs the tracked 100-trial grid on the 70/30 split (`heartflow run --sampling grid
--trials 100 --validation split`), measured from its MLflow parent run's start to its end, against the bare
loop of the same 100 trials. With --compare TREE, the same runs of another source tree (say, main's) join each
round: a before/after measured under the same load.

    python bench/run.py [--rounds 3] [--grid] [--compare /path/to/other/tree] [--profile] [--write]

With --profile, one more run goes under cProfile (the CLI process; the sweep's workers and the endpoint host
are other processes) and the summary lists where its wall time went.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.domain.search import grid_points  # noqa: E402
from backends.domain.spec import SweepSpec  # noqa: E402
from bench.proctree import run_watched  # noqa: E402
from bench.sections import machine, stamp, write_section  # noqa: E402
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


def heartflow_run(home: Path, extra: tuple[str, ...] = (), tree: Path | None = None) -> tuple[float, dict[str, float]]:
    """One `heartflow run` on a fresh home as a user waits for it: (wall seconds, CPU seconds by process role).
    ``tree``: run that source tree's code instead (PYTHONPATH), for a before/after in one invocation."""
    command = [str(Path(sys.executable).parent / "heartflow"), "run", "--home", str(home), "--stop-endpoint", *extra]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    usage, errors = run_watched(command, env=env, timeout=900)
    if usage.returncode != 0:
        raise RuntimeError(f"heartflow run failed ({usage.returncode}):\n{errors}")
    return usage.wall_s, usage.cpu_by_role()


def sweep_parent_seconds(home: Path) -> float:
    """The MLflow parent run of the run's sweep, from its start to its end (what the tracked-grid figure measures)."""
    from backends.local import tracking

    client = tracking.make_client(home)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`heartflow.kind` = 'sweep'")
    assert len(runs) == 1, f"one sweep run expected, found {len(runs)}"
    return (runs[0].info.end_time - runs[0].info.start_time) / 1000


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


def _rounds(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--grid", action="store_true", help="also the tracked 100-trial grid on the 70/30 split")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another source tree (e.g. main's) run as a third contender in the same rounds")
    parser.add_argument("--profile", action="store_true", help="also profile one run (cProfile, CLI process)")
    parser.add_argument("--write", action="store_true", help="replace the Run section of docs/benchmarks.md")
    args = parser.parse_args()

    points, prepared = default_trials()
    grid = grid_points(SweepSpec(sampling="grid", max_total_trials=1000))[:100]
    wall: dict[str, list[float]] = {}
    roles: dict[str, list[dict[str, float]]] = {}
    load = [os.getloadavg()[0]]

    def note(name: str, seconds: float, by_role: dict[str, float] | None = None) -> None:
        wall.setdefault(name, []).append(seconds)
        if by_role is not None:
            roles.setdefault(name, []).append(by_role)

    with tempfile.TemporaryDirectory() as tmp:
        data_csv = str(Path(tmp) / "train.csv")
        prepared.train.to_csv(data_csv, index=False)  # type: ignore[attr-defined]
        for i in range(args.rounds):  # interleaved, so that a burst of other load hits every contender
            note("bare", bare_loop(data_csv, points, args.processes, "kfold"))
            note("run", *heartflow_run(Path(tmp) / f"home-{i}"))
            if args.compare is not None:
                note("compare", *heartflow_run(Path(tmp) / f"home-c{i}", tree=args.compare))
            if args.grid:
                note("bare-grid", bare_loop(data_csv, grid, args.processes, "split"))
                grid_home = Path(tmp) / f"grid-{i}"
                heartflow_run(grid_home, ("--sampling", "grid", "--trials", "100", "--validation", "split"))
                note("grid", sweep_parent_seconds(grid_home))
                if args.compare is not None:
                    grid_home = Path(tmp) / f"grid-c{i}"
                    heartflow_run(grid_home, ("--sampling", "grid", "--trials", "100", "--validation", "split"),
                                  tree=args.compare)
                    note("compare-grid", sweep_parent_seconds(grid_home))
            load.append(os.getloadavg()[0])
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in wall.items()), flush=True)
        profile = profile_run(Path(tmp) / "home-profiled") if args.profile else None
    med = {k: statistics.median(v) for k, v in wall.items()}
    lines = [
        f"Measured {stamp()} on {machine()}. Load average (1 min) before and after each round: "
        f"{', '.join(f'{x:.1f}' for x in load)}"
        + (": the machine was shared with other work, so single rounds move by tens of percent; "
           if max(load) > 2.5 else " (a quiet machine: these include the run's own processes); ")
        + "the ratios of medians within this invocation are the measure.",
        "",
        f"Command: `python bench/run.py --rounds {args.rounds}{' --grid' if args.grid else ''}"
        f"{' --compare <tree>' if args.compare else ''}{' --profile' if args.profile else ''}"
        f"{' --write' if args.write else ''}`",
        "",
        f"`heartflow run --home <fresh folder> --stop-endpoint` (defaults: {len(points)} random trials, 5-fold + "
        f"refit, {args.processes} processes; register, deploy, evaluate, gate, importance, reports; Prefect's "
        "temporary server), timed as a user waits, against the same trials and validation in a bare scikit-learn "
        f"loop on the same processes; {args.rounds} single rounds each, interleaved, the median compared.",
        "",
        "| measure | contender | median s | x bare loop | every round, s |",
        "|---|---|---:|---:|---|",
        f"| whole run, as a user waits | bare scikit-learn loop (baseline) | {med['bare']:.2f} | 1.00 | {_rounds(wall['bare'])} |",
        f"| whole run, as a user waits | `heartflow run` (this tree) | {med['run']:.2f} | **{med['run'] / med['bare']:.2f}** | "
        f"{_rounds(wall['run'])} |",
    ]
    if "compare" in med:
        lines.append(f"| whole run, as a user waits | `heartflow run` (before this change) | {med['compare']:.2f} | "
                     f"{med['compare'] / med['bare']:.2f} | {_rounds(wall['compare'])} |")
    if "grid" in med:
        lines += [
            f"| 100-trial grid, 70/30 split | bare scikit-learn loop (baseline) | {med['bare-grid']:.2f} | 1.00 | "
            f"{_rounds(wall['bare-grid'])} |",
            f"| 100-trial grid, 70/30 split | MLflow parent run, start to end (this tree) | {med['grid']:.2f} | "
            f"**{med['grid'] / med['bare-grid']:.2f}** | {_rounds(wall['grid'])} |",
        ]
        if "compare-grid" in med:
            lines.append(f"| 100-trial grid, 70/30 split | MLflow parent run (before this change) | "
                         f"{med['compare-grid']:.2f} | {med['compare-grid'] / med['bare-grid']:.2f} | "
                         f"{_rounds(wall['compare-grid'])} |")
    # Each round's own ratio (the run over the bare loop of the same round): a pair shares the machine's
    # state of the moment, so this reads steadier than the ratio of medians when other load comes and goes.
    for name, base, label in (("run", "bare", "whole run"), ("compare", "bare", "whole run, before this change"),
                              ("grid", "bare-grid", "tracked grid"), ("compare-grid", "bare-grid", "tracked grid, before")):
        if name in wall:
            paired = [x / b for x, b in zip(wall[name], wall[base], strict=True)]
            lines.append(f"- {label}, each round over its own bare loop: {', '.join(f'{r:.2f}' for r in paired)} "
                         f"(median **{statistics.median(paired):.2f}**)")
    lines += ["", "CPU seconds of `heartflow run` by process (median of rounds; the process tree sampled every 0.1 s):", ""]
    for name, label in (("run", "this tree"), ("compare", "before this change")):
        if name in roles:
            keys = sorted({k for r in roles[name] for k in r})
            lines.append(f"- {label}: " + ", ".join(
                f"{k} {statistics.median(r.get(k, 0.0) for r in roles[name]):.1f}" for k in keys))
    lines.append("")
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
