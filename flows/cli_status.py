"""`heartflow status`'s consistency check: what does not agree on the endpoint, and who holds its rollout slot."""

from __future__ import annotations

from backends.domain.convergence import inconsistencies
from backends.local.backend import LocalBackend


def status_problems(local: LocalBackend, endpoint_name: str, model_name: str) -> tuple[str, ...]:
    """The endpoint's inconsistencies, then the rollout slot's holder when it is held (read from the configured
    Prefect API only: status never starts a temporary server for it)."""
    found = list(inconsistencies(local.rollout_policy(), endpoint_name, model_name))
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        from tasks.rollout import slot_holder

        holder = slot_holder("local", endpoint_name)
        if holder is not None:
            found.append(f"rollout slot held by {holder.holder} on {holder.host} (pid {holder.pid}) since "
                         f"{holder.acquired}, last heartbeat {holder.heartbeat}; a holder that is gone is reclaimed "
                         "by the next run")
    return tuple(found)
