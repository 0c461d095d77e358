"""The one error hierarchy of heartflow.

Every error a user can cause or meet carries a message that says what is wrong and what to do.
SDK errors are translated into these once, at the adapter edge (``raise ... from exc``).
"""

from __future__ import annotations


class HeartflowError(Exception):
    """Base of every error heartflow raises on purpose; the CLI prints its message, no traceback."""


class ConfigurationError(HeartflowError):
    """A setting or spec is missing or invalid (names the field and the rule)."""


class DataValidationError(HeartflowError):
    """The input data does not fit the dataset schema (names the column and, where it applies, the row)."""

    problems: tuple[object, ...] = ()  # every problem found in a table (backends.domain.validation.Problem)


class UploadError(HeartflowError):
    """The training data could not be stored."""


class SweepError(HeartflowError):
    """The hyperparameter sweep could not run or produced no usable trial."""


class RegistrationError(HeartflowError):
    """The best model could not be registered."""


class DeploymentError(HeartflowError):
    """The endpoint or a deployment could not be created, updated or reached."""


class EvaluationError(HeartflowError):
    """The endpoint evaluation failed (the endpoint answered with an error or not at all)."""


class PromotionRejected(HeartflowError):
    """The promotion gate kept the serving model: the candidate scored worse than the champion."""


class TransientBackendError(HeartflowError):
    """A failure that is expected to pass (throttling, 5xx, connection reset): callers may retry."""
