"""Start (or join) Ray and create the two worker groups where the config places them."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Callable, Optional

import ray
from ray.exceptions import RayActorError

from rest.config.schema import RestConfig
from rest.config.validate import available_cpus
from rest.trainer.env import WORKER_ENV
from rest.workers.dispatch import RayWorkerGroup
from rest.workers.fsdp_actor import FSDPActorWorker
from rest.workers.resource_pool import WorkerResources, create_placement
from rest.workers.rollout import RolloutWorker

log = logging.getLogger(__name__)


class WorkerFault(RuntimeError):
    """A worker died more often than trainer.max_restarts allows."""


class RestartingWorkerGroup(RayWorkerGroup):
    """A worker group whose calls survive the death of a worker (killed, out of memory): the dead actor is
    replaced by `replace(rank)` (a fresh actor in the same placement slot, given the current weights) and the
    whole call is retried, at most `max_restarts` times over the run. Rollout calls are safe to repeat: a
    sample's seed fixes it, so a retried generation returns what the first try would have."""

    def __init__(self, worker_cls: type, actors: list, replace: Callable[[int], object], max_restarts: int):
        super().__init__(worker_cls, actors)
        self.replace, self.max_restarts, self.restarts = replace, max_restarts, 0

    def __getattr__(self, method: str):
        call = super().__getattr__(method)

        def retried(*args, **kwargs):
            while True:
                try:
                    return call(*args, **kwargs)
                except RayActorError as error:
                    self._replace_dead(method, error)

        retried.__name__ = method
        return retried

    def _replace_dead(self, method: str, error: RayActorError) -> None:
        dead = [rank for rank, actor in enumerate(self.actors) if not _alive(actor)]
        name = self.worker_cls.__name__
        if not dead:  # unavailable but not dead: nothing to replace
            raise error
        for rank in dead:
            if self.restarts >= self.max_restarts:
                raise WorkerFault(f"{name} {rank} died during {method} ({type(error).__name__}) and the "
                                  f"trainer.max_restarts={self.max_restarts} restarts are used up") from error
            self.restarts += 1
            log.warning("%s %d died during %s; replaced it (restart %d of trainer.max_restarts=%d), gave it "
                        "the current weights and retried the call", name, rank, method, self.restarts,
                        self.max_restarts)
            try:
                ray.kill(self.actors[rank], no_restart=True)
            except Exception:  # already gone
                pass
            self.actors[rank] = self.replace(rank)


def _alive(actor, timeout_s: float = 30.0) -> bool:
    try:
        ray.get(actor.__ray_call__.remote(lambda self: True), timeout=timeout_s)
        return True
    except RayActorError:
        return False
    except ray.exceptions.GetTimeoutError:  # busy, not dead
        return True

@dataclass
class WorkerGroups:
    actor: RayWorkerGroup
    rollout: RayWorkerGroup
    rebuild_actor: Optional[Callable[[], RayWorkerGroup]] = None  # a fresh, initialised actor group
    actor_restarts: int = 0

    def dead_actor_ranks(self) -> list[int]:
        return [rank for rank, actor in enumerate(self.actor.actors) if not _alive(actor)]

    def restart_actor_group(self, dead: list[int], max_restarts: int) -> None:
        """Replace the whole actor group (the survivors' process group is broken with the dead rank in it);
        the caller restores its state from a checkpoint."""
        if self.actor_restarts >= max_restarts or self.rebuild_actor is None:
            raise WorkerFault(f"FSDPActorWorker rank {dead} died and the trainer.max_restarts={max_restarts} "
                              f"restarts are used up")
        self.actor_restarts += 1
        log.warning("FSDPActorWorker rank %s died; rebuilding the actor group (restart %d of "
                    "trainer.max_restarts=%d)", dead, self.actor_restarts, max_restarts)
        for actor in self.actor.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self.actor = self.rebuild_actor()

    def kill_worker(self, group: str, rank: int) -> int:
        """SIGKILL one worker's process (the trainer.crash_in test hook; the worker must run on this node)."""
        import os
        import signal

        actor = getattr(self, group).actors[rank]
        pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
        os.kill(pid, signal.SIGKILL)
        return pid


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

    def actor_workers() -> list:
        # rank 0's node hosts the torch.distributed rendezvous (a fresh port for a rebuilt group)
        rank0 = placement.actor[0].options()
        master_addr, master_port = ray.get(
            _node_address.options(num_cpus=0, scheduling_strategy=rank0["scheduling_strategy"]).remote()
        )
        actor_cls = ray.remote(FSDPActorWorker)
        return [actor_cls.options(**slot.options()).remote(cfg, rank, world_size, master_addr, master_port)
                for rank, slot in enumerate(placement.actor)]

    def rebuild_actor_group() -> RayWorkerGroup:
        group = RayWorkerGroup(FSDPActorWorker, actor_workers())
        group.init_model(model_path, total_steps)
        return group

    actors = actor_workers()
    rollout_cls = ray.remote(RolloutWorker)

    def rollout_worker(rank: int):
        return rollout_cls.options(**placement.rollout[rank].options()).remote(cfg, model_path, rank)

    def replace_rollout_worker(rank: int):
        worker = rollout_worker(rank)  # then the current weights, straight from the actor ranks
        ray.get(worker.load_weights.remote(groups.actor.export_weights(cfg.rollout.dtype)))
        return worker

    rollouts = [rollout_worker(rank) for rank in range(len(placement.rollout))]
    groups = WorkerGroups(RayWorkerGroup(FSDPActorWorker, actors),
                          RestartingWorkerGroup(RolloutWorker, rollouts, replace_rollout_worker,
                                                cfg.trainer.max_restarts), rebuild_actor_group)
    groups.actor.init_model(model_path, total_steps)
    return groups
