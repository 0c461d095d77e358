"""A small JSON record of the Azure resources heartflow created, so ``teardown --all`` removes exactly
those (and never a workspace or cluster someone else made)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from backends.fileio import write_atomic

logger = logging.getLogger(__name__)

# The order teardown deletes in: dependants first, the workspace last.
TEARDOWN_ORDER: tuple[str, ...] = ("endpoint", "compute", "datastore", "environment", "container", "workspace")


@dataclass(frozen=True)
class CreatedResource:
    kind: str  # one of TEARDOWN_ORDER
    name: str
    scope: str  # subscription/resource group/workspace (or the storage account for a container)
    created_at: str = ""


class Ledger:
    """Append-only while creating; entries leave only when their resource is deleted."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[CreatedResource]:
        if not self.path.is_file():
            return []
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable ledger %s: %s", self.path, exc)
            return []
        return [CreatedResource(**item) for item in raw.get("created", [])]

    def _write(self, entries: list[CreatedResource]) -> None:
        payload = json.dumps({"created": [asdict(e) for e in entries]}, indent=2)
        write_atomic(self.path, payload.encode("utf-8"))  # never a half-written ledger

    def record(self, kind: str, name: str, scope: str) -> None:
        entries = self.entries()
        if any(e.kind == kind and e.name == name and e.scope == scope for e in entries):
            return
        entries.append(CreatedResource(kind, name, scope, datetime.now(timezone.utc).isoformat(timespec="seconds")))
        self._write(entries)
        logger.info("recorded created %s %s in %s", kind, name, self.path)

    def forget(self, kind: str, name: str, scope: str) -> None:
        entries = [e for e in self.entries() if not (e.kind == kind and e.name == name and e.scope == scope)]
        self._write(entries)

    def created(self, kind: str, name: str, scope: str) -> bool:
        return any(e.kind == kind and e.name == name and e.scope == scope for e in self.entries())

    def in_scope(self, scopes: set[str]) -> list[CreatedResource]:
        """Entries of these scopes, in teardown order."""
        picked = [e for e in self.entries() if e.scope in scopes]
        return sorted(picked, key=lambda e: TEARDOWN_ORDER.index(e.kind) if e.kind in TEARDOWN_ORDER else 99)
