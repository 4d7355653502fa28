"""Start (or join) Ray and create the two worker groups where the config places them."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import ray

from rest.config.schema import RestConfig
from rest.config.validate import available_cpus
from rest.trainer.env import WORKER_ENV
from workers.dispatch import RayWorkerGroup
from workers.fsdp_actor import FSDPActorWorker
from workers.resource_pool import WorkerResources, create_placement
from workers.rollout import RolloutWorker


@dataclass
class WorkerGroups:
    actor: RayWorkerGroup
    rollout: RayWorkerGroup


def start_ray(cfg: RestConfig) -> None:
    if ray.is_initialized():
        return
    runtime_env = {"env_vars": WORKER_ENV}
    if cfg.trainer.ray_address:
        ray.init(address=cfg.trainer.ray_address, runtime_env=runtime_env)
    else:
        resources = {"num_cpus": int(available_cpus(cfg))}
        if cfg.trainer.device == "cuda":
            resources["num_gpus"] = cfg.trainer.gpus_per_node
        ray.init(include_dashboard=False, runtime_env=runtime_env, **resources)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@ray.remote
def _node_address() -> tuple[str, int]:
    return ray.util.get_node_ip_address(), _free_port()


def group_resources(cfg: RestConfig) -> tuple[WorkerResources, WorkerResources]:
    """What one actor rank and one rollout worker need; a tensor-parallel engine holds all its GPUs."""
    actor = WorkerResources(cfg.actor.num_workers, cfg.actor.cpus_per_worker, cfg.actor.gpus_per_worker)
    rollout = WorkerResources(cfg.rollout.num_workers, cfg.rollout.cpus_per_worker,
                              cfg.rollout.gpus_per_worker * cfg.rollout.tensor_parallel_size)
    return actor, rollout


def create_worker_groups(cfg: RestConfig, model_path: str, total_steps: int) -> WorkerGroups:
    placement = create_placement(*group_resources(cfg), cfg.trainer.placement)
    world_size = len(placement.actor)

    # rank 0's node hosts the torch.distributed rendezvous
    rank0 = placement.actor[0].options()
    master_addr, master_port = ray.get(
        _node_address.options(num_cpus=0, scheduling_strategy=rank0["scheduling_strategy"]).remote()
    )
    actor_cls = ray.remote(FSDPActorWorker)
    actors = [actor_cls.options(**slot.options()).remote(cfg, rank, world_size, master_addr, master_port)
              for rank, slot in enumerate(placement.actor)]
    rollout_cls = ray.remote(RolloutWorker)
    rollouts = [rollout_cls.options(**slot.options()).remote(cfg, model_path, rank)
                for rank, slot in enumerate(placement.rollout)]
    groups = WorkerGroups(RayWorkerGroup(FSDPActorWorker, actors), RayWorkerGroup(RolloutWorker, rollouts))
    groups.actor.init_model(model_path, total_steps)
    return groups
