"""The local real-time endpoint: an ASGI host serving src/scoring.py's Scorer, with blue/green deployments.

``LocalEndpointManager`` deploys, splits traffic, deletes and stops; ``serve_foreground`` runs the host in
the calling process (``heartflow serve``). Nothing here imports prefect.

The names are loaded on first use (PEP 562), so the host process, which imports ``server`` and ``app`` from
this package, does not pay for the manager's imports (pydantic specs, psutil) when it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backends.local.endpoint.manager import (
        DeploymentStatus,
        EndpointStatus,
        LocalEndpointManager,
        serve_foreground,
    )

__all__ = ["DeploymentStatus", "EndpointStatus", "LocalEndpointManager", "serve_foreground"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from backends.local.endpoint import manager

        return getattr(manager, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
