"""The tests' shared table helpers (one place: test modules import these, never each other's).

Tables as users bring them, generated: text categories, text labels, empty cells, an ID column, text
booleans and column names with spaces, dots and mixed case. The label depends on the features, so a model
can learn it (accuracy well above chance) and a wrong mapping of labels shows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "Heart Disease"
LABELS = ("Absence", "Presence")


def user_table(rows: int = 400, seed: int = 0, extra_numeric: int = 0, extra_categorical: int = 0,
               missing_fraction: float = 0.05, positive_share: float = 0.5, noise: bool = False,
               label_noise: float = 0.8, first_id: int = 0, cholesterol_shift: float = 0.0) -> pd.DataFrame:
    """``positive_share``: the share of rows labelled positive (the highest scores; 0.2: a rare positive
    class); ``noise``: the label is drawn apart from every column (nothing to learn); ``label_noise``: the
    spread of the score's noise; ``first_id`` numbers the Patient IDs, so batches appended night after night
    keep them unique; ``cholesterol_shift`` drifts that column (the label does not depend on it)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(29, 78, rows)
    chest = rng.choice(["ATA", "NAP", "ASY", "TA"], rows)
    sex = rng.choice(["M", "F"], rows)
    chol = (rng.normal(240, 45, rows) + cholesterol_shift).round(1)
    angina = rng.choice(["Yes", "No"], rows)
    score = (age - 50) / 10 + (chest == "ASY") * 1.5 + (sex == "M") * 0.7 + (angina == "Yes") * 1.0 + rng.normal(0, label_noise, rows)
    if noise:
        score = np.random.default_rng(seed + 1).normal(0, 1, rows)
    frame = pd.DataFrame({
        "Patient ID": [f"P{100000 + first_id + i}" for i in range(rows)],
        "Age": age.astype(str),
        "Chest.Pain Type": chest,
        "Sex": sex,
        "Cholesterol mg/dl": chol.astype(str),
        "Exercise Angina": angina,
        "Fasting BS": rng.choice(["TRUE", "FALSE"], rows),
    })
    for k in range(extra_numeric):
        frame[f"Lab Value.{k}"] = rng.normal(k, 1.0, rows).round(3).astype(str)
    for k in range(extra_categorical):
        frame[f"Site Code {k}"] = rng.choice([f"S{j}" for j in range(6)], rows)
    for column in ("Cholesterol mg/dl", "Chest.Pain Type"):
        holes = rng.random(rows) < missing_fraction
        frame.loc[holes, column] = ""
    frame[TARGET] = np.where(score > np.quantile(score, 1.0 - positive_share), LABELS[1], LABELS[0])
    return frame


def resampled_heart_table(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """The embedded heart table's rows drawn with replacement, chol jittered and written as text; ``shift``
    moves chol (a drifted column)."""
    from backends.domain.dataset import read_table

    base, _ = read_table(None)
    rng = np.random.default_rng(seed)
    frame = base.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    chol = pd.to_numeric(frame["chol"]) + rng.integers(-5, 6, size=rows) + shift
    frame["chol"] = chol.astype(int).astype(str)
    return frame


def write_table(frame: pd.DataFrame, path: Path, mtime: float | None = None) -> Path:
    """``frame`` as a CSV at ``path`` (folders created), its modification time set when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path
