"""Maps a backend name to its class. The Azure SDK is imported only when the azure backend is asked for,
so the local backend runs without Azure packages configured or credentials present."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.base import Backend
from backends.errors import ConfigurationError

BACKENDS = ("local", "azure")


def create_backend(
    name: str, *, home: str | Path | None = None, overrides: dict[str, Any] | None = None,
    model_name: str = "heart-classifier",
) -> Backend:
    if name == "local":
        from backends.local.backend import LocalBackend

        return LocalBackend(home)
    if name == "azure":
        from backends.azure import create_azure_backend

        return create_azure_backend(overrides or {}, model_name=model_name)
    raise ConfigurationError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
