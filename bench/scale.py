"""Benchmark: how `heartflow run` scales with the table, stage by stage, against a bare scikit-learn loop.

For each size, a table is generated as users bring them (tests/tables.py: 20 columns, text categories, text
labels, empty cells, an ID column) and written as a CSV. Then, one after the other on the same table:

- the bare loop: the same trials (the run's seeded random sample of the default space, 5-fold + refit) on
  the same training split with the same number of processes, nothing else (no tracking, no endpoint), in a
  process of its own, timed from its start to its end;
- `heartflow run --home <fresh> --data <csv> --target ... --trials N --stop-endpoint`, timed as a user
  waits, with the bench's own PREFECT_HOME (migrated once, as after a user's first run); each stage's wall
  time is read afterwards from its database (the task runs' start and end), with the CLI's start-up before
  the flow and its exit after it.

Both run under a sampler of their whole process tree (bench/proctree.py): peak resident memory (the sum of
the tree's RSS at one sample, so pages shared between processes count once per process) and CPU seconds.
Results accumulate in bench/scale_results.json (one entry per size, the latest kept); --write renders them
all into the Scale section of docs/benchmarks.md.

    python bench/scale.py --rows 10000 [--trials 25] [--write]
    python bench/scale.py --rows 1000000 --trials 2 --write
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.proctree import TreeUsage, run_watched  # noqa: E402
from bench.sections import machine, stamp, write_section  # noqa: E402

RESULTS = ROOT / "bench" / "scale_results.json"
EXTRA_NUMERIC, EXTRA_CATEGORICAL = 7, 5  # with the generator's 8 columns: 20 in all (ID and label included)

# Task-run name prefixes (tasks/) grouped into the stages a reader knows.
STAGES = (
    ("validate data (flow)", ("validate-data",)),
    ("watch the champion (drift, decay)", ("watch-champion", "report-watch")),
    ("upload", ("upload-data",)),
    ("sweep", ("run-sweep",)),
    ("register", ("register-",)),
    ("deploy (endpoint start + smoke)", ("converge-", "deploy-")),
    ("evaluate the holdout through the endpoint", ("evaluate-",)),
    ("promotion gate (baseline test included)", ("promotion-gate",)),
    ("feature importance (2,000-row sample)", ("feature-importance",)),
    ("reports (sweep plot beside deploy; model report)", ("report-sweep", "report-model")),
)


def generate(rows: int, folder: Path) -> Path:
    from tests.tables import user_table, write_table

    frame = user_table(rows=rows, seed=11, extra_numeric=EXTRA_NUMERIC, extra_categorical=EXTRA_CATEGORICAL)
    assert frame.shape[1] == 20, frame.shape
    return write_table(frame, folder / f"table-{rows}.csv")


# -- the bare loop (in a process of its own, so that its tree's memory is measured the same way) ------------

def bare_main(table: str, trials: int, processes: int) -> int:
    """The bare loop: read the table, set the same holdout aside, fit the same trials (bench/sweep_wide.py's
    loop: the same pipeline, nothing but scikit-learn). Prints its seconds."""
    from backends.domain.dataset import canonical_csv, prepare_data
    from backends.domain.search import random_points
    from backends.domain.spec import DataSpec, SweepSpec
    from bench.sweep_wide import bare_loop
    from tests.tables import TARGET

    started = time.perf_counter()
    prepared = prepare_data(table, None, DataSpec().holdout_fraction, target=TARGET)
    spec = SweepSpec(max_total_trials=trials, max_concurrent_trials=processes)
    with tempfile.TemporaryDirectory() as tmp:
        train_csv = Path(tmp) / "train.csv"
        train_csv.write_bytes(canonical_csv(prepared.train))
        bare_loop(str(train_csv), prepared.schema.to_json(), random_points(spec), processes, spec.validation.method)
    print(json.dumps({"seconds": time.perf_counter() - started, "train_rows": len(prepared.train),
                      "holdout_rows": len(prepared.holdout)}))
    return 0


# -- heartflow run ----------------------------------------------------------------------------------------

def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def stage_seconds(prefect_db: Path) -> tuple[dict[str, float], float, float]:
    """Wall seconds per stage (the sum of its task runs), and the latest flow run's start and end (epoch
    seconds), read from the bench's Prefect database (the records the Prefect UI shows)."""
    with sqlite3.connect(f"file:{prefect_db}?mode=ro", uri=True) as db:
        flow_id, flow_start, flow_end = db.execute(
            "select id, start_time, end_time from flow_run order by start_time desc limit 1").fetchone()
        tasks = db.execute("select name, start_time, end_time from task_run where flow_run_id = ? and start_time "
                           "is not null", (flow_id,)).fetchall()
    seconds: dict[str, float] = {}
    for label, prefixes in STAGES:
        seconds[label] = sum(_timestamp(end) - _timestamp(start) for name, start, end in tasks
                             if end and name.startswith(prefixes))
    return seconds, _timestamp(flow_start), _timestamp(flow_end)


