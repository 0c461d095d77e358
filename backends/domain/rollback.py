"""Which earlier champion a rollback may restore: a pure decision over an endpoint's history."""

from __future__ import annotations

from collections.abc import Iterable

from backends.errors import DeploymentError
from backends.results import HistoryEntry

SERVED_EVENTS = frozenset({"promoted", "rollback"})


def served_versions(entries: Iterable[HistoryEntry], model_name: str) -> list[str]:
    """Every version of ``model_name`` that served on the endpoint as champion (promoted or rolled back
    to), each once, in the order it first served."""
    seen: dict[str, None] = {}
    for entry in entries:
        if entry.event in SERVED_EVENTS and entry.model_name == model_name:
            seen.setdefault(entry.model_version, None)
    return list(seen)


def checked_rollback_target(
    entries: Iterable[HistoryEntry], model_name: str, endpoint_name: str, target: str, current: str | None
) -> str:
    """``target`` when it is an earlier champion of ``model_name`` on ``endpoint_name`` that does not serve
    now; otherwise a DeploymentError that says which versions may be restored."""
    served = served_versions(entries, model_name)
    if target == current:
        raise DeploymentError(
            f"{model_name} v{target} is the champion serving on {endpoint_name} already: nothing to roll back. "
            "`heartflow history` lists the versions that served before it"
        )
    if target not in served:
        earlier = [v for v in served if v != current]
        which = ", ".join(f"v{v}" for v in earlier) if earlier else "none besides the current champion"
        raise DeploymentError(
            f"{model_name} v{target} never served on {endpoint_name} as champion, so it is not a rollback "
            f"target; the earlier champions there: {which} (`heartflow history` lists them)"
        )
    return target
