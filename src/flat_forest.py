"""The compiled forest's numpy walk (used where numba's machine code is not available): every tree's nodes in
flat arrays, walked for all rows and trees at once.

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class FlatForest:
    """Every tree's nodes in flat arrays, walked for all rows and trees at once. Node i of tree t is number
    k = offsets[t] + i, kept doubled (2k) so that one lookup picks the next node: ``child[2k + go_left]``
    (``child[2k]`` the right child, ``child[2k + 1]`` the left, both doubled; a leaf's children are itself).
    ``feature``, ``threshold`` and ``missing_left`` are laid out on the same doubled numbers. It follows
    scikit-learn's Tree.apply: the input in float32, ``x <= threshold`` with the float64 threshold, NaN to
    the side the node learned (missing_go_to_left). A leaf's row is ``tree_.value[:, 0, :n_classes]``: in
    scikit-learn 1.9 a classifier's value already holds class fractions, and
    DecisionTreeClassifier.predict_proba returns exactly those rows. The forest sums the trees' rows in tree
    order from zero, then divides by the number of trees; cumsum along the tree axis adds in that same
    order, so the result is bit-identical."""

    def __init__(self, trees: Sequence[Any], n_classes: int) -> None:
        counts = np.asarray([tree.node_count for tree in trees], dtype=np.intp)
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.intp)
        left, right, feature, threshold, missing_left, value = [], [], [], [], [], []
        for tree, offset in zip(trees, offsets, strict=True):
            own = np.arange(tree.node_count, dtype=np.intp) + offset
            leaf = tree.children_left == -1
            left.append(np.where(leaf, own, tree.children_left + offset))
            right.append(np.where(leaf, own, tree.children_right + offset))
            feature.append(np.where(leaf, 0, tree.feature))
            threshold.append(tree.threshold)
            missing_left.append(np.asarray(tree.missing_go_to_left, dtype=bool))
            value.append(tree.value[:, 0, :n_classes])
        self.roots = 2 * offsets
        self.child = 2 * np.stack([np.concatenate(right), np.concatenate(left)], axis=1).astype(np.intp).ravel()
        self.feature = np.repeat(np.concatenate(feature).astype(np.intp), 2)
        self.threshold = np.repeat(np.concatenate(threshold).astype(np.float64), 2)
        self.missing_left = np.repeat(np.concatenate(missing_left), 2)
        self.leaf = self.child == 2 * (np.arange(len(self.child)) // 2)
        self.value = np.repeat(np.ascontiguousarray(np.concatenate(value), dtype=np.float64), 2, axis=0)
        self.depth = max(int(tree.max_depth) for tree in trees)

    def apply(self, x32: np.ndarray) -> np.ndarray:
        """The leaf each row reaches in each tree: shape (rows, trees), doubled global node numbers."""
        rows, width = x32.shape
        node = np.tile(self.roots, (rows, 1))
        flat = x32.ravel()
        base = (np.arange(rows, dtype=np.intp) * width)[:, None] if rows > 1 else None
        has_nan = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            if self.leaf.take(node).all():
                break
            at = self.feature.take(node)
            value = flat.take(at if base is None else at + base)
            go_left = value <= self.threshold.take(node)  # float32 promoted to float64, as Tree.apply does
            if has_nan:
                go_left |= np.isnan(value) & self.missing_left.take(node)
            node = self.child.take(node + go_left)
        return node

    def predict_proba(self, x32: np.ndarray) -> np.ndarray:
        leaves = self.value.take(self.apply(x32), axis=0)  # (rows, trees, classes)
        proba = np.cumsum(leaves, axis=1)[:, -1]
        proba /= len(self.roots)
        return proba
