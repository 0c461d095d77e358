"""The deployment table one worker serves: the deployments of state.json it has loaded, and the traffic
split over those that loaded. Replaced whole (never mutated) when state.json changes, so a request always
sees one consistent table.
"""

from __future__ import annotations

import bisect
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backends.local.endpoint.state import DeploymentConfig, EndpointPaths, EndpointState, read_state
from src.scoring import ModelLoadError, Scorer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedDeployment:
    """A deployment as one worker holds it: its scorer, or why it could not load."""

    config: DeploymentConfig
    scorer: Scorer | None
    error: str | None = None


@dataclass(frozen=True)
class Table:
    """The deployments and traffic a worker serves now (replaced whole, never mutated)."""

    version: tuple[int, int, int] | None
    state: EndpointState | None
    deployments: Mapping[str, LoadedDeployment] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    cumulative: tuple[int, ...] = ()

    def pick(self) -> str | None:
        """A deployment drawn by the traffic weights, or None when nothing takes traffic."""
        if not self.cumulative:
            return None
        return self.names[bisect.bisect_right(self.cumulative, random.random() * self.cumulative[-1])]

    @property
    def ready(self) -> bool:
        return (
            self.state is not None
            and bool(self.deployments)
            and all(d.scorer is not None for d in self.deployments.values())
            and bool(self.cumulative)
        )


def state_version(path: Path) -> tuple[int, int, int] | None:
    """A cheap identity of state.json: os.replace gives every write a new inode."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def needs_loading(state: EndpointState | None, previous: Table) -> bool:
    """True when ``state`` has a deployment that ``previous`` does not hold loaded with the same configuration."""
    if state is None:
        return False
    for name, config in state.deployments.items():
        old = previous.deployments.get(name)
        if old is None or old.config != config or old.scorer is None:
            return True
    return False


def build_table(
    paths: EndpointPaths,
    previous: Table,
    state: EndpointState | None = None,
    version: tuple[int, int, int] | None = None,
) -> Table:
    """The table for ``state`` (read from state.json when not given), loading every deployment not already
    loaded with the same configuration."""
    if state is None:
        version = state_version(paths.state)
        state = read_state(paths)
    if state is None:
        return Table(version=version, state=None)
    loaded: dict[str, LoadedDeployment] = {}
    for name, config in state.deployments.items():
        old = previous.deployments.get(name)
        if old is not None and old.config == config and old.scorer is not None:
            loaded[name] = old
            continue
        started = time.perf_counter()
        try:
            scorer = Scorer.from_model_dir(Path(config.model_dir), max_rows=config.max_rows, label=name)
        except ModelLoadError as exc:
            logger.error("deployment %s failed to load: %s", name, exc)
            loaded[name] = LoadedDeployment(config=config, scorer=None, error=str(exc))
            continue
        logger.info(
            "deployment %s loaded: %s version %s in %.0f ms",
            name, config.model_name, config.model_version, (time.perf_counter() - started) * 1000,
        )
        loaded[name] = LoadedDeployment(config=config, scorer=scorer)
    names, cumulative, total = [], [], 0
    for name, weight in state.traffic.items():
        if weight > 0 and name in loaded and loaded[name].scorer is not None:
            total += weight
            names.append(name)
            cumulative.append(total)
    return Table(version=version, state=state, deployments=loaded, names=tuple(names), cumulative=tuple(cumulative))
