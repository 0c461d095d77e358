"""The shadow and watch contract, the same on every backend: a mirror copies live requests to the candidate
without moving traffic (Azure: at most 50 %), a shadow's figures are kept with the gate's decision, a watched
promotion keeps the previous deployment warm at 0 %, and the watch ends in its removal or in a rollback
promotion of the warm deployment, by "watch"."""

from __future__ import annotations

import dataclasses

import pytest

from backends.domain.shadow import LiveTraffic, ServedAnswer, settle_watches, summarize_shadow
from backends.errors import DeploymentError
from backends.results import WatchRecord
from tests.contract.harnesses import Harness, report_for


def _champion_and_candidate(h: Harness):
    first = h.model(0.9)
    endpoint = h.backend.deploy(first, h.spec)
    h.backend.promote(endpoint, first, report_for(endpoint.name, endpoint.deployment, first, 0.9))
    second = h.model(0.91)
    return first, second, h.backend.deploy(second, h.spec)


def _figures(errors: int):
    answers = []
    for i in range(60):
        answers.append(ServedAnswer(f"r{i}", "champion", 200, 1.0, ("1",)))
        answers.append(ServedAnswer(f"r{i}", "candidate", 500 if i < errors else 200, 1.0, () if i < errors else ("1",)))
    return summarize_shadow(answers, 20, 50)


def test_a_mirror_copies_live_requests_to_the_candidate_only_and_keeps_a_rejections_figures(harness: Harness) -> None:
    _, second, endpoint = _champion_and_candidate(harness)
    backend = harness.backend
    assert isinstance(backend, LiveTraffic)
    with pytest.raises(DeploymentError, match="live traffic"):  # never to a deployment that serves
        backend.start_mirror(dataclasses.replace(endpoint, deployment="blue"), "blue", 10)
    backend.start_mirror(endpoint, endpoint.deployment, 100)
    expected = 50 if backend.name == "azure" else 100  # Azure mirrors at most 50 % of an endpoint's traffic
    assert harness.mirror() == {"green": expected} and harness.traffic() == {"blue": 100}
    backend.stop_mirror(endpoint)
    assert harness.mirror() == {} and harness.traffic() == {"blue": 100}
    backend.stop_mirror(endpoint)  # idempotent

    figures = _figures(errors=6)
    backend.reject(endpoint, second, "shadow: the candidate failed 6 of 60 mirrored live requests",
                   report=report_for(endpoint.name, "green", second, 0.91), shadow=figures)
    last = backend.history(endpoint.name)[-1]
    assert last.event == "rejected" and last.shadow == figures and last.shadow.candidate_errors == 6
    assert harness.traffic() == {"blue": 100} and harness.deployments() == {"blue"}


def test_a_watched_promotion_keeps_the_old_deployment_warm_until_the_watch_passes(harness: Harness) -> None:
    _, second, endpoint = _champion_and_candidate(harness)
    backend = harness.backend
    promoted = backend.promote(endpoint, second, report_for(endpoint.name, "green", second, 0.91),
                               shadow=_figures(errors=0), watch=WatchRecord("watching", 30))
    assert harness.traffic() == {"green": 100} and harness.deployments() == {"blue", "green"}
    passed = WatchRecord("passed", 30, 120, 0, 1.5, "watch passed: 120 live request(s), 0 server error(s) in 30 s")
    backend.rollout_policy().end_watch(promoted, second, passed)
    assert harness.traffic() == {"green": 100} and harness.deployments() == {"green"}
    history = settle_watches(backend.history(endpoint.name))
    assert (history[-1].event, history[-1].triggered_by, history[-1].watch) == ("watch-passed", "watch", passed)
    assert history[-2].event == "promoted" and history[-2].watch == passed and history[-2].shadow.mirrored == 60


def test_a_watch_rollback_promotes_the_warm_deployment_back_by_watch(harness: Harness) -> None:
    first, second, endpoint = _champion_and_candidate(harness)
    backend = harness.backend
    backend.promote(endpoint, second, report_for(endpoint.name, "green", second, 0.91), watch=WatchRecord("watching", 30))
    rolled = WatchRecord("rolled_back", 30, 80, 9, 2.0, "watch: the new champion answered 9 of 80 live requests "
                                                           "with a server error")
    restored = dataclasses.replace(endpoint, deployment="blue", model_version=first.version)
    backend.promote(restored, first, report_for(endpoint.name, "blue", first, 0.9), event="rollback",
                    reason=rolled.reason, triggered_by="watch", watch=rolled)
    assert harness.traffic() == {"blue": 100} and harness.deployments() == {"blue"}
    assert backend.champion(harness.model_name).version == first.version
    history = settle_watches(backend.history(endpoint.name))
    assert [(e.event, e.model_version) for e in history[-2:]] == [("promoted", second.version), ("rollback", first.version)]
    assert history[-1].triggered_by == "watch" and history[-1].watch == rolled and history[-2].watch == rolled
