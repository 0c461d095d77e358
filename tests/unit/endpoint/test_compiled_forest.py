"""The compiled forest, in machine code (numba, src/forest_kernel.py) and in numpy on flat node arrays: its
probabilities and labels must equal the fitted pipeline's ``predict_proba`` / ``predict`` bit for bit, for
deep and shallow forests, one tree and a hundred, unseen categories and nulls where a column imputes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from src import forest_kernel
from src.compiled_forest import CompiledForestPredictor, build_predictor
from src.model_files import Feature

FEATURES = (
    Feature("age", integer=True),
    Feature("chol", integer=False, nullable=True),
    Feature("pain", integer=True),
    Feature("beats", integer=False),
)


def _frame(rng: np.random.Generator, rows: int, nulls: float) -> pd.DataFrame:
    chol = rng.normal(240.0, 50.0, rows)
    chol[rng.random(rows) < nulls] = np.nan
    return pd.DataFrame({
        "age": rng.integers(29, 78, rows),
        "chol": chol,
        "pain": rng.integers(1, 5, rows),
        "beats": rng.normal(150.0, 22.0, rows),
    })


def _fit(forest_type: type, trees: int, depth: int | None, classes: int = 2) -> Pipeline:
    rng = np.random.default_rng(7)
    frame = _frame(rng, 400, nulls=0.1)
    score = frame["age"] / 50 + np.nan_to_num(frame["chol"], nan=240.0) / 240 + frame["pain"] / 4 + rng.normal(0, 0.5, 400)
    labels = np.asarray(["Absence", "Presence", "Unsure"])[np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))]
    pre = ColumnTransformer([
        ("number", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), ["chol"]),
        ("scale", StandardScaler(), ["age", "beats"]),
        ("onehot", OneHotEncoder(handle_unknown="ignore"), ["pain"]),
    ])
    model = Pipeline([("pre", pre), ("forest", forest_type(n_estimators=trees, max_depth=depth, random_state=0))])
    return model.fit(frame, labels)


MACHINE_CODE, NUMPY = "compiled-forest (machine code)", "compiled-forest (numpy)"


@pytest.fixture(params=[True, False], ids=["machine-code", "numpy"])
def use_kernel(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_numba_is_installed_so_the_endpoint_runs_machine_code() -> None:
    assert forest_kernel.kernel_available()  # a declared dependency: without it every request takes the numpy path


def _rows(seed: int, rows: int) -> np.ndarray:
    frame = _frame(np.random.default_rng(seed), rows, nulls=0.2)
    frame.loc[::7, "pain"] = 9  # a category the encoder never saw
    return frame[[f.name for f in FEATURES]].to_numpy(dtype=np.float64)


@pytest.mark.parametrize("trees", [1, 100])
@pytest.mark.parametrize("depth", [None, 4])
def test_the_compiled_forest_equals_predict_proba_exactly(trees: int, depth: int | None, use_kernel: bool) -> None:
    model = _fit(RandomForestClassifier, trees, depth)
    compiled = CompiledForestPredictor.build(model, FEATURES, use_kernel=use_kernel)
    assert compiled is not None and compiled.kind == (MACHINE_CODE if use_kernel else NUMPY)
    x = _rows(1, 500)
    assert np.isnan(x[:, 1]).any()
    frame = pd.DataFrame({f.name: x[:, j] for j, f in enumerate(FEATURES)})
    labels, proba = compiled.predict(x, True)
    assert np.array_equal(proba, model.predict_proba(frame))
    assert np.array_equal(labels, model.predict(frame))
    one_labels, one_proba = compiled.predict(x[:1], True)  # the endpoint's common case: one row
    assert np.array_equal(one_proba, proba[:1]) and np.array_equal(one_labels, labels[:1])
    assert build_predictor(model, FEATURES).kind == MACHINE_CODE


def test_three_classes_extra_trees_and_more_rows_than_one_pass(use_kernel: bool) -> None:
    model = _fit(ExtraTreesClassifier, 30, None, classes=3)
    compiled = CompiledForestPredictor.build(model, FEATURES, use_kernel=use_kernel)
    assert compiled is not None
    x = _rows(2, 5000)  # more than one chunk of rows
    frame = pd.DataFrame({f.name: x[:, j] for j, f in enumerate(FEATURES)})
    labels, proba = compiled.predict(x, True)
    assert proba.shape == (5000, 3) and set(labels) == {"Absence", "Presence", "Unsure"}
    assert np.array_equal(proba, model.predict_proba(frame)) and np.array_equal(labels, model.predict(frame))


def test_a_node_array_off_by_one_threshold_is_caught_by_the_probe_check(use_kernel: bool) -> None:
    model = _fit(RandomForestClassifier, 10, None)

    def broken(model, features):
        compiled = CompiledForestPredictor.build(model, features, use_kernel=use_kernel)
        compiled._nodes.threshold += 0.5  # the numpy path's thresholds
        if compiled._kernel_arrays is not None:
            compiled._kernel_arrays[3][:] += np.float32(0.5)  # the machine code's (program, roots, nodes, thresholds, ...)
        return compiled

    assert build_predictor(model, FEATURES, compiler=broken).kind == "dataframe"


def test_nulls_reaching_the_trees_go_the_side_each_node_learned(use_kernel: bool) -> None:
    """A passthrough column with nulls: the forest learned where missing values go (missing_go_to_left)."""
    rng = np.random.default_rng(3)
    frame = _frame(rng, 400, nulls=0.3)
    labels = np.where(np.isnan(frame["chol"]) | (frame["age"] > 55), "Presence", "Absence")
    pre = ColumnTransformer([("keep", "passthrough", ["chol", "age"]), ("scale", StandardScaler(), ["pain", "beats"])])
    model = Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=50, random_state=0))]).fit(frame, labels)
    assert any(e.tree_.missing_go_to_left.any() for e in model.steps[-1][1].estimators_)
    compiled = CompiledForestPredictor.build(model, FEATURES, use_kernel=use_kernel)
    assert compiled is not None
    x = _rows(4, 500)
    x[:, 2] = np.clip(x[:, 2], 1, 4)
    frame = pd.DataFrame({f.name: x[:, j] for j, f in enumerate(FEATURES)})
    labels_out, proba = compiled.predict(x, True)
    assert np.isnan(x[:, 1]).sum() > 50
    assert np.array_equal(proba, model.predict_proba(frame)) and np.array_equal(labels_out, model.predict(frame))
    assert build_predictor(model, FEATURES).kind == MACHINE_CODE


def test_the_kernel_counts_unseen_categories_as_the_encoder_ignores_them() -> None:
    """Non-missing one-hot inputs that match no category the encoder learned: the count the endpoint logs."""
    model = _fit(RandomForestClassifier, 5, 3)
    compiled = CompiledForestPredictor.build(model, FEATURES)
    assert compiled is not None and compiled.kind == MACHINE_CODE
    x = _rows(5, 300)
    x[::10, 2] = np.nan  # a missing category is not an unseen one
    expected = int(np.sum(~np.isin(x[:, 2], [1, 2, 3, 4]) & ~np.isnan(x[:, 2])))
    assert expected > 0
    found = compiled.classify(x, True)
    assert found.unseen == expected
    assert found.best == np.argmax(model.predict_proba(pd.DataFrame({f.name: x[:, j] for j, f in enumerate(FEATURES)})), axis=1).tolist()


def test_inputs_on_and_one_float32_step_around_every_threshold_go_the_same_way_as_scikit_learn(use_kernel: bool) -> None:
    """The machine code compares float32 inputs with float32 thresholds rounded down from scikit-learn's
    float64 ones: exact only if the rounding is right, so probe each threshold where rounding matters."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"age": rng.integers(29, 78, 300), "chol": rng.normal(240.0, 50.0, 300),
                          "pain": rng.integers(1, 5, 300), "beats": rng.normal(150.0, 22.0, 300) / 7.0})
    labels = np.where(frame["chol"] / 240 + frame["beats"] / 21 + rng.normal(0, 0.3, 300) > 2.0, "Presence", "Absence")
    pre = ColumnTransformer([("keep", "passthrough", ["age", "chol", "pain", "beats"])])
    model = Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=40, random_state=0))]).fit(frame, labels)
    compiled = CompiledForestPredictor.build(model, FEATURES, use_kernel=use_kernel)
    assert compiled is not None
    rows = []
    for estimator in model.steps[-1][1].estimators_:
        tree = estimator.tree_
        for node in np.flatnonzero(tree.children_left != -1):
            t32 = np.float32(tree.threshold[node])
            for value in (np.nextafter(t32, np.float32(-np.inf)), t32, np.nextafter(t32, np.float32(np.inf))):
                row = frame.iloc[int(rng.integers(0, 300))][["age", "chol", "pain", "beats"]].to_numpy(dtype=np.float64)
                row[tree.feature[node]] = float(value)
                rows.append(row)
    x = np.asarray(rows)
    _, proba = compiled.predict(x, True)
    expected = model.predict_proba(pd.DataFrame(x, columns=["age", "chol", "pain", "beats"]))
    assert len(x) > 1000 and np.array_equal(proba, expected)


