"""How a driver call on a worker group reaches its Ray actors, and how the answers come back.

A worker method declares its dispatch mode with `@register(Dispatch.X)`; `RayWorkerGroup` then exposes the
method on the group so the driver reads like single-process code: `actor.compute_log_prob(batch)` splits the
batch over the ranks, runs every rank (FSDP needs every rank in every forward) and concatenates the results.
A method declared `@register(mode, blocking=False)` returns its ObjectRefs at once (one per rank), for a call
whose answers go straight to another group (the weight export: `rollout.load_weights(actor.export_weights(dtype))`).
Metrics come back as `rest.workers.metrics.Metric`s and are combined by their own reductions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
from tensordict import TensorDict

from rest.workers.metrics import reduce_metrics

if TYPE_CHECKING:  # the workers import `register` without Ray (the GPU smoke check runs them in-process)
    import ray


class Dispatch(enum.Enum):
    ONE_TO_ALL = "one_to_all"  # same arguments to every rank; returns the list of answers
    RANK_ZERO = "rank_zero"  # same arguments to every rank (collectives need them all); returns rank 0's
    DP_COMPUTE = "dp_compute"  # TensorDict/list positional arguments split over ranks; answers concatenated


def register(mode: Dispatch, blocking: bool = True) -> Callable:
    """Declare how a worker method is called on a group: `mode` (how arguments reach the ranks and answers come
    back) and `blocking` (False: the group call returns the per-rank ObjectRefs without waiting)."""

    def decorator(fn: Callable) -> Callable:
        fn._dispatch_mode = mode
        fn._blocking = blocking
        return fn

    return decorator


@dataclass
class WorkerOutput:
    """A DP_COMPUTE answer with both parts: new per-row fields (concatenated over ranks) and metrics
    ({name: Metric} on a rank; {name: float} once collected)."""

    batch: TensorDict | None = None
    metrics: dict = field(default_factory=dict)


def split_batch(batch: TensorDict, parts: int) -> list[TensorDict]:
    """Equal contiguous chunks (FSDP ranks must run the same number of micro-batches); the config validation
    guarantees divisibility."""
    n = batch.batch_size[0]
    if n % parts:
        raise ValueError(f"batch of {n} rows cannot be split evenly over {parts} ranks")
    size = n // parts
    return [batch[i * size : (i + 1) * size] for i in range(parts)]


def split_list(items: list, parts: int) -> list[list]:
    """Contiguous chunks whose sizes differ by at most one (rollout workers need no equal shares)."""
    base, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + base + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def split_args(args: tuple, parts: int) -> list[tuple]:
    """Split every TensorDict or list positional argument; pass the others to every rank unchanged."""
    columns = []
    for arg in args:
        if isinstance(arg, TensorDict):
            columns.append(split_batch(arg, parts))
        elif isinstance(arg, list):
            columns.append(split_list(arg, parts))
        else:
            columns.append([arg] * parts)
    return list(zip(*columns))


def collect_dp(outputs: list[Any]) -> Any:
    """Concatenate per-rank TensorDicts and lists; combine per-rank metric dicts by each metric's reduction
    (`rest.workers.metrics.reduce_metrics`; a plain number is averaged: each rank saw an equal share)."""
    first = outputs[0]
    if isinstance(first, TensorDict):
        return torch.cat(outputs, dim=0)
    if isinstance(first, list):
        return [item for out in outputs for item in out]
    if isinstance(first, dict):
        return reduce_metrics(outputs)
    if isinstance(first, WorkerOutput):
        batch = torch.cat([o.batch for o in outputs], dim=0) if first.batch is not None else None
        return WorkerOutput(batch, reduce_metrics([o.metrics for o in outputs]))
    return outputs


class RayWorkerGroup:
    """A list of Ray actors of one worker class, driven as one object."""

    def __init__(self, worker_cls: type, actors: list[ray.actor.ActorHandle]):
        self.worker_cls = worker_cls
        self.actors = actors

    @property
    def world_size(self) -> int:
        return len(self.actors)

    def call_async(self, method: str, *args, **kwargs) -> list[ray.ObjectRef]:
        """Dispatch without waiting; returns one ObjectRef per rank (DP_COMPUTE: per-rank chunks). The driver
        calls methods by name (`group.method(...)`); this is what such a call runs."""
        mode = getattr(getattr(self.worker_cls, method), "_dispatch_mode", None)
        if mode is None:
            raise AttributeError(f"{self.worker_cls.__name__}.{method} is not a registered worker method")
        if mode is Dispatch.DP_COMPUTE:
            return [
                getattr(actor, method).remote(*rank_args, **kwargs)
                for actor, rank_args in zip(self.actors, split_args(args, self.world_size))
            ]
        return [getattr(actor, method).remote(*args, **kwargs) for actor in self.actors]

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        fn = getattr(self.worker_cls, method, None)
        mode = getattr(fn, "_dispatch_mode", None)
        if mode is None:
            raise AttributeError(f"{self.worker_cls.__name__} has no registered worker method {method!r}")

        def call(*args, **kwargs):
            import ray

            refs = self.call_async(method, *args, **kwargs)
            if not fn._blocking:
                return refs
            outputs = ray.get(refs)
            if mode is Dispatch.DP_COMPUTE:
                return collect_dp(outputs)
            if mode is Dispatch.RANK_ZERO:
                return outputs[0]
            return outputs

        call.__name__ = method
        return call
