"""What the next run repairs, holding the rollout slot, after a run was killed at a stage boundary: the same
on every backend (backends/domain/convergence.py). The crash is reproduced by stopping the policy where the
killed run stopped: after deploy, after the traffic switch, after the alias moved."""

from __future__ import annotations

from backends.domain.convergence import converge
from backends.domain.history import TAG_REASON, TAG_STATUS
from backends.domain.rollout import traffic_for_promotion
from tests.contract.harnesses import Harness, report_for


def _champion_and_candidate(h: Harness):
    first = h.model(0.9)
    endpoint = h.backend.deploy(first, h.spec)
    h.backend.promote(endpoint, first, report_for(endpoint.name, endpoint.deployment, first, 0.9))
    second = h.model(0.8)
    candidate = h.backend.deploy(second, h.spec)  # the run is killed here: green at 0 %, never decided
    return first, second, candidate


def _converge(h: Harness) -> tuple[str, ...]:
    return converge(h.policy, h.spec.endpoint_name, h.model_name, "flow run next-night")


def test_a_candidate_left_at_zero_percent_is_removed_and_recorded_as_abandoned(harness: Harness) -> None:
    first, second, candidate = _champion_and_candidate(harness)
    assert harness.deployments() == {"blue", "green"}
    actions = _converge(harness)
    assert len(actions) == 1 and "abandoned" in actions[0]
    assert harness.deployments() == {"blue"} and harness.traffic() == {"blue": 100}
    tags = harness.backend.get_model(harness.model_name, second.version).tags
    assert tags[TAG_STATUS] == "rejected" and tags[TAG_REASON].startswith("abandoned: deployed on green at 0 %")
    history = harness.backend.history(candidate.name)
    assert [(e.event, e.model_version) for e in history] == [("promoted", first.version), ("abandoned", second.version)]
    assert harness.backend.champion(harness.model_name).version == first.version
    assert _converge(harness) == ()  # converged: a second look changes nothing


def test_a_promotion_cut_short_before_the_alias_moved_goes_back_to_the_champion(harness: Harness) -> None:
    first, second, candidate = _champion_and_candidate(harness)
    harness.set_traffic(traffic_for_promotion(["blue", "green"], "green"))  # killed after the traffic switch
    assert harness.traffic() == {"green": 100}
    actions = _converge(harness)
    assert "promotion cut short" in actions[0]
    assert harness.traffic() == {"blue": 100} and harness.deployments() == {"blue"}
    assert harness.backend.champion(harness.model_name).version == first.version
    assert harness.backend.get_model(harness.model_name, second.version).tags[TAG_STATUS] == "rejected"
    assert [e.event for e in harness.backend.history(candidate.name)] == ["promoted", "abandoned"]


def test_a_promotion_cut_short_after_the_alias_moved_is_finished_and_recorded(harness: Harness) -> None:
    first, second, candidate = _champion_and_candidate(harness)
    harness.set_traffic(traffic_for_promotion(["blue", "green"], "green"))
    harness.policy.registry.make_champion(second, 0.8)  # killed after the alias, before cleanup and history
    actions = _converge(harness)
    assert harness.traffic() == {"green": 100} and harness.deployments() == {"green"}
    assert harness.backend.champion(harness.model_name).version == second.version
    assert harness.backend.get_model(harness.model_name, first.version).tags[TAG_STATUS] == "retired"
    history = harness.backend.history(candidate.name)
    assert [(e.event, e.model_version) for e in history] == [("promoted", first.version), ("promoted", second.version)]
    assert "completed" in history[-1].reason and len(actions) == 2


def test_a_healthy_endpoint_is_left_alone(harness: Harness) -> None:
    first = harness.model(0.9)
    endpoint = harness.backend.deploy(first, harness.spec)
    assert _converge(harness) == ()  # a first deploy serving, not yet promoted: nothing crashed
    harness.backend.promote(endpoint, first, report_for(endpoint.name, endpoint.deployment, first, 0.9))
    assert _converge(harness) == () and harness.traffic() == {"blue": 100}


def test_a_rerun_adopts_its_own_version_left_at_zero_percent(harness: Harness) -> None:
    """A run killed after deploy is rerun on the same data: registration gives it the same version, which it
    is about to deploy again. Converging removes the old deployment but does not abandon the version."""
    first, second, candidate = _champion_and_candidate(harness)
    actions = converge(harness.policy, harness.spec.endpoint_name, harness.model_name, "flow run rerun", second)
    assert len(actions) == 1 and "this run deploys and decides it" in actions[0]
    assert harness.deployments() == {"blue"}
    assert harness.backend.get_model(harness.model_name, second.version).tags[TAG_STATUS] == "candidate"
    assert [e.event for e in harness.backend.history(candidate.name)] == ["promoted"]
