"""The rollout contract, the same on every backend: where a new model lands, who serves after a promotion,
a rejection, a rollback, a lost champion or a failed deployment, and what the registry and the history say.

An unevaluated model never takes a live share of traffic; the champion keeps serving until a promotion.
"""

from __future__ import annotations

import pytest

from backends.errors import DeploymentError
from backends.domain.history import TAG_REASON, TAG_STATUS
from tests.contract.harnesses import Harness, report_for


def _promote_first(h: Harness, accuracy: float = 0.9):
    model = h.model(accuracy)
    endpoint = h.backend.deploy(model, h.spec)
    return model, h.backend.promote(endpoint, model, report_for(endpoint.name, endpoint.deployment, model, accuracy))


def test_first_deploy_serves_on_blue(harness: Harness) -> None:
    model = harness.model()
    endpoint = harness.backend.deploy(model, harness.spec)
    assert (endpoint.deployment, endpoint.model_version) == ("blue", model.version)
    assert harness.traffic() == {"blue": 100}
    assert harness.backend.champion(harness.model_name) is None  # serving is not being champion


def test_a_candidate_lands_beside_the_champion_with_no_traffic(harness: Harness) -> None:
    champion, _ = _promote_first(harness)
    candidate = harness.model()
    endpoint = harness.backend.deploy(candidate, harness.spec)
    assert endpoint.deployment == "green" and endpoint.model_version == candidate.version
    assert harness.traffic() == {"blue": 100}
    assert harness.deployments() == {"blue", "green"}
    assert harness.backend.champion(harness.model_name).version == champion.version


def test_promote_moves_traffic_then_the_champion_then_removes_the_old_deployment(harness: Harness) -> None:
    first, _ = _promote_first(harness)
    second = harness.model()
    endpoint = harness.backend.deploy(second, harness.spec)
    promoted = harness.backend.promote(endpoint, second, report_for(endpoint.name, "green", second, 0.93),
                                       reason="better")
    assert promoted.deployment == "green" and harness.traffic() == {"green": 100}
    assert harness.deployments() == {"green"}
    champion = harness.backend.champion(harness.model_name)
    assert champion.version == second.version and champion.tags[TAG_STATUS] == "champion"
    assert harness.backend.get_model(harness.model_name, first.version).tags[TAG_STATUS] == "retired"
    history = harness.backend.history(endpoint.name)
    assert [(e.event, e.model_version) for e in history] == [("promoted", first.version), ("promoted", second.version)]
    assert (history[-1].accuracy, history[-1].champion_accuracy, history[-1].reason) == (0.93, 0.9, "better")


def test_reject_keeps_the_champion_serving_and_removes_the_candidate(harness: Harness) -> None:
    first, _ = _promote_first(harness)
    second = harness.model()
    endpoint = harness.backend.deploy(second, harness.spec)
    harness.backend.reject(endpoint, second, "accuracy 0.70 < champion 0.90",
                           report=report_for(endpoint.name, "green", second, 0.7))
    assert harness.traffic() == {"blue": 100} and harness.deployments() == {"blue"}
    rejected = harness.backend.get_model(harness.model_name, second.version)
    assert rejected.tags[TAG_STATUS] == "rejected" and rejected.tags[TAG_REASON] == "accuracy 0.70 < champion 0.90"
    assert harness.backend.champion(harness.model_name).version == first.version
    last = harness.backend.history(endpoint.name)[-1]
    assert (last.event, last.model_version, last.accuracy) == ("rejected", second.version, 0.7)


def test_a_rejected_first_model_serves_nobody(harness: Harness) -> None:
    model = harness.model()
    endpoint = harness.backend.deploy(model, harness.spec)
    harness.backend.reject(endpoint, model, "below the floor")
    assert harness.traffic() == {} and harness.deployments() == set()
    assert harness.backend.champion(harness.model_name) is None
    assert harness.backend.get_model(harness.model_name, model.version).tags[TAG_STATUS] == "rejected"


def test_rollback_puts_the_previous_champion_back_through_a_promotion(harness: Harness) -> None:
    first, _ = _promote_first(harness)
    second = harness.model()
    candidate = harness.backend.deploy(second, harness.spec)
    harness.backend.promote(candidate, second, report_for(candidate.name, "green", second, 0.95))
    back = harness.backend.deploy(harness.backend.get_model(harness.model_name, first.version), harness.spec)
    assert back.deployment == "blue" and harness.traffic() == {"green": 100}  # evaluated before it serves
    harness.backend.promote(back, first, report_for(back.name, "blue", first, 0.9), event="rollback",
                            reason=f"rollback from v{second.version}")
    assert harness.traffic() == {"blue": 100} and harness.deployments() == {"blue"}
    assert harness.backend.champion(harness.model_name).version == first.version
    assert harness.backend.history(back.name)[-1].event == "rollback"


def test_when_both_colours_serve_a_new_model_is_refused_and_nothing_changes(harness: Harness) -> None:
    _promote_first(harness)
    second = harness.model()
    harness.backend.deploy(second, harness.spec)
    harness.set_traffic({"blue": 50, "green": 50})  # an operator's hand-made split
    third = harness.model()
    with pytest.raises(DeploymentError, match="both blue and green"):
        harness.backend.deploy(third, harness.spec)
    assert harness.traffic() == {"blue": 50, "green": 50}
    assert third.version not in {e.model_version for e in harness.backend.history(harness.spec.endpoint_name)}


