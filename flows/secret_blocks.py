"""Azure secrets for scheduled runs from Prefect Secret blocks.

A deployment names blocks in its parameters (``spec.azure_secret_blocks``: setting -> block name, e.g.
``{"AZURE_STORAGE_CONNECTION_STRING": "heartflow-storage"}``), so a worker needs no secret in its
environment. The values are read here, in the flow, and go to the backend as SecretStr: the flow's
parameters hold only block names, and no value is logged. Backends know nothing of Prefect.
"""

from __future__ import annotations

from collections.abc import Mapping

from prefect.blocks.system import Secret
from pydantic import SecretStr

from backends.errors import ConfigurationError

# The Azure settings that are secrets, by field name and by the environment variable they replace.
SECRET_SETTINGS = {
    "storage_connection_string": "AZURE_STORAGE_CONNECTION_STRING",
    "client_secret": "AZURE_CLIENT_SECRET",
}
_BY_NAME = {**{f: f for f in SECRET_SETTINGS}, **{env.lower(): f for f, env in SECRET_SETTINGS.items()}}


def secrets_from_blocks(blocks: Mapping[str, str]) -> dict[str, SecretStr]:
    """{setting or its environment variable: Secret block name} -> {AzureSettings field: SecretStr}."""
    secrets: dict[str, SecretStr] = {}
    for setting, block in blocks.items():
        field = _BY_NAME.get(setting.lower())
        if field is None:
            known = ", ".join(f"{f} ({env})" for f, env in SECRET_SETTINGS.items())
            raise ConfigurationError(f"azure_secret_blocks: {setting!r} is not a secret Azure setting; known: {known}")
        try:
            secret = Secret.load(block, validate=True)
            # load is dispatched (sync here, a coroutine in async code): called from sync code it is the block
            assert isinstance(secret, Secret)
            value = secret.get()
        except ValueError as exc:
            raise ConfigurationError(
                f"azure_secret_blocks: no Secret block named {block!r} for {setting} on this Prefect server: create "
                f"it in the UI (Blocks -> Secret) or with Secret(value=...).save({block!r})"
            ) from exc
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"azure_secret_blocks: the Secret block {block!r} for {setting} must hold a non-empty string")
        secrets[field] = SecretStr(value)
    return secrets
