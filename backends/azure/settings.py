"""Azure settings, read the way the Azure tools read them.

Sources, strongest first: explicit overrides (CLI flags), environment variables, a ``.env`` file, the
SDK's ``.azureml/config.json`` (searched from the working directory upwards), then the tutorial's defaults.
Nothing is required up front: each stage asks for what it needs (``require``), and a missing setting is
one ConfigurationError naming every missing variable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from backends.client.blob import blob_service_from_connection_string
from backends.errors import ConfigurationError

# What each stage needs. "storage" is satisfied by a connection string, an account URL, or (by default)
# the workspace, whose default blob datastore then holds the data.
Need = Literal["workspace", "storage", "location"]
StorageMode = Literal["connection_string", "account_url", "workspace"]

_WORKSPACE_FIELDS: dict[str, str] = {
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "resource_group": "AZURE_RESOURCE_GROUP",
    "workspace_name": "AZUREML_WORKSPACE_NAME",
}
_STORAGE_HINT = (
    "AZURE_SUBSCRIPTION_ID + AZURE_RESOURCE_GROUP + AZUREML_WORKSPACE_NAME (the workspace's default datastore), "
    "or AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL"
)
_CONFIG_JSON_KEYS: dict[str, str] = {
    "subscription_id": "subscription_id",
    "resource_group": "resource_group",
    "workspace_name": "workspace_name",
}


def _env(*names: str) -> AliasChoices:
    """Accept the Azure tools' variable name and the field's own name (for overrides)."""
    return AliasChoices(*names)


class AzureSettings(BaseSettings):
    """Every Azure setting heartflow reads. Secrets are SecretStr; ``repr`` never shows them."""

    model_config = SettingsConfigDict(
        env_prefix="HEARTFLOW_AZURE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
    )

    # The workspace (AZURE_* names as the Azure CLI and SDK samples use them).
    subscription_id: str | None = Field(default=None, validation_alias=_env("AZURE_SUBSCRIPTION_ID", "subscription_id"))
    resource_group: str | None = Field(default=None, validation_alias=_env("AZURE_RESOURCE_GROUP", "resource_group"))
    workspace_name: str | None = Field(default=None, validation_alias=_env("AZUREML_WORKSPACE_NAME", "workspace_name"))
    location: str | None = Field(
        default=None, validation_alias=_env("AZURE_LOCATION", "location"),
        description="Region; needed only to create a workspace",
    )
    config_path: Path | None = Field(
        default=None, validation_alias=_env("AZUREML_CONFIG_PATH", "config_path"),
        description="An .azureml/config.json; default: searched from the working directory upwards",
    )

    # Storage overrides: a connection string, or an account URL used with DefaultAzureCredential. Without
    # either, the training split goes to the workspace's default blob datastore.
    storage_connection_string: SecretStr | None = Field(
        default=None, validation_alias=_env("AZURE_STORAGE_CONNECTION_STRING", "storage_connection_string")
    )
    storage_account_url: str | None = Field(
        default=None, validation_alias=_env("AZURE_STORAGE_ACCOUNT_URL", "storage_account_url")
    )
    # A service principal's secret (with AZURE_TENANT_ID and AZURE_CLIENT_ID); without it, DefaultAzureCredential.
    tenant_id: str | None = Field(default=None, validation_alias=_env("AZURE_TENANT_ID", "tenant_id"))
    client_id: str | None = Field(default=None, validation_alias=_env("AZURE_CLIENT_ID", "client_id"))
    client_secret: SecretStr | None = Field(default=None, validation_alias=_env("AZURE_CLIENT_SECRET", "client_secret"))
    container: str = "data4ml"
    blob_prefix: str = "heartflow/train"
    datastore_name: str = "heartflowdata"
    data_asset_name: str = "heartflow-train"

    # Compute, environment, experiment (HEARTFLOW_AZURE_<FIELD> in the environment).
    compute: str = "heartclassifycluster"
    compute_size: str = "Standard_DS3_v2"
    compute_max_nodes: int = Field(default=4, ge=1)
    compute_idle_seconds: int = Field(default=120, ge=0)
    environment_name: str = "heartflow-sklearn"
    environment_image: str = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
    experiment_name: str = "heartflow"

    # Endpoint: the two blue/green deployment names; the endpoint name and instance type come from the
    # DeploySpec, and an override here (a CLI flag) wins over the spec.
    endpoint_name: str | None = None
    instance_type: str | None = None
    blue_deployment: str = "blue"
    green_deployment: str = "green"

    # Timeouts (seconds) and retries.
    http_timeout_s: float = Field(default=60.0, gt=0, description="Connect/read timeout of one request")
    operation_timeout_s: float = Field(default=900.0, gt=0, description="Create/update/delete of one resource")
    deployment_timeout_s: float = Field(default=1800.0, gt=0, description="A new deployment becoming ready")
    workspace_timeout_s: float = Field(default=1800.0, gt=0)
    sweep_timeout_s: float = Field(default=4 * 3600.0, gt=0, description="Following a sweep when the spec sets no timeout")
    poll_interval_s: float = Field(default=30.0, ge=0)
    retry_attempts: int = Field(default=5, ge=1)
    retry_initial_s: float = Field(default=2.0, ge=0)
    retry_max_s: float = Field(default=60.0, ge=0)

    ledger_path: Path = Field(
        default=Path(".heartflow/azure-created.json"), description="Where heartflow records what it created"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, AzureMLConfigJsonSource(settings_cls, init_settings, env_settings, dotenv_settings)

    # --- what a stage needs ---------------------------------------------------------------------

    def missing(self, needs: Iterable[Need]) -> list[str]:
        """The variables a stage with these needs still lacks, in a stable order."""
        missing: list[str] = []
        wanted = set(needs)
        if "workspace" in wanted:
            missing += [env for field, env in _WORKSPACE_FIELDS.items() if not getattr(self, field)]
        if ("storage" in wanted and self.storage_mode == "workspace"
                and any(not getattr(self, field) for field in _WORKSPACE_FIELDS)):
            missing.append(_STORAGE_HINT)
        if "location" in wanted and not self.location:
            missing.append("AZURE_LOCATION")
        return missing

    def require(self, *needs: Need, stage: str) -> None:
        """Raise one ConfigurationError naming every variable ``stage`` needs and lacks."""
        missing = self.missing(needs)
        if missing:
            raise ConfigurationError(
                f"the Azure {stage} stage needs settings that are not set: {', '.join(missing)}. "
                "Set them in the environment or in a .env file (the workspace ones may also come from "
                ".azureml/config.json); see docs/azure.md."
            )

    @property
    def storage_mode(self) -> StorageMode:
        """Where the training split goes: an override account, or the workspace's default datastore."""
        if self.storage_connection_string is not None:
            return "connection_string"
        if self.storage_account_url:
            return "account_url"
        return "workspace"

    @property
    def storage_account_name(self) -> str | None:
        """The account name of an override (None in workspace mode), parsed by azure-storage-blob itself,
        so every form the SDK accepts (``UseDevelopmentStorage=true``, ``BlobEndpoint=...``, SAS) works."""
        if self.storage_mode == "workspace":
            return None
        return storage_account(self)[0]

    def describe(self) -> dict[str, str]:
        """A loggable view: secrets shown as set/unset only."""
        view: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                view[name] = "<set>"
            elif value is None:
                view[name] = "<unset>"
            else:
                view[name] = str(value)
        return view


