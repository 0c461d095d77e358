"""Fixtures of the Azure integration tests."""

from tests.unit.azure.conftest import clean_env, settings  # noqa: F401 - the Azure settings fixtures, shared
