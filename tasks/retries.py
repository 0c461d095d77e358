"""Which failures a task retries: transient ones (throttling, 5xx, dropped connections), never a
validation or configuration error. Prefect 3 calls ``retry_condition_fn(task, task_run, state)`` with a
Failed state that holds the exception."""

from __future__ import annotations

from typing import Any

import requests

from backends.errors import (
    ConfigurationError,
    DataValidationError,
    HeartflowError,
    PromotionRejected,
    TransientBackendError,
)

TRANSIENT = (TransientBackendError, requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)
NEVER = (DataValidationError, ConfigurationError, PromotionRejected, ValueError, TypeError, KeyError)

# Backoff between attempts (seconds), with Prefect's jitter on top: 2 s, 10 s, 30 s.
BACKOFF_S: list[float] = [2, 10, 30]
JITTER = 0.3


def exception_of(state: Any) -> BaseException | None:
    """The exception a Failed state carries (Prefect keeps it as the state's data)."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be read is itself the answer
        return exc
    return result if isinstance(result, BaseException) else None


def is_transient(exc: BaseException | None) -> bool:
    """True when ``exc``, or an error it was raised from, is transient, and none on the way is final.

    Adapters translate SDK errors with ``raise ... from exc``, so an EvaluationError raised from a
    ConnectionError is transient while a DataValidationError never is."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, NEVER):
            return False
        if isinstance(exc, TRANSIENT):
            return True
        if isinstance(exc, HeartflowError) and exc.__cause__ is None:
            return False
        exc = exc.__cause__ or exc.__context__
    return False


def retry_only_transient(task: Any, task_run: Any, state: Any) -> bool:  # noqa: ARG001 - Prefect's signature
    """Prefect retry condition: retry transient failures only."""
    return is_transient(exception_of(state))
