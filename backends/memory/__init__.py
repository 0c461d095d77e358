"""The in-memory backend: a third implementation of the Backend interface that keeps everything in the
process (scikit-learn models trained in place, a registry, endpoints with deployments and a traffic split,
the history). It runs the flow's every branch in seconds, and passes the same rollout contract as the local
and Azure backends (tests/contract). Not offered to users: nothing it holds outlives the process."""

from backends.memory.backend import InMemoryBackend
from backends.memory.faults import Faults

__all__ = ["Faults", "InMemoryBackend"]