def prefect_home_ready() -> Path:
    """The bench's own PREFECT_HOME (its database migrated once, as a user's is after the first run), so that
    the stages' records are the bench's alone."""
    home = Path(tempfile.gettempdir()) / "heartflow-bench-prefect"
    if not (home / "prefect.db").exists():
        subprocess.run([str(Path(sys.executable).parent / "prefect"), "server", "database", "upgrade", "-y"],
                       env={**os.environ, "PREFECT_HOME": str(home)}, check=True, capture_output=True, timeout=600)
    return home


def heartflow_run(table: Path, trials: int, work: Path) -> dict:
    home, prefect_home = work / "home", prefect_home_ready()
    command = [str(Path(sys.executable).parent / "heartflow"), "run", "--home", str(home), "--data", str(table),
               "--target", "Heart Disease", "--positive-class", "Presence", "--trials", str(trials), "--stop-endpoint"]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(prefect_home)
    started = time.time()
    usage, errors = run_watched(command, env=env, timeout=6 * 3600)
    if usage.returncode != 0:
        raise RuntimeError(f"heartflow run failed ({usage.returncode}):\n{errors}")
    stages, flow_start, flow_end = stage_seconds(prefect_home / "prefect.db")
    return {
        "usage": _usage(usage),
        "stages": {"start-up (CLI: imports, data read and validated, server)": flow_start - started, **stages,
                   "after the flow (Prefect's workers flush, server stops)": started + usage.wall_s - flow_end},
        "flow_s": flow_end - flow_start,
    }


def _usage(usage: TreeUsage) -> dict:
    return {"wall_s": usage.wall_s, "peak_rss_mib": usage.peak_rss_bytes / 2**20, "cpu_s": usage.total_cpu_s,
            "cpu_by_role": usage.cpu_by_role()}


def measure(rows: int, trials: int, processes: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="heartflow-scale-") as tmp:
        work = Path(tmp)
        table = generate(rows, work)
        load_before = os.getloadavg()[0]
        bare_usage, errors = run_watched([sys.executable, __file__, "--bare", str(table), "--trials", str(trials),
                                          "--processes", str(processes)], stdout=subprocess.PIPE, timeout=6 * 3600)
        if bare_usage.returncode != 0:
            raise RuntimeError(f"the bare loop failed:\n{errors}")
        print(f"{rows} rows: bare loop {bare_usage.wall_s:.1f} s", flush=True)
        run = heartflow_run(table, trials, work)
        print(f"{rows} rows: heartflow run {run['usage']['wall_s']:.1f} s", flush=True)
        return {"rows": rows, "columns": 20, "trials": trials, "processes": processes, "measured": stamp(), "machine": machine(),
                "load_before": load_before, "load_after": os.getloadavg()[0], "table_mib": table.stat().st_size / 2**20,
                "bare": _usage(bare_usage), "run": run}


# -- the section ------------------------------------------------------------------------------------------

