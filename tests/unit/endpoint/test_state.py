"""Endpoint state rules: traffic split, new deployments, key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from backends.local.endpoint.state import (
    KEY_ENV,
    DeploymentConfig,
    EndpointPaths,
    EndpointState,
    check_traffic,
    ensure_key,
    read_state,
    write_state,
)


def config(name: str) -> DeploymentConfig:
    return DeploymentConfig(name=name, model_dir="/m", model_name="heart-classifier", model_version="1")


def test_first_deployment_takes_all_traffic_next_takes_none() -> None:
    state = EndpointState(name="ep").with_deployment(config("blue"))
    assert dict(state.traffic) == {"blue": 100}
    state = state.with_deployment(config("green"))
    assert dict(state.traffic) == {"blue": 100, "green": 0}
    assert dict(state.with_deployment(config("blue")).traffic) == {"blue": 100, "green": 0}


@pytest.mark.parametrize(
    ("traffic", "message"),
    [({"blue": 60, "green": 60}, "sum to 100"), ({"red": 100}, "unknown deployment"), ({"blue": 100.5}, "whole percentage"),
     ({"blue": -10, "green": 110}, "whole percentage")],
)
def test_traffic_rules(traffic: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_traffic(traffic, {"blue": 1, "green": 1})


def test_state_round_trip(tmp_path: Path) -> None:
    paths = EndpointPaths(tmp_path, "ep")
    state = EndpointState(name="ep", port=8123, workers=2).with_deployment(config("blue"))
    write_state(paths, state)
    assert read_state(paths) == state


def test_key_file_is_private_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    paths = EndpointPaths(tmp_path, "ep")
    key = ensure_key(paths)
    assert len(key) >= 40 and ensure_key(paths) == key
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    monkeypatch.setenv(KEY_ENV, "from-the-environment")
    assert ensure_key(paths) == "from-the-environment"
    assert paths.key.read_text() == "from-the-environment"
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
