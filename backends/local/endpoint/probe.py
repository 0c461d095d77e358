"""Requests from the manager to its host on 127.0.0.1: one HTTP request, and the smoke request a new
deployment must pass before it counts as deployed."""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backends.errors import DeploymentError
from backends.local.endpoint.state import DEFAULT_HOST

DEPLOYMENT_HEADER = "azureml-model-deployment"


def http_request(
    port: int, method: str, path: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None,
    timeout_s: float = 5.0, host: str = DEFAULT_HOST,
) -> tuple[int, bytes, dict[str, str]]:
    """One request to the local host (stdlib, so no proxy settings apply to loopback)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def smoke_request(
    port: int, key: str, deployment: str, body: dict[str, Any], deadline: float, what: str, log: Path,
) -> None:
    """POST one valid record to ``deployment`` through the endpoint until it answers with one label, or
    raise DeploymentError naming ``what`` and the host's ``log``."""
    payload = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", DEPLOYMENT_HEADER: deployment}
    last = "no answer"
    while time.monotonic() < deadline:
        remaining = max(deadline - time.monotonic(), 0.5)
        try:
            status, answer, _ = http_request(port, "POST", "/score", body=payload, headers=headers, timeout_s=remaining)
        except OSError as exc:
            last = f"connection failed: {exc}"
            time.sleep(0.05)
            continue
        if status == 200:
            with contextlib.suppress(ValueError):
                labels = json.loads(answer)
                if isinstance(labels, list) and len(labels) == 1:
                    return
            last = f"200 with an unexpected body {answer[:200]!r}"
            break
        last = f"{status} {answer[:500].decode(errors='replace')}"
        if status not in (404, 503) or b'"deployment_state":"failed"' in answer:
            break
        time.sleep(0.05)
    raise DeploymentError(
        f"{what} did not pass its smoke request ({last}); previous deployments and traffic are kept; see {log}"
    )
