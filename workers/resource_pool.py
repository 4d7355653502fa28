"""Placement of the two worker groups: Ray placement groups built from the config.

`separate` (the default, the design card's disaggregated layout) gives the FSDP actor group and the rollout
group bundles of their own; `colocated` puts rollout worker i into actor rank i's bundle, so both share that
bundle's CPUs and its GPU. Bundles are packed across nodes (`PACK`), so a multi-node cluster just works; one
bundle always lies on one node, which is why a tensor-parallel engine gets all its GPUs in one bundle (see
`rest.workers.rollout.executor_backend`).

`placement_spec` is the pure part (what is booked, and what each worker asks for inside its bundle);
`create_placement` reserves it with Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray
from ray.util.placement_group import PlacementGroup, placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@dataclass(frozen=True)
class WorkerResources:
    num_workers: int
    cpus: float  # per worker
    gpus: float  # per worker; for a tensor-parallel engine, all of its GPUs


@dataclass(frozen=True)
class SlotSpec:
    group: int  # index into PlacementSpec.bundles
    bundle: int
    cpus: float  # what the worker's Ray actor asks for inside the bundle
    gpus: float


@dataclass(frozen=True)
class PlacementSpec:
    bundles: list[list[dict[str, float]]]  # one list of bundles per placement group
    actor: list[SlotSpec]  # one per actor rank
    rollout: list[SlotSpec]  # one per rollout worker


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    bundle = {"CPU": cpus}
    if gpus:
        bundle["GPU"] = gpus
    return bundle


def placement_spec(actor: WorkerResources, rollout: WorkerResources, mode: str) -> PlacementSpec:
    if mode == "separate":
        return PlacementSpec(
            bundles=[[_bundle(actor.cpus, actor.gpus)] * actor.num_workers,
                     [_bundle(rollout.cpus, rollout.gpus)] * rollout.num_workers],
            actor=[SlotSpec(0, i, actor.cpus, actor.gpus) for i in range(actor.num_workers)],
            rollout=[SlotSpec(1, i, rollout.cpus, rollout.gpus) for i in range(rollout.num_workers)],
        )
    if mode == "colocated":
        # Rollout worker i shares bundle i with actor rank i (validated: rollout workers <= actor ranks). CPUs
        # add up (both processes compute); a GPU is shared, not added: the bundle holds the actor's GPU and
        # the two actors take half of it each, so Ray gives both the same device. Validation restricts this
        # to one GPU per worker and tensor parallel 1 (a fraction of several GPUs is not a sharing).
        shared = actor.gpus > 0
        bundles = [_bundle(actor.cpus + (rollout.cpus if i < rollout.num_workers else 0), actor.gpus)
                   for i in range(actor.num_workers)]
        actor_gpus = actor.gpus / 2 if shared else 0.0
        return PlacementSpec(
            bundles=[bundles],
            actor=[SlotSpec(0, i, actor.cpus, actor_gpus if i < rollout.num_workers else actor.gpus)
                   for i in range(actor.num_workers)],
            rollout=[SlotSpec(0, i, rollout.cpus, actor.gpus / 2 if shared else 0.0)
                     for i in range(rollout.num_workers)],
        )
    raise ValueError(f"trainer.placement must be 'separate' or 'colocated', got {mode!r}")


@dataclass(frozen=True)
class Slot:
    group: PlacementGroup
    bundle: int
    cpus: float
    gpus: float

    def options(self) -> dict:
        """Ray actor options that place a worker in this slot."""
        return {"num_cpus": self.cpus, "num_gpus": self.gpus,
                "scheduling_strategy": PlacementGroupSchedulingStrategy(
                    placement_group=self.group, placement_group_bundle_index=self.bundle)}


@dataclass(frozen=True)
class Placement:
    actor: list[Slot]  # one per actor rank
    rollout: list[Slot]


def create_placement(actor: WorkerResources, rollout: WorkerResources, mode: str,
                     timeout_s: float = 120.0) -> Placement:
    spec = placement_spec(actor, rollout, mode)
    groups = [placement_group(bundles, strategy="PACK") for bundles in spec.bundles]
    ready, _ = ray.wait([g.ready() for g in groups], num_returns=len(groups), timeout=timeout_s)
    if len(ready) < len(groups):
        for group in groups:
            ray.util.remove_placement_group(group)
        raise RuntimeError(
            f"Ray could not reserve the resources for the worker groups within {timeout_s:.0f}s "
            f"(bundles {spec.bundles}, placement {mode!r}); cluster has {ray.cluster_resources()}"
        )

    def slots(specs: list[SlotSpec]) -> list[Slot]:
        return [Slot(groups[s.group], s.bundle, s.cpus, s.gpus) for s in specs]

    return Placement(actor=slots(spec.actor), rollout=slots(spec.rollout))
