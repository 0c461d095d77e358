"""Property tests (hypothesis) of schema inference and table validation on generated tables."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.domain.dataset import canonical_csv
from backends.domain.inference import infer_schema
from backends.domain.validation import MAX_PROBLEMS_SHOWN, check_table
from backends.errors import DataValidationError
from src.features import read_training_csv

KINDS = ("float", "int_code", "text", "bool", "id", "constant")
NAMES = st.text(alphabet=st.sampled_from("abcXYZ .-_019"), min_size=1, max_size=12).map(str.strip).filter(bool)


def column(kind: str, rows: int, rng: np.random.Generator, holes: float) -> list[str]:
    if kind == "float":
        values = [f"{v:.3f}" for v in rng.normal(0, 10, rows)]
    elif kind == "int_code":
        values = [str(v) for v in rng.integers(0, 4, rows)]
    elif kind == "text":
        values = list(rng.choice(["red", "Green", "blue sky", "ATA"], rows))
    elif kind == "bool":
        values = list(rng.choice(["yes", "no"], rows))
    elif kind == "id":
        return [f"ID-{i}" for i in range(rows)]
    else:
        return ["same"] * rows
    return ["" if rng.random() < holes else v for v in values]


@st.composite
def tables(draw: st.DrawFn) -> tuple[pd.DataFrame, str]:
    names = draw(st.lists(NAMES, min_size=2, max_size=6, unique_by=str.lower))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=len(names), max_size=len(names)))
    if not any(k in {"float", "int_code", "text", "bool"} for k in kinds):
        kinds[0] = "float"
    rows = draw(st.integers(min_value=40, max_value=120))
    holes = draw(st.sampled_from([0.0, 0.1]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    frame = pd.DataFrame({n: column(k, rows, rng, holes) for n, k in zip(names, kinds, strict=True)})
    labels = draw(st.sampled_from([("0", "1"), ("Absence", "Presence"), ("No", "Yes"), ("false", "true")]))
    frame["the target"] = [labels[i % 2] for i in range(rows)]
    return frame, "the target"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_inferred_schemas_cover_every_column_once_and_validate_their_table(table: tuple[pd.DataFrame, str]) -> None:
    raw, target = table
    inferred = infer_schema(raw, target)
    schema = inferred.schema
    groups = schema.numeric + schema.categorical + schema.passthrough + schema.drop
    assert sorted(groups) == sorted(c for c in raw.columns if c != target)
    assert len(inferred.decisions) == len(raw.columns)
    checked = check_table(raw, schema, "generated.csv")
    assert set(checked.frame[target]) == {0, 1}
    assert checked.schema.labels is not None and checked.schema.label_of(1) in {"1", 1, "Presence", "Yes", "true"} | {1}
    assert sum(checked.missing_cells.values()) == sum(int((raw[c] == "").sum()) for c in schema.features)
    back = read_training_csv(io.BytesIO(canonical_csv(checked.frame)), schema)
    pd.testing.assert_frame_equal(back, checked.frame)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(30, 80), bad=st.sets(st.integers(0, 29), min_size=1, max_size=30), word=st.sampled_from(["abc", "1,5", "--"]))
def test_every_bad_cell_is_reported_with_its_row_up_to_the_limit(rows: int, bad: set[int], word: str) -> None:
    rng = np.random.default_rng(0)
    raw = pd.DataFrame({"x value": [f"{v:.2f}" for v in rng.normal(size=rows)],
                        "y": ["A" if i % 2 else "B" for i in range(rows)]})
    schema = infer_schema(raw, "y", positive_class="A").schema
    for row in bad:
        raw.loc[row, "x value"] = word
    with pytest.raises(DataValidationError) as caught:
        check_table(raw, schema, "t.csv")
    problems = caught.value.problems
    rows_reported = [p.row for p in problems if p.row]
    assert rows_reported == [r + 1 for r in sorted(bad)][:MAX_PROBLEMS_SHOWN]
    assert all(p.value == word and p.column == "x value" for p in problems if p.row)
    assert (len(bad) > MAX_PROBLEMS_SHOWN) == any(p.row is None for p in problems)
