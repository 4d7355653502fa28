"""Pure-tensor RL algorithms: advantages, policy losses, aggregation, region weights, entropy.

Registries chosen by config: `ADV_ESTIMATORS` (rest.algo.advantages), `POLICY_LOSSES` (rest.algo.losses).
The driver uses the facade in `rest.algo.objective`.
"""

from rest.algo.advantages import ADV_ESTIMATORS
from rest.algo.losses import POLICY_LOSSES

__all__ = ["ADV_ESTIMATORS", "POLICY_LOSSES"]
