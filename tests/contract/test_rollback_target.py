"""`heartflow rollback --target`: which earlier champion may be restored, decided the same way on every
backend from its own history and registry, then restored through a promotion with event "rollback"."""

from __future__ import annotations

import pytest

from backends.errors import DeploymentError, RegistrationError
from flows.rollback import rollback_version
from tests.contract.harnesses import Harness, report_for


def _serve(h: Harness, model, accuracy: float, event: str = "promoted"):
    endpoint = h.backend.deploy(model, h.spec)
    return h.backend.promote(endpoint, model, report_for(endpoint.name, endpoint.deployment, model, accuracy), event=event)


def _four_versions(h: Harness):
    """v1 and v2 promoted, v3 rejected, v4 promoted: v4 serves, v1 and v2 served before it."""
    first, second, third, fourth = (h.model(a) for a in (0.85, 0.88, 0.7, 0.9))
    _serve(h, first, 0.85)
    _serve(h, second, 0.88)
    candidate = h.backend.deploy(third, h.spec)
    h.backend.reject(candidate, third, "worse", report=report_for(candidate.name, candidate.deployment, third, 0.7))
    endpoint = _serve(h, fourth, 0.9)
    return endpoint.name, (first, second, third, fourth)


def test_an_earlier_champion_is_restored_beside_the_serving_one_then_promoted(harness: Harness) -> None:
    name, (first, _, _, fourth) = _four_versions(harness)
    version = rollback_version(harness.backend, name, harness.model_name, fourth.version, first.version)
    assert version == first.version  # not the previous champion (v2): the one asked for
    before = harness.traffic()
    back = harness.backend.deploy(harness.backend.get_model(harness.model_name, version), harness.spec)
    assert back.model_version == first.version  # beside the serving model, with no traffic until evaluated
    assert harness.traffic() == before and back.deployment not in before
    restored = harness.backend.promote(back, first, report_for(back.name, back.deployment, first, 0.85),
                                       event="rollback", reason=f"rollback from v{fourth.version} to v{first.version}")
    assert harness.traffic() == {restored.deployment: 100} and harness.deployments() == {restored.deployment}
    assert harness.backend.champion(harness.model_name).version == first.version
    last = harness.backend.history(name)[-1]
    assert (last.event, last.model_version) == ("rollback", first.version)
    # v4 served before v1 came back: it is now a rollback target itself, v1 no longer is.
    assert rollback_version(harness.backend, name, harness.model_name, first.version, fourth.version) == fourth.version


def test_without_a_target_the_previous_champion_is_chosen(harness: Harness) -> None:
    name, (_, second, _, fourth) = _four_versions(harness)
    assert rollback_version(harness.backend, name, harness.model_name, fourth.version, None) == second.version


def test_a_version_that_never_served_is_refused_naming_those_that_did(harness: Harness) -> None:
    name, (first, second, third, fourth) = _four_versions(harness)
    with pytest.raises(DeploymentError) as caught:
        rollback_version(harness.backend, name, harness.model_name, fourth.version, third.version)
    message = str(caught.value)
    assert f"v{third.version} never served on {name}" in message and "`heartflow history`" in message
    assert f"v{first.version}, v{second.version}" in message and f"v{fourth.version}" not in message


def test_the_serving_version_is_refused(harness: Harness) -> None:
    name, (*_, fourth) = _four_versions(harness)
    with pytest.raises(DeploymentError, match=f"v{fourth.version} is the champion serving on {name} already"):
        rollback_version(harness.backend, name, harness.model_name, fourth.version, fourth.version)


def test_a_version_missing_from_the_registry_is_refused(harness: Harness) -> None:
    name, (*_, fourth) = _four_versions(harness)
    with pytest.raises(RegistrationError, match=f"cannot roll back {name} to {harness.model_name} v999"):
        rollback_version(harness.backend, name, harness.model_name, fourth.version, "999")
