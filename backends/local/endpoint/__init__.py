"""The local real-time endpoint: an ASGI host serving src/scoring.py's Scorer, with blue/green deployments.

``LocalEndpointManager`` deploys, splits traffic, deletes and stops; ``serve_foreground`` runs the host in
the calling process (``heartflow serve``). Nothing here imports prefect.
"""

from backends.local.endpoint.manager import (
    DeploymentStatus,
    EndpointStatus,
    LocalEndpointManager,
    serve_foreground,
)

__all__ = ["DeploymentStatus", "EndpointStatus", "LocalEndpointManager", "serve_foreground"]
