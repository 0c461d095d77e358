"""What a run on Azure is likely to cost, before it starts: VM-minutes of the sweep cluster and of the
endpoint's deployments at approximate pay-as-you-go list prices. An estimate to decide with, not a bill:
prices differ by region and change; the Azure pricing calculator has the current ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Approximate pay-as-you-go list prices, USD per hour, Linux, for the sizes heartflow suggests. A size not
# listed is priced as the most expensive listed one, so an estimate never comes out low by omission.
PRICES_USD_PER_HOUR: dict[str, float] = {
    "standard_ds1_v2": 0.073, "standard_ds2_v2": 0.146, "standard_ds3_v2": 0.293, "standard_ds4_v2": 0.585,
    "standard_f2s_v2": 0.085, "standard_f4s_v2": 0.169, "standard_f8s_v2": 0.338,
}
# The workspace's container registry (Basic tier) bills per day whether or not it is used.
REGISTRY_USD_PER_DAY = 0.167


def hourly_price(vm_size: str) -> float:
    return PRICES_USD_PER_HOUR.get(vm_size.lower(), max(PRICES_USD_PER_HOUR.values()))


@dataclass(frozen=True)
class CostEstimate:
    """VM-minutes and dollars of one run: the cluster while trials run, the endpoint while it exists."""

    cluster_size: str
    cluster_node_minutes: float
    endpoint_size: str
    endpoint_instance_minutes: float

    @property
    def cluster_usd(self) -> float:
        return self.cluster_node_minutes / 60 * hourly_price(self.cluster_size)

    @property
    def endpoint_usd(self) -> float:
        return self.endpoint_instance_minutes / 60 * hourly_price(self.endpoint_size)

    @property
    def total_usd(self) -> float:
        return self.cluster_usd + self.endpoint_usd + REGISTRY_USD_PER_DAY

    def render(self) -> str:
        return "\n".join([
            "estimated cost of this run (approximate USD list prices; yours depend on region and agreement):",
            f"  cluster  {self.cluster_size}: {self.cluster_node_minutes:.0f} node-minutes   ~ ${self.cluster_usd:.2f}",
            f"  endpoint {self.endpoint_size}: {self.endpoint_instance_minutes:.0f} instance-minutes ~ ${self.endpoint_usd:.2f}",
            f"  container registry (Basic), one day                ~ ${REGISTRY_USD_PER_DAY:.2f}",
            f"  total                                              ~ ${self.total_usd:.2f} (storage and the registry's "
            "models add cents)",
        ])


def estimate_cost(*, cluster_size: str, nodes: int, trials: int, trial_minutes: float, idle_seconds: float,
                  endpoint_size: str, instances: int, deployments: int, deployment_minutes: float,
                  node_start_minutes: float = 5.0) -> CostEstimate:
    """Trials run ``nodes`` at a time, each node started once and kept ``idle_seconds`` after the last trial;
    each of ``deployments`` deployments takes ``deployment_minutes`` to create and, during a rollout, two
    run at once (blue and green), so the endpoint bills two deployments' instances from the second one on."""
    waves = math.ceil(trials / max(nodes, 1))
    node_minutes = max(min(nodes, trials), 1) * (node_start_minutes + waves * trial_minutes + idle_seconds / 60)
    first = deployment_minutes * instances
    later = max(deployments - 1, 0) * deployment_minutes * instances * 2
    return CostEstimate(cluster_size=cluster_size, cluster_node_minutes=node_minutes,
                        endpoint_size=endpoint_size, endpoint_instance_minutes=first + later)
