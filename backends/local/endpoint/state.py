"""On-disk state of a local endpoint: its deployments, traffic, key and runtime files.

Everything lives in ``<home>/endpoints/<name>/``:

    state.json    deployments (name -> model folder, model name and version, limits) and the traffic split;
                  written atomically (temp file + os.replace), so a worker never reads half a file
    key           the endpoint key, mode 0600
    server.json   the running host's pid, host and port (removed on a clean stop)
    server.log    the host's JSON log lines (access lines included)
    live/<id>/    each worker's record of a mirror or watch session (``backends.local.endpoint.live``)
    lock          serializes managers that change the endpoint
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from backends.fileio import write_atomic
from backends.local.locks import file_lock

KEY_ENV = "HEARTFLOW_ENDPOINT_KEY"
ENDPOINT_DIR_ENV = "HEARTFLOW_ENDPOINT_DIR"
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class EndpointPaths:
    """The files of endpoint ``name`` under ``home``."""

    home: Path
    name: str

    # Cached: the host stats state.json on every request, and building a Path costs several microseconds.
    @cached_property
    def root(self) -> Path:
        return Path(self.home) / "endpoints" / self.name

    @cached_property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def key(self) -> Path:
        return self.root / "key"

    @property
    def runtime(self) -> Path:
        return self.root / "server.json"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    def live(self, session: str) -> Path:
        """Where the workers write what they recorded of live traffic for one mirror or watch session."""
        return self.root / "live" / session

    @classmethod
    def from_root(cls, root: Path) -> EndpointPaths:
        root = Path(root)
        return cls(home=root.parent.parent, name=root.name)


@dataclass(frozen=True)
class DeploymentConfig:
    """One named deployment: the model it serves and its limits."""

    name: str
    model_dir: str
    model_name: str
    model_version: str
    max_rows: int = 1000
    request_timeout_ms: int = 5000


@dataclass(frozen=True)
class LiveConfig:
    """What the host records of live traffic (``backends.local.endpoint.live``): a mirror of requests to a
    candidate deployment (``mirror``), or a watch of the serving deployment with a warm fallback (``watch``)."""

    kind: str  # "mirror" | "watch"
    deployment: str  # mirror: the candidate that gets copies; watch: the new champion watched
    session: str  # the folder <root>/live/<session>/ the workers write to
    percent: int = 100  # mirror: the share of live requests copied
    fallback: str = ""  # watch: the previous champion, warm at 0 %, that answers what the new one fails


@dataclass(frozen=True)
class EndpointState:
    """What the endpoint serves; every worker of the host follows this file."""

    name: str
    deployments: Mapping[str, DeploymentConfig] = field(default_factory=dict)
    traffic: Mapping[str, int] = field(default_factory=dict)
    host: str = DEFAULT_HOST
    port: int | None = None
    workers: int = 1
    max_body_bytes: int = 1 << 20
    mirror: LiveConfig | None = None
    watch: LiveConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "deployments", MappingProxyType(dict(self.deployments)))
        object.__setattr__(self, "traffic", MappingProxyType({k: int(v) for k, v in self.traffic.items()}))

    def with_deployment(self, deployment: DeploymentConfig) -> EndpointState:
        """Add or replace ``deployment``: it keeps its traffic if it had some (as an Azure deployment
        updated in place does), takes 0 % while another deployment serves, and 100 % when nothing serves.
        The rollout policy (``backends.domain.rollout``) never replaces a deployment that serves beside
        another one, so a new model never inherits a live share this way."""
        deployments = dict(self.deployments)
        deployments[deployment.name] = deployment
        if any(w > 0 for w in self.traffic.values()):
            traffic = dict(self.traffic)
            traffic.setdefault(deployment.name, 0)
        else:
            traffic = {n: (100 if n == deployment.name else 0) for n in deployments}
        return replace(self, deployments=deployments, traffic=traffic)

    def without_deployment(self, name: str) -> EndpointState:
        deployments = {n: d for n, d in self.deployments.items() if n != name}
        traffic = {n: w for n, w in self.traffic.items() if n != name}
        # A mirror or watch that names the deleted deployment ends with it.
        mirror = None if self.mirror and name in (self.mirror.deployment, self.mirror.fallback) else self.mirror
        watch = None if self.watch and name in (self.watch.deployment, self.watch.fallback) else self.watch
        return replace(self, deployments=deployments, traffic=traffic, mirror=mirror, watch=watch)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "deployments": {n: asdict(d) for n, d in self.deployments.items()},
            "traffic": dict(self.traffic),
            "host": self.host,
            "port": self.port,
            "workers": self.workers,
            "max_body_bytes": self.max_body_bytes,
            "mirror": asdict(self.mirror) if self.mirror else None,
            "watch": asdict(self.watch) if self.watch else None,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> EndpointState:
        deployments = {n: DeploymentConfig(**d) for n, d in raw.get("deployments", {}).items()}
        return cls(
            name=str(raw["name"]),
            deployments=deployments,
            traffic=raw.get("traffic", {}),
            host=str(raw.get("host", DEFAULT_HOST)),
            port=raw.get("port"),
            workers=int(raw.get("workers", 1)),
            max_body_bytes=int(raw.get("max_body_bytes", 1 << 20)),
            mirror=LiveConfig(**raw["mirror"]) if raw.get("mirror") else None,
            watch=LiveConfig(**raw["watch"]) if raw.get("watch") else None,
        )


def check_traffic(traffic: Mapping[str, int], deployments: Mapping[str, Any]) -> None:
    """Azure's rule: known deployments, whole percentages from 0 to 100, summing to 0 or 100."""
    unknown = sorted(set(traffic) - set(deployments))
    if unknown:
        raise ValueError(f"traffic names unknown deployment(s) {', '.join(unknown)}; known: {', '.join(sorted(deployments)) or 'none'}")
    for name, weight in traffic.items():
        if type(weight) is not int or not 0 <= weight <= 100:
            raise ValueError(f"traffic for {name} must be a whole percentage from 0 to 100, got {weight!r}")
    total = sum(traffic.values())
    if total not in (0, 100):
        raise ValueError(f"traffic must sum to 100 (or 0), got {total}")


def write_json_atomic(path: Path, payload: Mapping[str, Any], mode: int = 0o644) -> None:
    """Write ``payload`` so that a reader sees the old file or the new one, never a mix."""
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True).encode("utf-8"), mode)


def read_state(paths: EndpointPaths) -> EndpointState | None:
    try:
        raw = json.loads(paths.state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return EndpointState.from_json(raw)


def write_state(paths: EndpointPaths, state: EndpointState) -> None:
    write_json_atomic(paths.state, state.to_json())


def read_runtime(paths: EndpointPaths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.runtime.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def ensure_key(paths: EndpointPaths) -> str:
    """HEARTFLOW_ENDPOINT_KEY when set (kept in the key file), else the key file's, else a new random key.

    The file is created with mode 0600 and never passed on a command line."""
    wanted = os.environ.get(KEY_ENV, "").strip()
    if not wanted:
        try:
            existing = paths.key.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            return existing
        wanted = secrets.token_urlsafe(32)
    write_atomic(paths.key, wanted.encode("utf-8"), mode=0o600)
    return wanted


def read_key(paths: EndpointPaths) -> str:
    return paths.key.read_text(encoding="utf-8").strip()


@contextlib.contextmanager
def locked(paths: EndpointPaths) -> Iterator[None]:
    """An exclusive lock on the endpoint, so two managers never interleave their changes."""
    with file_lock(paths.lock):
        yield