@pytest.mark.parametrize(("rare_rows", "compiled"), [(40, True), (3, False)], ids=["none-infrequent", "one-infrequent"])
def test_an_encoder_grouping_infrequent_categories_is_compiled_only_when_it_groups_none(rare_rows: int, compiled: bool) -> None:
    """min_frequency set: a category seen fewer times shares the infrequent column, which the compiled one-hot
    does not reproduce (the DataFrame path serves); with no category that rare, the one-hot is plain."""
    rng = np.random.default_rng(3)
    frame = _frame(rng, 400, nulls=0.0)
    frame["pain"] = np.where(np.arange(400) < rare_rows, 4, rng.integers(1, 4, 400))
    labels = np.where(frame["age"] + 10 * frame["pain"] + rng.normal(0, 5, 400) > 80, "Presence", "Absence")
    pre = ColumnTransformer([("scale", StandardScaler(), ["age", "chol", "beats"]),
                             ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=10), ["pain"])])
    model = Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=5, random_state=0))]).fit(frame, labels)
    infrequent = model.named_steps["pre"].named_transformers_["onehot"].infrequent_categories_
    assert (infrequent[0] is None) is compiled
    predictor = build_predictor(model, FEATURES)
    assert isinstance(predictor, CompiledForestPredictor) is compiled
