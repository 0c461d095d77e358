"""The compiled forest's inner loop as machine code (numba), when numba is installed.

One call does what compiled_forest.py does in numpy for a batch of rows: the ColumnTransformer's arithmetic
(per output column: impute, centre and scale in float64, or compare with a one-hot category), the cast to
float32 the trees read, and every tree's walk from root to leaf, summing the leaves' class fractions in tree
order from zero, then dividing by the number of trees. Those are the same operations, in the same order and
precision, as scikit-learn's, so the result is bit-identical (build_predictor checks it on probe rows before
serving). A 1-row request walks ~100 trees of depth ~13 in a few microseconds instead of ~13 rounds of numpy
calls (~80 us), which is most of what separated the endpoint from the bare HTTP floor.

Without numba, or where it cannot compile, ``kernel_available()`` is False and the numpy path serves.
The machine code is cached next to this file (or in numba's user cache when the folder is read-only), so only
the first worker on a machine pays the compilation (about 2 s); later ones load it in milliseconds.

This module runs on Azure's compute in the package src (the code folder holds src/), so it imports only
third-party packages and src's own modules; it is src.forest_kernel in every process, so one process loads the
machine code another cached.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# The transform program: one column per output column of the ColumnTransformer, these rows.
SOURCE, KIND, FILL, CENTRE, SCALE, GROUP_END = range(6)
AFFINE = 0.0  # out = ((x if not NaN else fill) - centre) / scale; fill NaN keeps NaN, centre 0 / scale 1 are exact
ONE_HOT = 1.0  # out = 1.0 if x == category (in CENTRE) else 0.0; NaN and unknown categories give 0.0
# The node table: one row per node of the forest (trees one after another), these int32 columns. A node's
# next node is nodes[n, go_left]: RIGHT is column 0 and LEFT column 1. A leaf has FEATURE -1.
RIGHT, LEFT, FEATURE, MISSING_LEFT = range(4)
LANES = 8  # trees walked together (1.6x faster than one at a time here; 4 lanes gain little, 16 no more)


def node_tables(trees: Sequence[Any], n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """roots (int64), the node table (int32, 16 bytes a node), thresholds (float32), leaf values (float64).

    A threshold is stored as the largest float32 not above scikit-learn's float64 threshold: for a float32
    input x, ``x <= t32`` is then exactly ``x <= threshold`` (what Tree.apply computes), in a quarter of the
    memory the walk reads, so more of the forest stays in cache between requests.
    """
    counts = np.asarray([tree.node_count for tree in trees], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    tables, thresholds, values = [], [], []
    for tree, offset in zip(trees, offsets, strict=True):
        leaf = tree.children_left == -1
        table = np.empty((tree.node_count, 4), dtype=np.int64)
        table[:, RIGHT] = np.where(leaf, -1, tree.children_right + offset)
        table[:, LEFT] = np.where(leaf, -1, tree.children_left + offset)
        table[:, FEATURE] = np.where(leaf, -1, tree.feature)
        table[:, MISSING_LEFT] = np.asarray(tree.missing_go_to_left, dtype=np.int64)
        tables.append(table)
        threshold = np.where(leaf, 0.0, tree.threshold)
        t32 = threshold.astype(np.float32)
        above = t32.astype(np.float64) > threshold
        t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
        thresholds.append(t32)
        values.append(tree.value[:, 0, :n_classes])
    nodes = np.concatenate(tables)
    if nodes.max(initial=0) > np.iinfo(np.int32).max:
        raise ValueError("the forest has too many nodes for 32-bit node numbers")
    return (offsets, np.ascontiguousarray(nodes, dtype=np.int32), np.ascontiguousarray(np.concatenate(thresholds)),
            np.ascontiguousarray(np.concatenate(values), dtype=np.float64))


def _predict_rows(
    x: np.ndarray,  # (rows, inputs) float64
    program: np.ndarray,  # (6, width) float64: SOURCE, KIND, FILL, CENTRE, SCALE, GROUP_END
    roots: np.ndarray,  # (trees,) int64
    nodes: np.ndarray,  # (nodes, 4) int32: RIGHT, LEFT, FEATURE (-1 at a leaf), MISSING_LEFT
    threshold: np.ndarray,  # (nodes,) float32, rounded down (see node_tables)
    value: np.ndarray,  # (nodes, classes) float64: a leaf's class fractions
    proba: np.ndarray,  # (rows, classes) float64, written
    best: np.ndarray,  # (rows,) intp, written: the first class of highest probability, as np.argmax
) -> int:
    """Fill ``proba`` and ``best``; return how many non-missing one-hot inputs matched no known category."""
    rows = x.shape[0]
    width = program.shape[1]
    classes = proba.shape[1]
    trees = roots.shape[0]
    row32 = np.empty(width, dtype=np.float32)
    at = np.empty(LANES, dtype=np.int64)
    unseen = 0
    for r in range(rows):
        matched = False
        for k in range(width):
            v = x[r, int(program[SOURCE, k])]
            if program[KIND, k] == ONE_HOT:
                hit = v == program[CENTRE, k]
                row32[k] = np.float32(1.0) if hit else np.float32(0.0)
                matched = matched or hit
                if program[GROUP_END, k] != 0.0:
                    if not matched and not math.isnan(v):
                        unseen += 1
                    matched = False
            else:
                if math.isnan(v):
                    v = program[FILL, k]
                row32[k] = np.float32((v - program[CENTRE, k]) / program[SCALE, k])
        for c in range(classes):
            proba[r, c] = 0.0
        # Trees in groups of LANES, walked in lockstep: each lane is an independent chain of loads, so the
        # processor overlaps them (a lone walk waits on every load); leaves are added in tree order.
        for first in range(0, trees, LANES):
            lanes = min(LANES, trees - first)
            for lane in range(lanes):
                at[lane] = roots[first + lane]
            walking = True
            while walking:
                walking = False
                for lane in range(lanes):
                    node = at[lane]
                    feature = nodes[node, FEATURE]
                    if feature >= 0:
                        v32 = row32[feature]
                        # LEFT is column 1: the comparison is the column, without a branch to mispredict
                        go_left = nodes[node, MISSING_LEFT] if math.isnan(v32) else np.int32(v32 <= threshold[node])
                        at[lane] = nodes[node, go_left]
                        walking = True
            for lane in range(lanes):
                for c in range(classes):
                    proba[r, c] += value[at[lane], c]
        top = 0
        for c in range(classes):
            proba[r, c] /= trees
            if proba[r, c] > proba[r, top]:
                top = c
        best[r] = top
    return unseen


def _compile(cache: bool) -> Callable[..., int] | None:
    try:
        import numba
    except ImportError:
        return None
    try:
        return numba.njit(cache=cache, nogil=True, boundscheck=False)(_predict_rows)
    except RuntimeError as exc:  # no writable cache folder (a read-only deployment): compile in each worker
        logger.info("numba cannot cache the forest kernel (%s); compiling it in this process", exc)
        return numba.njit(cache=False, nogil=True, boundscheck=False)(_predict_rows)


_KERNEL: Callable[..., int] | None = None
_STATE = "untried"  # "untried", "ready" or "unavailable"


def _warm_up(kernel: Callable[..., int]) -> None:
    """The first call: compiles the kernel, or loads it from the cache."""
    program = np.zeros((6, 1))
    program[SCALE] = 1.0
    leaf = np.full((1, 4), -1, dtype=np.int32)
    kernel(np.zeros((1, 1)), program, np.zeros(1, np.int64), leaf, np.zeros(1, np.float32), np.zeros((1, 1)),
           np.empty((1, 1)), np.empty(1, np.intp))


def kernel_available() -> bool:
    """True when the kernel is compiled (or loaded from the cache) and runs; compiles it on the first call."""
    global _KERNEL, _STATE
    if _STATE != "untried":
        return _STATE == "ready"
    _STATE = "unavailable"
    kernel = _compile(cache=True)
    if kernel is None:
        return False
    from numba.core.errors import NumbaError

    try:
        _warm_up(kernel)
    except (NumbaError, OSError, RuntimeError, TypeError, ValueError) as exc:  # LLVM or typing failure
        logger.warning("the forest kernel does not compile here (%s); the compiled forest runs in numpy", exc)
        return False
    _KERNEL, _STATE = kernel, "ready"
    return True


def run_kernel(arrays: tuple[np.ndarray, ...], x: np.ndarray, proba: np.ndarray, best: np.ndarray) -> int:
    """``kernel(x, *arrays, proba, best)``: the unseen-category count; the caller checks ``kernel_available()``."""
    assert _KERNEL is not None
    return int(_KERNEL(x, *arrays, proba, best))
