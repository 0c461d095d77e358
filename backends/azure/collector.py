"""The managed deployment's data collector: what score.py's collectors (``model_inputs``, ``model_outputs``)
send is written to the workspace's blob storage, at the spec's capture rate; ``backends.azure.collected``
reads it back (monitor, feedback, the shadow and the watch)."""

from __future__ import annotations

import copy
from typing import Any

from azure.ai.ml.entities import DataCollector, DeploymentCollection


class _ReusableDataCollector(DataCollector):
    """azure-ai-ml 1.35's DataCollector._to_rest_object deletes its own sampling_rate, so serializing it a
    second time (the plan, then the deployment; a retried create) raises AttributeError: serialize a copy."""

    def _to_rest_object(self) -> Any:
        return DataCollector._to_rest_object(copy.deepcopy(self))


def build_data_collector(rate: float) -> DataCollector:
    """Capture on Azure: score.py's collectors (model_inputs, model_outputs) write to the workspace's blob
    storage at ``rate``, in hour folders; every row carries its request id (x-request-id); headers are not logged."""
    return _ReusableDataCollector(
        collections={name: DeploymentCollection(enabled="true") for name in ("model_inputs", "model_outputs")},
        sampling_rate=rate, rolling_rate="hour",
    )