def render(results: list[dict]) -> str:
    results = sorted(results, key=lambda r: r["rows"])
    header = "| stage | " + " | ".join(f"{r['rows']:,} rows ({r['trials']} trials)" for r in results) + " |"
    lines = [
        "Machines: each column's own (its `machine` row; sizes measured in different sessions ran on different "
        "2-core machines, so compare ratios, not seconds, across columns). Command: `python bench/scale.py --rows N [--trials T] --write` once per size "
        "(`make bench-scale` runs the three). Each size is one invocation: the bare loop, then `heartflow run` on the "
        "same generated table (20 columns: an ID, 9 numeric written as text, 9 categorical with text values (one TRUE/FALSE), empty "
        "cells, Presence/Absence labels; 10 % held out by row hash). One round each: the load average (1 min) "
        "before and after says how busy the shared machine was.",
        "",
        header,
        "|---|" + "---:|" * len(results),
    ]
    stage_names = list(results[0]["run"]["stages"])
    for name in stage_names:
        lines.append(f"| {name} | " + " | ".join(f"{r['run']['stages'].get(name, 0.0):.1f} s" for r in results) + " |")
    lines += [
        "| **`heartflow run`, wall (what a user waits)** | "
        + " | ".join(f"**{r['run']['usage']['wall_s']:.1f} s**" for r in results) + " |",
        "| bare scikit-learn loop, wall (baseline) | "
        + " | ".join(f"{r['bare']['wall_s']:.1f} s" for r in results) + " |",
        "| **x baseline (wall)** | " + " | ".join(f"**{r['run']['usage']['wall_s'] / r['bare']['wall_s']:.2f}**"
                                                for r in results) + " |",
        "| post-sweep stages (register to reports) | "
        + " | ".join(f"{_post_sweep(r):.1f} s" for r in results) + " |",
        "| peak RSS of the process tree, `heartflow run` | "
        + " | ".join(f"{r['run']['usage']['peak_rss_mib']:,.0f} MiB" for r in results) + " |",
        "| peak RSS of the process tree, bare loop | "
        + " | ".join(f"{r['bare']['peak_rss_mib']:,.0f} MiB" for r in results) + " |",
        "| CPU seconds, `heartflow run` / bare loop | "
        + " | ".join(f"{r['run']['usage']['cpu_s']:.0f} / {r['bare']['cpu_s']:.0f}" for r in results) + " |",
        "| CSV size | " + " | ".join(f"{r['table_mib']:.1f} MiB" for r in results) + " |",
        "| load average before / after | "
        + " | ".join(f"{r['load_before']:.1f} / {r['load_after']:.1f}" for r in results) + " |",
        "| measured | " + " | ".join(r["measured"] for r in results) + " |",
        "| machine | " + " | ".join(r.get("machine", "not recorded") for r in results) + " |",
    ]
    return "\n".join(lines)


def _post_sweep(result: dict) -> float:
    stages = result["run"]["stages"]
    names = list(stages)
    after = names[names.index("sweep") + 1:]
    return sum(stages[n] for n in after if not n.startswith("after the flow"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--write", action="store_true", help="render the Scale section of docs/benchmarks.md")
    parser.add_argument("--render-only", action="store_true", help="only render the stored results")
    parser.add_argument("--bare", metavar="TABLE", help=argparse.SUPPRESS)  # the bare loop's own process
    args = parser.parse_args()
    if args.bare:
        return bare_main(args.bare, args.trials, args.processes)
    if not args.render_only:
        result = measure(args.rows, args.trials, args.processes)
        stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else []  # read after: sizes may run at once
        stored = [r for r in stored if r["rows"] != args.rows] + [result]
        RESULTS.write_text(json.dumps(stored, indent=1) + "\n")
        print(json.dumps(result, indent=1))
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    if not stored:
        parser.error(f"no results in {RESULTS}: measure a size first")
    text = render(stored)
    print(text)
    if args.write:
        write_section(ROOT / "docs" / "benchmarks.md", "Scale", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
