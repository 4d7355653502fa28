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
from workers.resource_pool import WorkerResources, create_placement, scheduling
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


def create_worker_groups(cfg: RestConfig, model_path: str, total_steps: int) -> WorkerGroups:
    actor_res = WorkerResources(cfg.actor.num_workers, cfg.actor.cpus_per_worker, cfg.actor.gpus_per_worker)
    rollout_res = WorkerResources(cfg.rollout.num_workers, cfg.rollout.cpus_per_worker,
                                  cfg.rollout.gpus_per_worker * cfg.rollout.tensor_parallel_size)
    placement = create_placement(actor_res, rollout_res, cfg.trainer.placement)

    # rank 0's node hosts the torch.distributed rendezvous
    master_addr, master_port = ray.get(
        _node_address.options(num_cpus=0, scheduling_strategy=scheduling(placement.actor[0])).remote()
    )
    actor_cls = ray.remote(FSDPActorWorker)
    actors = [
        actor_cls.options(num_cpus=actor_res.cpus, num_gpus=actor_res.gpus, scheduling_strategy=scheduling(slot),
                          name=None).remote(cfg, rank, actor_res.num_workers, master_addr, master_port)
        for rank, slot in enumerate(placement.actor)
    ]
    rollout_cls = ray.remote(RolloutWorker)
    rollouts = [
        rollout_cls.options(num_cpus=rollout_res.cpus, num_gpus=rollout_res.gpus,
                            scheduling_strategy=scheduling(slot)).remote(cfg, model_path, rank)
        for rank, slot in enumerate(placement.rollout)
    ]
    groups = WorkerGroups(RayWorkerGroup(FSDPActorWorker, actors), RayWorkerGroup(RolloutWorker, rollouts))
    groups.actor.init_model(model_path, total_steps)
    return groups
