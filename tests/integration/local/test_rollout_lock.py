"""The local rollout lock: one rollout per endpoint and home, released when its holder ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.errors import DeploymentError
from backends.local.backend import LocalBackend


def test_a_second_rollout_waits_then_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    first, second = LocalBackend(tmp_path), LocalBackend(tmp_path)
    with first.rollout_lock("lock-check"):
        with pytest.raises(DeploymentError, match="another run is rolling out to endpoint lock-check"):
            with second.rollout_lock("lock-check", timeout_s=0.6):
                pass
        with second.rollout_lock("other-endpoint", timeout_s=0.6):  # other endpoints are independent
            pass
    with second.rollout_lock("lock-check", timeout_s=0.6):  # released with its holder
        pass
