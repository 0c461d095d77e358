"""The rollout is written once: promote, reject and champion live in ``Backend`` and reach the registry
through the policy's ``ChampionRegistry`` collaborator; the adapters supply primitives only. The behaviour
itself is the contract suite's (tests/contract), run against both backends."""

from __future__ import annotations

import pytest

from backends.azure.backend import AzureBackend
from backends.azure.deploy import AzureEndpoints
from backends.base import Backend
from backends.domain.rollout import RolloutPolicy
from backends.local.backend import LocalBackend
from backends.local.endpoints import LocalEndpoints


@pytest.mark.parametrize("adapter", [LocalBackend, AzureBackend])
@pytest.mark.parametrize("method", ["promote", "reject", "champion"])
def test_the_backend_level_rollout_is_written_once_in_the_base(adapter: type[Backend], method: str) -> None:
    assert method not in vars(adapter)
    assert getattr(adapter, method) is getattr(Backend, method)


@pytest.mark.parametrize("policy", [LocalEndpoints, AzureEndpoints])
@pytest.mark.parametrize("method", ["champion", "make_champion", "mark_rejected"])
def test_the_policy_reaches_the_registry_as_a_collaborator(policy: type[RolloutPolicy], method: str) -> None:
    assert not hasattr(RolloutPolicy, method)
    assert method not in vars(policy)


def test_champion_reads_the_policys_registry(tmp_path) -> None:
    backend = LocalBackend(tmp_path / "home")
    assert backend.rollout_policy().registry is backend.registry
    assert backend.champion("never-registered") is None
