"""Retries, timeouts and error translation at the Azure edge.

Transient failures (throttling, 5xx, dropped connections, including ``requests``' own ConnectionError and
Timeout, which do not inherit the builtin ones) are retried with exponential backoff through tenacity,
waiting at least what a ``Retry-After`` header asks. This is the ONE retry layer: the clients heartflow
builds have azure-core's pipeline retries switched off (``SDK_CLIENT_OPTIONS``), so a throttled call is
tried ``attempts`` times, not attempts x azure-core's ten. Everything else is translated once into
heartflow's error hierarchy with a message that says what happened, what to check and where the logs are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import RetryPolicy as _CoreRetryPolicy
from requests import ConnectionError as RequestsConnectionError
from requests import Timeout as RequestsTimeout
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from backends.errors import ConfigurationError, HeartflowError, TransientBackendError

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Passed to MLClient and BlobServiceClient: azure-core's pipeline would otherwise retry every request up
# to ten times beneath RetryPolicy.call, multiplying the attempts.
SDK_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 0}
_QUOTA_MARKERS = ("quota", "QuotaExceeded", "OutOfQuota", "InsufficientQuota", "exceeds the limit")


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Throttling, server errors and dropped connections; never auth, not-found or validation errors."""
    if isinstance(exc, (ClientAuthenticationError, ResourceNotFoundError, ResourceExistsError)):
        return False
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError,
                        RequestsConnectionError, RequestsTimeout)):
        return True
    if isinstance(exc, HttpResponseError):
        return status_of(exc) in TRANSIENT_STATUS
    return False


def retry_after_s(exc: BaseException | None) -> float | None:
    """What a ``Retry-After`` (or ``x-ms-retry-after-ms``) header of the failed response asks, in seconds."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        millis = headers.get("x-ms-retry-after-ms") or headers.get("retry-after-ms")
        if millis:
            return float(millis) / 1000.0
        value = headers.get("Retry-After") or headers.get("retry-after")
        return float(_CoreRetryPolicy().parse_retry_after(str(value))) if value else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried."""

    attempts: int = 5
    initial_s: float = 2.0
    max_s: float = 60.0
    sleep: Callable[[float], None] | None = None  # tests pass a no-op

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, but never shorter than the server's Retry-After."""
        backoff = wait_exponential_jitter(initial=self.initial_s, max=self.max_s)(state)
        asked = retry_after_s(state.outcome.exception() if state.outcome else None)
        return max(backoff, asked) if asked is not None else backoff

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` and retry transient failures; the last transient failure propagates as it is."""
        options: dict[str, Any] = {
            "stop": stop_after_attempt(self.attempts),
            "wait": self._wait,
            "retry": retry_if_exception(is_transient),
            "reraise": True,
            "before_sleep": lambda state: logger.warning(
                "%s: transient failure (%s), attempt %s of %s; retrying",
                what, _short(state.outcome.exception()), state.attempt_number, self.attempts,
            ),
        }
        if self.sleep is not None:
            options["sleep"] = self.sleep
        for attempt in Retrying(**options):
            with attempt:
                return fn(*args, **kwargs)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def listing(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """A paged listing read to the end inside the retry: the SDK's pagers fetch pages lazily, so a
        blip on page two would otherwise escape the retry."""
        return self.call(what, lambda: list(fn(*args, **kwargs)))


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown"
    status = status_of(exc)
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {first_line[:200]}"


def is_quota(exc: BaseException) -> bool:
    text = str(exc)
    return any(marker.lower() in text.lower() for marker in _QUOTA_MARKERS)


def translate(
    exc: BaseException, error: type[HeartflowError], what: str, *, check: str = "", logs: str = ""
) -> HeartflowError:
    """One heartflow error for an SDK failure: what failed, why in a word, what to check, where the logs are."""
    if isinstance(exc, HeartflowError):
        return exc
    if isinstance(exc, ClientAuthenticationError) or status_of(exc) in (401, 403):
        kind = "Azure refused the credentials or the permission"
        advice = (
            "check `az login` (or the service principal's AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET) "
            "and the roles in docs/azure.md (AzureML Data Scientist on the workspace, Storage Blob Data "
            "Contributor on the storage account)"
        )
        return ConfigurationError(_message(what, kind, exc, advice, logs))
    if is_quota(exc):
        kind = "a quota or limit of the subscription was reached"
        advice = "check the subscription's quota for the VM family (Azure portal > Quotas) or pick a smaller size"
    elif is_transient(exc):
        kind = "Azure kept failing with transient errors after every retry"
        advice = "check https://status.azure.com and try again later"
        return TransientBackendError(_message(what, kind, exc, advice, logs))
    elif isinstance(exc, ResourceNotFoundError):
        kind = "a resource it needs does not exist"
        advice = "check the names in the settings, or run `heartflow provision --backend azure`"
    elif isinstance(exc, AzureError):
        kind = "Azure returned an error"
        advice = ""
    else:
        kind = "the Azure SDK failed"
        advice = ""
    return error(_message(what, kind, exc, " ".join(a for a in (advice, check) if a), logs))


def _message(what: str, kind: str, exc: BaseException, advice: str, logs: str) -> str:
    parts = [f"{what} failed: {kind} ({_short(exc)})."]
    if advice:
        parts.append(f"Check: {advice}.")
    if logs:
        parts.append(f"Logs: {logs}.")
    return " ".join(parts)


def await_poller(poller: Any, timeout_s: float, what: str, error: type[HeartflowError], *, logs: str = "") -> Any:
    """Wait for a long-running operation at most ``timeout_s``; its result, or a clear error."""
    try:
        poller.wait(timeout=timeout_s)
        if not poller.done():
            raise error(
                f"{what} did not finish within {timeout_s:.0f} s; it may still be running on Azure. "
                f"Check its state in Azure ML Studio, then run again.{f' Logs: {logs}.' if logs else ''}"
            )
        return poller.result()
    except (AzureError, OSError) as exc:
        raise translate(exc, error, what, logs=logs) from exc
