"""Maps a backend name to its class. The Azure SDK is imported only when the azure backend is asked for,
so the local backend runs without Azure packages configured or credentials present."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backends.base import DEFAULT_MODEL_NAME, Backend, Provisioner
from backends.errors import ConfigurationError
from backends.domain.spec import PipelineSpec

BACKENDS = ("local", "azure")


def create_backend(
    name: str, *, home: str | Path | None = None, overrides: dict[str, Any] | None = None,
    model_name: str = DEFAULT_MODEL_NAME, tracking_uri: str | None = None, artifact_root: str | None = None,
) -> Backend:
    if name == "local":
        from backends.local.backend import LocalBackend

        return LocalBackend(home, tracking_uri=tracking_uri, artifact_root=artifact_root)
    if name == "azure":
        from backends.azure import create_azure_backend

        return create_azure_backend(overrides or {}, model_name=model_name)
    raise ConfigurationError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


def backend_for_spec(spec: PipelineSpec, secrets: Mapping[str, Any] | None = None) -> Backend:
    """The backend a pipeline spec asks for, with the spec's endpoint settings passed to Azure, and
    ``secrets`` (Azure setting -> SecretStr, e.g. read from Prefect blocks by the flow) winning."""
    overrides: dict[str, Any] = {}
    if spec.backend == "azure":
        overrides = {
            "endpoint_name": spec.deploy.endpoint_name,
            "instance_type": spec.deploy.instance_type,
            **spec.azure_overrides,
            **(secrets or {}),
        }
    return create_backend(spec.backend, home=spec.home, overrides=overrides, model_name=spec.model_name,
                          tracking_uri=spec.tracking_uri, artifact_root=spec.artifact_root)


def provisioner_for_spec(spec: PipelineSpec) -> Provisioner:
    """The spec's backend as a Provisioner (plan, provision, teardown_all); ConfigurationError when the
    backend has no resources to provision (the local backend)."""
    backend = backend_for_spec(spec)
    if not isinstance(backend, Provisioner):
        raise ConfigurationError(
            f"the {backend.name} backend has nothing to plan, provision or tear down beyond an endpoint; "
            "use --backend azure"
        )
    return backend
