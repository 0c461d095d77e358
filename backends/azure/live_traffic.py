"""The shadow's and the watch's primitives on an Azure ML managed online endpoint
(``backends.domain.shadow.LiveTraffic``), mixed into ``AzureBackend``.

- **mirror**: the endpoint's ``mirror_traffic`` sends a copy of a share of live requests to one deployment (at
  most 50 %, to a deployment with no live traffic). Requests that name a deployment with the
  ``azureml-model-deployment`` header are never mirrored: heartflow's own holdout evaluation names its
  deployment, so it neither feeds nor disturbs the shadow, and a client that pins a deployment is not in it.
  Azure keeps the mirrored deployment's answers to itself (the client gets the champion's): reading them
  needs the deployment's data collector, which heartflow does not read yet, so ``mirrored_answers`` has none
  and the gate says it decided on the holdout alone (the record shows ``mirrored`` 0).
- **watch**: the previous deployment stays at 0 % for the window (warm: ``heartflow rollback`` or the watch's
  rollback is a traffic change). Azure has no fallback for a failed request, and heartflow does not read the
  endpoint's metrics yet, so a sample has no requests and the watch cannot roll back by itself there.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from backends.domain.shadow import ServedAnswer, WatchSample
from backends.errors import DeploymentError
from backends.results import Endpoint

logger = logging.getLogger(__name__)

MAX_MIRROR_PERCENT = 50  # Azure ML's limit on an endpoint's mirror traffic


class AzureLiveTraffic:
    """Mixed into AzureBackend: ``self.endpoints`` is its AzureEndpoints."""

    endpoints: Any

    def start_mirror(self, endpoint: Endpoint, candidate: str, percent: int) -> str:
        if not 1 <= percent <= 100:
            raise DeploymentError(f"mirror percent must be 1-100, got {percent}")
        share = min(percent, MAX_MIRROR_PERCENT)
        read = self.endpoints.get_endpoint(endpoint.name)
        if read is None:
            raise DeploymentError(f"endpoint {endpoint.name} does not exist any more; deploy again")
        if int((read.traffic or {}).get(candidate, 0)) > 0:
            raise DeploymentError(f"{candidate} takes live traffic on {endpoint.name}: Azure mirrors only to a "
                                  "deployment with none")
        read.mirror_traffic = {candidate: share}
        self.endpoints._write_endpoint(read, f"mirroring {share} % of live traffic to {candidate}")
        logger.info("endpoint %s: %d %% of live requests mirrored to %s", endpoint.name, share, candidate)
        return uuid.uuid4().hex[:12]

    def stop_mirror(self, endpoint: Endpoint) -> None:
        read = self.endpoints.get_endpoint(endpoint.name)
        if read is None or not getattr(read, "mirror_traffic", None):
            return
        read.mirror_traffic = {}
        self.endpoints._write_endpoint(read, "stopping the mirror traffic")

    def mirrored_answers(self, endpoint: Endpoint, session: str) -> tuple[tuple[ServedAnswer, ...], int]:
        logger.warning("endpoint %s: Azure does not return the mirrored deployment's answers (its data collector "
                       "is not read yet): the gate decides on the holdout alone", endpoint.name)
        return (), 0

    def start_watch(self, endpoint: Endpoint, champion: str, previous: str) -> str:
        return uuid.uuid4().hex[:12]  # the policy keeps ``previous`` at 0 %; there is nothing to switch on here

    def watch_sample(self, endpoint: Endpoint, session: str) -> WatchSample:
        return WatchSample(0, 0)

    def stop_watch(self, endpoint: Endpoint) -> None:
        return None
