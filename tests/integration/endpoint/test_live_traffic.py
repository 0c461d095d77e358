"""The host's mirror and watch on a real endpoint: copies of live requests reach the candidate off the request
path and both answers come back joined by request id; a watched deployment's failures are counted and answered
by the warm previous champion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from backends.domain.shadow import summarize_shadow
from backends.local.endpoint import LocalEndpointManager
from backends.local.live_traffic import LocalLiveTraffic
from backends.results import Endpoint
from tests.faulty_models import save_failing_model
from tests.integration.endpoint.conftest import RECORD

pytestmark = pytest.mark.slow

LIVE_ONLY = dict(RECORD, thall=9)  # a value the holdout never holds: the faulty model raises on it


@pytest.fixture(scope="module")
def failing_model_dir(tmp_path_factory: pytest.TempPathFactory, heart_frame: pd.DataFrame) -> Path:
    return save_failing_model(heart_frame, tmp_path_factory.mktemp("faulty") / "model")


@pytest.fixture()
def host(tmp_path: Path, trained_model_dir: Path, failing_model_dir: Path) -> Iterator[tuple[LocalEndpointManager, str]]:
    manager = LocalEndpointManager(tmp_path, "live-test")
    common = dict(port=None, workers=1, max_rows=50, request_timeout_ms=5000)
    manager.deploy("blue", trained_model_dir, "heart-classifier", "1", **common)
    manager.deploy("green", failing_model_dir, "heart-classifier", "2", **common)
    try:
        yield manager, manager.key()
    finally:
        manager.stop()


def _endpoint(manager: LocalEndpointManager, deployment: str) -> Endpoint:
    status = manager.status()
    assert status is not None
    return Endpoint(name=manager.name, deployment=deployment, scoring_uri=status.scoring_uri, model_name="m",
                    model_version="1", key_hint="")


def _post(uri: str, key: str, body: object, **headers: str) -> requests.Response:
    return requests.post(uri, json=body, headers={"Authorization": f"Bearer {key}", **headers}, timeout=10)


def test_mirror_pairs_answers_by_request_id_and_counts_the_candidates_failures(host) -> None:
    manager, key = host
    live = LocalLiveTraffic(manager.paths.home)
    endpoint = _endpoint(manager, "blue")
    session = live.start_mirror(endpoint, "green", 100)
    statuses = []
    for i in range(40):
        record = LIVE_ONLY if i % 4 == 0 else RECORD
        statuses.append(_post(endpoint.scoring_uri, key, {"data": [record, RECORD]}, **{"x-request-id": f"req-{i}"}).status_code)
    # A request naming its deployment (an evaluation) is not mirrored, as on Azure.
    assert _post(endpoint.scoring_uri, key, {"data": [RECORD]}, **{"azureml-model-deployment": "blue",
                                                                  "x-request-id": "named"}).status_code == 200
    live.stop_mirror(endpoint)
    assert statuses == [200] * 40  # the champion answered every client
    import time

    deadline = time.monotonic() + 30  # the mirror process starts (loads the candidate), then scores the copies
    answers, dropped = live.mirrored_answers(endpoint, session)
    while len(answers) + 2 * dropped < 80 and time.monotonic() < deadline:
        time.sleep(0.2)
        answers, dropped = live.mirrored_answers(endpoint, session)
    figures = summarize_shadow(answers, 1.0, min_requests=10, dropped=dropped)
    assert {a.request_id for a in answers} == {f"req-{i}" for i in range(40)}
    assert figures.mirrored + dropped == 40 and figures.mirrored > 0
    assert figures.candidate_errors == sum(1 for a in answers if a.side == "candidate" and a.status == 500) > 0
    assert figures.champion_errors == 0 and figures.rows == 2 * (figures.mirrored - figures.candidate_errors)
    assert figures.candidate_p99_ms is not None and figures.champion_p99_ms is not None
    assert manager.status().traffic == {"blue": 100, "green": 0}


def test_watch_counts_failures_and_the_warm_previous_champion_answers_them(host) -> None:
    manager, key = host
    manager.set_traffic({"green": 100})  # the faulty model was promoted; blue is the previous champion, warm
    live = LocalLiveTraffic(manager.paths.home)
    endpoint = _endpoint(manager, "green")
    session = live.start_watch(endpoint, "green", "blue")
    answers = [_post(endpoint.scoring_uri, key, {"data": [LIVE_ONLY if i % 2 else RECORD]}) for i in range(20)]
    live.stop_watch(endpoint)
    import time

    time.sleep(1.0)
    sample = live.watch_sample(endpoint, session)
    assert [a.status_code for a in answers] == [200] * 20  # no client saw the failures
    assert (sample.requests, sample.errors, sample.fallbacks) == (20, 10, 10)
    # Without a watch, the faulty champion's failure reaches the client.
    assert _post(endpoint.scoring_uri, key, {"data": [LIVE_ONLY]}).status_code == 500
