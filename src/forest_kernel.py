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

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)

# The transform program: one column per output column of the ColumnTransformer, these rows.
SOURCE, KIND, FILL, CENTRE, SCALE, GROUP_END = range(6)
AFFINE = 0.0  # out = ((x if not NaN else fill) - centre) / scale; fill NaN keeps NaN, centre 0 / scale 1 are exact
ONE_HOT = 1.0  # out = 1.0 if x == category (in CENTRE) else 0.0; NaN and unknown categories give 0.0
# The node table: one row per doubled node number, these columns.
CHILD, FEATURE, LEAF, MISSING_LEFT = range(4)


def _predict_rows(
    x: np.ndarray,  # (rows, inputs) float64
    program: np.ndarray,  # (6, width) float64: SOURCE, KIND, FILL, CENTRE, SCALE, GROUP_END
    roots: np.ndarray,  # (trees,) intp: doubled node numbers
    nodes: np.ndarray,  # (2 * nodes, 4) intp: CHILD (next node is nodes[n + go_left, CHILD]), FEATURE, LEAF, MISSING_LEFT
    threshold: np.ndarray,  # (2 * nodes,) float64
    value: np.ndarray,  # (2 * nodes, classes) float64: a leaf's class fractions
    proba: np.ndarray,  # (rows, classes) float64, written
    best: np.ndarray,  # (rows,) intp, written: the first class of highest probability, as np.argmax
) -> int:
    """Fill ``proba`` and ``best``; return how many non-missing one-hot inputs matched no known category."""
    rows = x.shape[0]
    width = program.shape[1]
    classes = proba.shape[1]
    trees = roots.shape[0]
    row32 = np.empty(width, dtype=np.float32)
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
        for t in range(trees):
            node = roots[t]
            while nodes[node, LEAF] == 0:
                v32 = row32[nodes[node, FEATURE]]
                go_left = np.float64(v32) <= threshold[node]  # float32 promoted to float64, as Tree.apply does
                if math.isnan(v32):
                    go_left = nodes[node, MISSING_LEFT] != 0
                node = nodes[node + (1 if go_left else 0), CHILD]
            for c in range(classes):
                proba[r, c] += value[node, c]
        top = 0
        for c in range(classes):
            proba[r, c] /= trees
            if proba[r, c] > proba[r, top]:
                top = c
        best[r] = top
    return unseen


# numba's cache records the module a kernel came from and imports it by that name when it loads the cache.
# This file is imported as src.forest_kernel by the local host and as forest_kernel by score.py (Azure ML, and
# azmlinfsrv here), both over one __pycache__: under one stable name, either process loads the other's cache.
_CACHE_MODULE = "heartflow_forest_kernel"


def _compile() -> Callable[..., int] | None:
    try:
        import numba
    except ImportError:
        return None
    sys.modules.setdefault(_CACHE_MODULE, sys.modules[__name__])
    _predict_rows.__module__ = _CACHE_MODULE
    try:
        return numba.njit(cache=True, nogil=True, boundscheck=False)(_predict_rows)
    except RuntimeError as exc:  # no writable cache folder (a read-only deployment): compile in each worker
        logger.info("numba cannot cache the forest kernel (%s); compiling it in this process", exc)
        return numba.njit(cache=False, nogil=True, boundscheck=False)(_predict_rows)


_KERNEL: Callable[..., int] | None = None
_STATE = "untried"  # "untried", "ready" or "unavailable"


def kernel_available() -> bool:
    """True when the kernel is compiled (or loaded from the cache) and runs; compiles it on the first call."""
    global _KERNEL, _STATE
    if _STATE == "untried":
        _STATE = "unavailable"
        kernel = _compile()
        if kernel is not None:
            from numba.core.errors import NumbaError

            try:  # the first call compiles: an LLVM or typing failure leaves the numpy path serving
                program = np.zeros((6, 1))
                program[SCALE] = 1.0
                kernel(np.zeros((1, 1)), program, np.zeros(1, np.intp), np.ones((2, 4), np.intp), np.zeros(2),
                       np.zeros((2, 1)), np.empty((1, 1)), np.empty(1, np.intp))
            except (NumbaError, OSError, RuntimeError, TypeError, ValueError) as exc:
                logger.warning("the forest kernel does not compile here (%s); the compiled forest runs in numpy", exc)
            else:
                _KERNEL, _STATE = kernel, "ready"
    return _STATE == "ready"


def run_kernel(arrays: tuple[np.ndarray, ...], x: np.ndarray, proba: np.ndarray, best: np.ndarray) -> int:
    """``kernel(x, *arrays, proba, best)``: the unseen-category count; the caller checks ``kernel_available()``."""
    assert _KERNEL is not None
    return int(_KERNEL(x, *arrays, proba, best))
