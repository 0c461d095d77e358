"""Under wrk load on the real local host: a candidate that fails on a value only live traffic holds passes the
holdout and is rejected by the shadow; a champion that fails after its promotion is rolled back by the watch,
and no client sees a failure the previous champion would have answered."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from backends.client.evaluation import records_of
from backends.domain.dataset import prepare_data
from backends.domain.selection import decide_gate
from backends.domain.shadow import gate_with_shadow, run_shadow, run_watch, settle_watches
from backends.domain.spec import DeploySpec
from backends.local import tracking
from backends.local.backend import LocalBackend
from backends.results import ModelVersion, WatchRecord
from tests.contract.harnesses import sweep_of
from tests.faulty_models import save_failing_model
from tests.wrk_load import need_wrk, wrk_load

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def failing_model_dir(tmp_path_factory: pytest.TempPathFactory, heart_frame: pd.DataFrame) -> Path:
    return save_failing_model(heart_frame, tmp_path_factory.mktemp("faulty") / "model")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    made = LocalBackend(tmp_path_factory.mktemp("shadow-home"))
    yield made
    for folder in sorted((made.home / "endpoints").glob("*")):  # no endpoint host outlives the tests
        made.teardown(folder.name)


def _register(backend: LocalBackend, model_dir: Path, name: str) -> ModelVersion:
    client = tracking.make_client(backend.home)
    run = client.create_run(tracking.ensure_experiment(client, backend.home))
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    return backend.register(sweep_of(run.info.run_id, 1, 0.8), model_name=name)


def _live_bodies(frame: pd.DataFrame) -> list[dict]:
    """Three bodies of ordinary rows for each body holding the value only live traffic has (thall 9)."""
    rows = records_of(frame.drop(columns=["output"]).head(60))
    bodies = [{"data": rows[i:i + 20]} for i in range(0, 60, 20)]
    return [*bodies, {"data": [dict(rows[0], thall=9), rows[1]]}]


def test_a_candidate_failing_on_live_only_values_passes_the_holdout_and_is_rejected_by_the_shadow(
    backend: LocalBackend, trained_model_dir: Path, failing_model_dir: Path, heart_frame: pd.DataFrame,
) -> None:
    need_wrk()
    name, spec = f"m-{uuid.uuid4().hex[:6]}", DeploySpec(endpoint_name=f"s-{uuid.uuid4().hex[:8]}")
    champion = _register(backend, trained_model_dir, name)
    first = backend.deploy(champion, spec)
    holdout = prepare_data(None, None, 0.1).holdout
    backend.promote(first, champion, backend.evaluate(first, holdout, "output"))
    candidate = _register(backend, failing_model_dir, name)
    endpoint = backend.deploy(candidate, spec)
    report = backend.evaluate(endpoint, holdout, "output")  # the holdout holds no thall 9: it passes
    champion_report = backend.evaluate(endpoint, holdout, "output", deployment="blue")
    key = backend.endpoint_key(endpoint)
    with wrk_load(endpoint.scoring_uri, key, _live_bodies(heart_frame), seconds=14) as load:
        time.sleep(2)
        figures = run_shadow(backend, endpoint, endpoint.deployment, 8, min_requests=50)
    holdout_decision = decide_gate(report, champion_report, tolerance=1.0)
    decision = gate_with_shadow(holdout_decision, figures, 0.2)
    backend.reject(endpoint, candidate, decision.reason, report=report, gate=decision.figures(), shadow=figures)

    assert holdout_decision.promote and not decision.promote
    assert decision.reason.startswith("shadow: the candidate failed")
    assert figures.mirrored >= 50 and 0 < figures.candidate_errors < figures.mirrored
    assert load.result is not None and load.result.requests > 100
    assert (load.result.non2xx, load.result.errors) == (0, 0)  # the champion answered every client
    last = backend.history(endpoint.name)[-1]
    assert last.event == "rejected" and last.shadow == figures
    assert backend.endpoints.read_traffic(endpoint.name) == {"blue": 100}


def test_a_champion_failing_after_its_promotion_is_rolled_back_by_the_watch_and_no_client_sees_it(
    backend: LocalBackend, trained_model_dir: Path, failing_model_dir: Path, heart_frame: pd.DataFrame,
) -> None:
    need_wrk()
    name, spec = f"m-{uuid.uuid4().hex[:6]}", DeploySpec(endpoint_name=f"w-{uuid.uuid4().hex[:8]}")
    holdout = prepare_data(None, None, 0.1).holdout
    old = _register(backend, trained_model_dir, name)
    first = backend.deploy(old, spec)
    old_report = backend.evaluate(first, holdout, "output")
    backend.promote(first, old, old_report)
    new = _register(backend, failing_model_dir, name)
    endpoint = backend.deploy(new, spec)
    key = backend.endpoint_key(endpoint)
    with wrk_load(endpoint.scoring_uri, key, _live_bodies(heart_frame), seconds=12) as load:
        time.sleep(1)
        session = backend.start_watch(endpoint, endpoint.deployment, "blue")  # before traffic moves
        endpoint = backend.promote(endpoint, new, backend.evaluate(endpoint, holdout, "output"),
                                   watch=WatchRecord("watching", 30))
        assert backend.endpoints.read_traffic(endpoint.name) == {"blue": 0, "green": 100}  # old one kept warm
        record = run_watch(backend, endpoint, session, 30, None)
        restored = backend.promote(endpoint.__class__(**{**endpoint.__dict__, "deployment": "blue"}), old, old_report,
                                   event="rollback", reason=record.reason, triggered_by="watch", watch=record)
        backend.stop_watch(endpoint)
        time.sleep(1)

    assert record.outcome == "rolled_back" and record.errors >= 3 and "server error" in record.reason
    assert load.result is not None and load.result.requests > 100
    # Every failure of the new champion was answered by the warm previous one: no client saw one.
    assert (load.result.non2xx, load.result.errors) == (0, 0)
    assert restored.deployment == "blue" and backend.endpoints.read_traffic(endpoint.name) == {"blue": 100}
    assert backend.champion(name).version == old.version
    history = settle_watches(backend.history(endpoint.name))
    assert [(e.event, e.model_version, e.triggered_by) for e in history[-2:]] == [
        ("promoted", new.version, history[-2].triggered_by), ("rollback", old.version, "watch")]
    assert history[-2].watch == history[-1].watch == record
