"""Placement of the two worker groups: Ray placement groups built from the config.

`separate` (the default, the design card's disaggregated layout) gives the FSDP actor group and the rollout
group bundles of their own; `colocated` puts each rollout worker into one of the actor group's bundles, so both
share a node's CPUs/GPU. Bundles are packed across nodes (`PACK`), so a multi-node cluster just works.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray
from ray.util.placement_group import PlacementGroup, placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@dataclass(frozen=True)
class WorkerResources:
    num_workers: int
    cpus: float
    gpus: float


@dataclass(frozen=True)
class Placement:
    actor: list[tuple[PlacementGroup, int]]  # (group, bundle index) per actor rank
    rollout: list[tuple[PlacementGroup, int]]


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    bundle = {"CPU": cpus}
    if gpus:
        bundle["GPU"] = gpus
    return bundle


def create_placement(
    actor: WorkerResources, rollout: WorkerResources, mode: str, timeout_s: float = 120.0
) -> Placement:
    if mode == "separate":
        actor_pg = placement_group([_bundle(actor.cpus, actor.gpus)] * actor.num_workers, strategy="PACK")
        rollout_pg = placement_group([_bundle(rollout.cpus, rollout.gpus)] * rollout.num_workers, strategy="PACK")
        groups = [actor_pg, rollout_pg]
        slots = Placement(
            actor=[(actor_pg, i) for i in range(actor.num_workers)],
            rollout=[(rollout_pg, i) for i in range(rollout.num_workers)],
        )
    elif mode == "colocated":
        # rollout worker i shares bundle i with actor rank i (validated: rollout workers <= actor ranks)
        bundles = [
            _bundle(actor.cpus + (rollout.cpus if i < rollout.num_workers else 0),
                    actor.gpus + (rollout.gpus if i < rollout.num_workers else 0))
            for i in range(actor.num_workers)
        ]
        pg = placement_group(bundles, strategy="PACK")
        groups = [pg]
        slots = Placement(
            actor=[(pg, i) for i in range(actor.num_workers)],
            rollout=[(pg, i) for i in range(rollout.num_workers)],
        )
    else:
        raise ValueError(f"trainer.placement must be 'separate' or 'colocated', got {mode!r}")
    ready, _ = ray.wait([g.ready() for g in groups], num_returns=len(groups), timeout=timeout_s)
    if len(ready) < len(groups):
        raise RuntimeError(
            f"Ray could not reserve the resources for the worker groups within {timeout_s:.0f}s "
            f"(actor: {actor}, rollout: {rollout}, placement {mode!r}); cluster has {ray.cluster_resources()}"
        )
    return slots


def scheduling(slot: tuple[PlacementGroup, int]) -> PlacementGroupSchedulingStrategy:
    group, index = slot
    return PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=index)
