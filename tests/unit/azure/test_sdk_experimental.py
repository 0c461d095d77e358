"""The tests' faster copy of azure-ai-ml's experimental-warning check (tests/azure_settings.py) answers as the
installed SDK's own does, built from a REST answer or not, and replaces the one the SDK's classes call."""

from __future__ import annotations

from azure.ai.ml._utils import _experimental

from tests.azure_settings import SDK_SKIP_EXPERIMENTAL_WARNING, skip_experimental_warning


def _from_rest_object() -> tuple[bool, bool]:  # named as the SDK's converters are
    return SDK_SKIP_EXPERIMENTAL_WARNING[0](), skip_experimental_warning()


def _built_by_a_user() -> tuple[bool, bool]:
    return SDK_SKIP_EXPERIMENTAL_WARNING[0](), skip_experimental_warning()


def test_the_copy_answers_as_the_sdk_does() -> None:
    assert _from_rest_object() == (True, True)
    assert _built_by_a_user() == (False, False)


def test_the_sdk_classes_call_the_copy() -> None:
    assert _experimental._should_skip_warning is skip_experimental_warning