def storage_account(settings: AzureSettings) -> tuple[str | None, str | None]:
    """(account name, account key) of the override storage, as azure-storage-blob parses the connection
    string or account URL; the key is None for an account URL or a SAS. A malformed value is a
    ConfigurationError naming the variable (never echoing the secret)."""
    from azure.storage.blob import BlobServiceClient

    try:
        if settings.storage_connection_string is not None:
            client = blob_service_from_connection_string(settings.storage_connection_string.get_secret_value())
        elif settings.storage_account_url:
            client = BlobServiceClient(account_url=settings.storage_account_url)
        else:
            return None, None
    except ValueError as exc:
        variable = "AZURE_STORAGE_CONNECTION_STRING" if settings.storage_connection_string is not None else "AZURE_STORAGE_ACCOUNT_URL"
        raise ConfigurationError(
            f"{variable} is not a storage connection string or account URL the Azure SDK accepts "
            f"({type(exc).__name__}); copy it from the portal (Storage account > Access keys) or unset it to "
            "use the workspace's default datastore") from exc
    credential = client.credential
    key = getattr(credential, "account_key", None)
    return client.account_name or getattr(credential, "account_name", None), key


def find_azureml_config(start: Path | None = None) -> Path | None:
    """The SDK's lookup: ``.azureml/config.json`` or ``config.json`` in the directory or a parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for candidate in (folder / ".azureml" / "config.json", folder / "config.json"):
            if candidate.is_file():
                return candidate
    return None


class AzureMLConfigJsonSource(PydanticBaseSettingsSource):
    """Workspace coordinates from ``.azureml/config.json``, below every other source."""

    def __init__(self, settings_cls: type[BaseSettings], *earlier: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._earlier = earlier

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def _explicit_path(self) -> Path | None:
        for source in self._earlier:
            values = source()
            for key in ("config_path", "AZUREML_CONFIG_PATH", "azureml_config_path"):
                if values.get(key):
                    return Path(values[key])
        return None

    def __call__(self) -> dict[str, Any]:
        explicit = self._explicit_path()
        path = explicit if explicit is not None else find_azureml_config()
        if path is None:
            return {}
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the Azure ML config file {path}: {exc}") from exc
        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"{path} must hold a JSON object with subscription_id, resource_group, workspace_name")
        return {field: str(raw[key]) for field, key in _CONFIG_JSON_KEYS.items() if raw.get(key)}


def load_settings(overrides: Mapping[str, Any] | None = None, *, env_file: str | Path | None = ".env") -> AzureSettings:
    """Build the settings; ``overrides`` (CLI flags, by field name) win. None values are ignored so a CLI
    can pass every flag. Invalid values raise ConfigurationError naming the field."""
    clean = {key: value for key, value in (overrides or {}).items() if value is not None}
    unknown = sorted(set(clean) - set(AzureSettings.model_fields))
    if unknown:
        raise ConfigurationError(f"unknown Azure setting(s): {', '.join(unknown)}; known: {', '.join(AzureSettings.model_fields)}")
    try:
        return AzureSettings(_env_file=env_file, **clean)  # type: ignore[call-arg] # a pydantic-settings init option
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigurationError(f"invalid Azure settings: {problems}") from exc


def make_credential(settings: AzureSettings) -> Any:
    """A service principal's ClientSecretCredential when a client secret is set (from .env or a Prefect
    Secret block, never exported), else DefaultAzureCredential (az login, managed identity, environment)."""
    if settings.client_secret is not None:
        if not (settings.tenant_id and settings.client_id):
            raise ConfigurationError("a client secret needs AZURE_TENANT_ID and AZURE_CLIENT_ID as well")
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(settings.tenant_id, settings.client_id, settings.client_secret.get_secret_value())
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
