"""Failures a test injects into the in-memory backend through its constructor (never through global state):
the next call of a stage raises the error given, once."""

from __future__ import annotations

from dataclasses import dataclass, field

STAGES = frozenset({"upload", "sweep", "register", "deploy", "evaluate", "set_traffic", "teardown"})


@dataclass
class Faults:
    """Errors waiting for a stage's next call, in order."""

    pending: dict[str, list[BaseException]] = field(default_factory=dict)

    def fail_next(self, stage: str, error: BaseException) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}: one of {', '.join(sorted(STAGES))}")
        self.pending.setdefault(stage, []).append(error)

    def check(self, stage: str) -> None:
        """Raise the error waiting for ``stage``, if any."""
        waiting = self.pending.get(stage)
        if waiting:
            raise waiting.pop(0)
