"""The names a run uses when none is given: the spec's defaults, and every command's and flow's."""

DEFAULT_MODEL_NAME = "heart-classifier"
# The tutorial's endpoint name. On Azure the backend derives a workspace-unique name from it.
DEFAULT_ENDPOINT_NAME = "heart-classify-endpoint"
