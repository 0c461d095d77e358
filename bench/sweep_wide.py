"""Benchmark: the tracked local sweep against a bare scikit-learn loop on a user's wide table.

The table is generated as users bring them: 10,000 rows, 25 columns, text categories, Presence/Absence
labels, empty cells, an ID column. Both contenders run the same trials (the default random-forest space,
seeded random sampling) on the same validated training split with the same number of processes, in one
invocation; the bare loop runs twice (before and after) as a drift check. Same ratio method as sweep.py.

    .venv/bin/python bench/sweep_wide.py [--trials 8] [--processes 2] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from backends.domain.dataset import canonical_csv, prepare_data  # noqa: E402
from backends.domain.search import random_points  # noqa: E402
from backends.domain.spec import SweepSpec, ValidationSpec  # noqa: E402
from sections import machine, stamp, write_section  # noqa: E402
from tests.tables import TARGET, user_table, write_table  # noqa: E402

_STATE: dict = {}


def _init(path: str, schema_json: str) -> None:
    import json

    from threadpoolctl import threadpool_limits

    from src.features import DatasetSchema, read_training_csv

    threadpool_limits(1)  # as the tracked sweep's workers
    schema = DatasetSchema.from_mapping(json.loads(schema_json))
    _STATE.update(frame=read_training_csv(path, schema), schema=schema)


def _bare_trial(job: tuple[dict, str]) -> float:
    from src.model_train import train_trial

    params, method = job
    return train_trial(_STATE["frame"], _STATE["schema"], params, seed=42, method=method).metrics["accuracy"]


def bare_loop(data_csv: str, schema_json: str, points: list[dict], processes: int, method: str) -> float:
    """The same trials with nothing but scikit-learn (the same pipeline): no tracking, no model files."""
    started = time.perf_counter()
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=_init,
                             initargs=(data_csv, schema_json)) as pool:
        list(pool.map(_bare_trial, [(p, method) for p in points]))
    return time.perf_counter() - started


def tracked_sweep(prepared, spec: SweepSpec) -> float:  # noqa: ANN001
    from backends.local.backend import LocalBackend

    with tempfile.TemporaryDirectory() as home:
        backend = LocalBackend(home)
        ref = backend.upload(prepared.train)
        started = time.perf_counter()
        result = backend.sweep(ref, spec, prepared.schema)
        elapsed = time.perf_counter() - started
        assert len(result.completed) == spec.max_total_trials, "every trial must complete"
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--write", type=Path, default=None, help="update the Wide table sweep section of this file")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        table = write_table(user_table(rows=args.rows, seed=5, extra_numeric=11, extra_categorical=6), Path(tmp) / "wide.csv")
        prepared = prepare_data(table, None, 0.1, target=TARGET)
        data_csv = Path(tmp) / "train.csv"
        data_csv.write_bytes(canonical_csv(prepared.train))
        for method in ("split", "kfold"):
            spec = SweepSpec(max_total_trials=args.trials, max_concurrent_trials=args.processes,
                             validation=ValidationSpec(method=method))
            points = random_points(spec)
            bare = bare_loop(str(data_csv), prepared.schema.to_json(), points, args.processes, method)
            tracked = tracked_sweep(prepared, spec)
            bare_again = bare_loop(str(data_csv), prepared.schema.to_json(), points, args.processes, method)
            results[method] = {"bare": min(bare, bare_again), "bare_max": max(bare, bare_again), "tracked": tracked}
    split, kfold = results["split"], results["kfold"]
    schema = prepared.schema
    lines = [
        f"Measured {stamp()} on {machine()}.",
        "",
        f"Command: `python bench/sweep_wide.py --trials {args.trials} --write docs/benchmarks.md` (part of `make bench`)",
        "",
        f"{args.trials} trials of the default random-forest space (seeded random sampling) on a generated table of "
        f"{args.rows:,} rows x 25 columns ({len(schema.numeric)} numeric, {len(schema.categorical)} categorical with "
        f"text values, {len(schema.drop)} ID column dropped, empty cells imputed inside the pipeline, Presence/Absence "
        f"labels), {len(prepared.train):,} training rows after the holdout; {args.processes} processes, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}. Each baseline ran twice (best shown; the other: split "
        f"{split['bare_max']:.2f} s, kfold {kfold['bare_max']:.2f} s).",
        "",
        "| validation | contender | seconds | x its baseline |",
        "|---|---|---:|---:|",
        f"| split 70/30 | bare scikit-learn loop, same pipeline (baseline) | {split['bare']:.2f} | 1.00 |",
        f"| split 70/30 | heartflow tracked sweep (every trial an MLflow run; models of leading trials) | {split['tracked']:.2f} | {split['tracked'] / split['bare']:.2f} |",
        f"| 5-fold + refit (default) | bare scikit-learn loop, same pipeline (baseline) | {kfold['bare']:.2f} | 1.00 |",
        f"| 5-fold + refit (default) | heartflow tracked sweep | {kfold['tracked']:.2f} | {kfold['tracked'] / kfold['bare']:.2f} |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(args.write, "Sweep on a wide user table", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