def test_a_lost_champion_is_restored_before_the_candidate_lands(harness: Harness) -> None:
    first, endpoint = _promote_first(harness)
    harness.backend.teardown(endpoint.name)  # an operator stopped or deleted the endpoint
    second = harness.model()
    candidate = harness.backend.deploy(second, harness.spec)
    assert candidate.deployment == "green" and candidate.model_version == second.version
    assert harness.traffic() == {"blue": 100}  # the champion, restored; the candidate has no share
    assert harness.deployments() == {"blue", "green"}
    harness.backend.reject(candidate, second, "worse")
    assert harness.traffic() == {"blue": 100} and harness.deployments() == {"blue"}


def test_a_failed_deployment_leaves_traffic_and_deployments_as_they_were(harness: Harness) -> None:
    _promote_first(harness)
    harness.break_next_deployment()
    broken = harness.model()
    with pytest.raises(DeploymentError):
        harness.backend.deploy(broken, harness.spec)
    assert harness.traffic() == {"blue": 100} and harness.deployments() == {"blue"}


def test_a_failed_smoke_test_removes_the_candidate_and_keeps_the_champion_serving(harness: Harness) -> None:
    from backends.errors import EvaluationError

    first, _ = _promote_first(harness)
    second = harness.model()
    seen = []

    def smoke(endpoint) -> None:
        seen.append((endpoint.deployment, endpoint.model_version))
        raise EvaluationError("the candidate answered 500")

    with pytest.raises(EvaluationError):
        harness.policy.deploy(second, harness.spec, smoke_test=smoke)
    assert seen == [("green", second.version)]
    assert harness.traffic() == {"blue": 100} and harness.deployments() == {"blue"}
    assert harness.backend.champion(harness.model_name).version == first.version


def test_a_first_model_that_fails_its_smoke_test_serves_nobody(harness: Harness) -> None:
    from backends.errors import EvaluationError

    def smoke(endpoint) -> None:
        raise EvaluationError("the model answered 500")

    with pytest.raises(EvaluationError):
        harness.policy.deploy(harness.model(), harness.spec, smoke_test=smoke)
    assert harness.traffic() == {} and harness.deployments() == set()


def _paired_reports(endpoint, model, champion_right: int, candidate_right: int, rows: int = 40):
    """A candidate's and a champion's answers on the same ``rows`` rows (both classes, alternating): each
    gets its first ``*_right`` rows right, so the gate has a real paired comparison to make."""
    from backends.base import EvalReport

    labels = tuple(i % 2 for i in range(rows))

    def answered(right: int, version: str) -> EvalReport:
        predictions = tuple(y if i < right else 1 - y for i, y in enumerate(labels))
        return EvalReport(endpoint=endpoint.name, deployment=endpoint.deployment, model_version=version, rows=rows,
                          labels=labels, predictions=predictions, accuracy=right / rows, report_text="", report={},
                          confusion_matrix=((0, 0), (rows - right, right)), requests=1, latency_ms_p50=1.0)

    return answered(candidate_right, model.version), answered(champion_right, "champion")


def test_history_keeps_the_gates_figures_of_a_promotion_and_a_rejection(harness: Harness) -> None:
    from backends.domain.selection import decide_gate

    first, _ = _promote_first(harness)  # promoted without a gate: no figures
    second = harness.model()
    endpoint = harness.backend.deploy(second, harness.spec)
    candidate, champion = _paired_reports(endpoint, second, champion_right=30, candidate_right=18)
    rejected = decide_gate(candidate, champion, rule="paired")
    assert not rejected.promote
    harness.backend.reject(endpoint, second, rejected.reason, report=candidate, gate=rejected.figures())

    third = harness.model()
    endpoint = harness.backend.deploy(third, harness.spec)
    candidate, champion = _paired_reports(endpoint, third, champion_right=30, candidate_right=32)
    promoted = decide_gate(candidate, champion, rule="tolerance")
    assert promoted.promote
    harness.backend.promote(endpoint, third, candidate, reason=promoted.reason, gate=promoted.figures())

    history = harness.backend.history(endpoint.name)
    assert [(e.event, e.model_version) for e in history] == [
        ("promoted", first.version), ("rejected", second.version), ("promoted", third.version)]
    assert history[0].gate is None
    no, yes = history[1].gate, history[2].gate
    assert no is not None and yes is not None
    assert (no.rule, no.rows, no.candidate_accuracy, no.champion_accuracy) == ("paired", 40, 0.45, 0.75)
    assert no.difference == pytest.approx(-0.30) and no.p_worse is not None and no.p_worse < 0.05
    assert no.p_value == rejected.p_value and no.tolerance == 0.05
    assert (yes.rule, yes.rows, yes.candidate_accuracy, yes.champion_accuracy) == ("tolerance", 40, 0.8, 0.75)
    assert yes.difference == pytest.approx(0.05) and yes.p_value == promoted.p_value and yes.tolerance == 0.0
