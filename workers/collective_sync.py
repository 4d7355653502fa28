"""Collective weight sync (rollout.weight_sync=collective): a bucketed broadcast of the full weights from actor
rank 0 to every worker of every rollout engine, over a process group of its own.

The group: actor rank 0 is group rank 0; TP rank t of rollout engine e is group rank 1 + e * TP + t. It is
neither FSDP's group nor vLLM's (every member already belongs to one of those): on CPU a gloo ProcessGroup built
straight on a TCPStore, outside torch.distributed's global state; on GPU vLLM's StatelessProcessGroup with a
PyNcclCommunicator on top (how OpenRLHF and verl join trainer and vLLM workers in one NCCL group). Actor rank 0
hosts the store; the driver hands its address to every member once (`CollectiveWeightSync`), and forms the
group again when a member was replaced (a restarted rollout worker or actor group).

A sync: every actor rank walks the parameters in one order and gathers each full tensor (`full_tensor()`: an
all-gather over FSDP's group, so all ranks take part); rank 0 casts it to the rollout dtype into a flat byte
bucket of about rollout.weight_sync_bucket_mb, and broadcasts each bucket when it is full: the memory a sync
holds is one bucket plus one full tensor, not the model. The receivers know the layout from a manifest (names,
dtype and shape of every tensor, sent once when the group forms) and cut the same buckets, so the wire carries
weight bytes only. In each engine worker the tensors, views of the received bucket, go lazily into vLLM's
`reload_weights(weights_iterator=...)`, the reload path of the object-store sync (workers/vllm_reload.py's
SKIP_LOAD_TENSORS applies as before). The receiving code runs inside vLLM's worker processes as a worker
extension (`WeightSyncWorkerExtension`, reached through `collective_rpc`), so the engine may run in the rollout
actor, in its own process, or as TP worker processes.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterable, Iterator
from datetime import timedelta

import torch

ALIGN = 64  # every tensor starts at a multiple of 64 bytes in its bucket, so a view of any dtype is aligned
TIMEOUT_S = 900  # joining the group and each broadcast: a member that died fails the sync after this long

# one entry per distinct tensor, the same on every member: [names, dtype name, shape] (plain lists: the
# manifest crosses vLLM's msgpack RPC into engine processes)
Manifest = list[list]


def tensor_manifest(entries: Iterable[tuple[tuple[str, ...], torch.Tensor]], dtype: torch.dtype) -> Manifest:
    """The manifest of `entries` ((names, tensor) per distinct tensor, `weight_sync.distinct_tensors`), sent in
    `dtype`. Shapes are the full (global) shapes: a DTensor's shape is its full shape."""
    name = str(dtype).removeprefix("torch.")
    return [[list(names), name, list(tensor.shape)] for names, tensor in entries]


def _nbytes(dtype_name: str, shape) -> int:
    return math.prod(shape) * getattr(torch, dtype_name).itemsize


def plan_buckets(manifest: Manifest, bucket_bytes: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """The buckets of a sync, computed alike by sender and receivers: (size in bytes, [(manifest index, byte
    offset)]), tensors in manifest order, a bucket closed before the tensor that would overflow it (a tensor
    larger than `bucket_bytes` travels alone)."""
    buckets, slots, size = [], [], 0
    for index, (_, dtype_name, shape) in enumerate(manifest):
        nbytes = _nbytes(dtype_name, shape)
        offset = -(-size // ALIGN) * ALIGN
        if slots and offset + nbytes > bucket_bytes:
            buckets.append((size, slots))
            slots, offset = [], 0
        slots.append((index, offset))
        size = offset + nbytes
    if slots:
        buckets.append((size, slots))
    return buckets


def _view(buffer: torch.Tensor, offset: int, dtype_name: str, shape) -> torch.Tensor:
    return buffer[offset : offset + _nbytes(dtype_name, shape)].view(getattr(torch, dtype_name)).view(shape)


class SyncGroup:
    """This process's membership of the weight-sync group; `broadcast` sends (rank 0) or receives in place."""

    def __init__(self, host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: int = TIMEOUT_S):
        self.rank, self.world_size, self.backend = rank, world_size, backend
        if backend == "gloo":
            from torch.distributed import PrefixStore, ProcessGroupGloo, TCPStore

            timeout = timedelta(seconds=timeout_s)
            self._store = TCPStore(host, port, world_size, is_master=rank == 0, timeout=timeout)
            self._pg = ProcessGroupGloo(PrefixStore("rest-weight-sync", self._store), rank, world_size, timeout)
            self.device = torch.device("cpu")
        elif backend == "nccl":
            from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
            from vllm.distributed.utils import StatelessProcessGroup

            self.device = torch.device("cuda", torch.cuda.current_device())
            store = StatelessProcessGroup.create(host=host, port=port, rank=rank, world_size=world_size,
                                                 store_timeout=timeout_s)
            try:  # vLLM pins some NCCL settings in its own workers; a communicator shared with others must not
                from vllm.utils.nccl import unpinned_nccl_env
            except ImportError:
                from contextlib import nullcontext as unpinned_nccl_env
            with unpinned_nccl_env():
                self._comm = PyNcclCommunicator(store, device=self.device)
        else:
            raise ValueError(f"weight-sync group backend must be gloo or nccl, got {backend!r}")

    def broadcast(self, buffer: torch.Tensor) -> None:
        """From group rank 0 to every other member, in place; returns when this member's part is done."""
        if self.backend == "gloo":
            from torch.distributed import BroadcastOptions

            options = BroadcastOptions()
            options.rootRank, options.rootTensor = 0, 0
            self._pg.broadcast([buffer], options).wait()
        else:
            self._comm.broadcast(buffer, src=0, stream=torch.cuda.current_stream())

    def close(self) -> None:
        if self.backend == "gloo":
            self._pg = self._store = None
        else:
            self._comm = None


def send_buckets(group: SyncGroup | None, tensors: Iterable[torch.Tensor], manifest: Manifest,
                 bucket_bytes: int) -> int:
    """The sender's half of a sync: `tensors` are the full tensors in manifest order. Every actor rank calls this
    (producing the tensors gathers them: collectives over FSDP's group); rank 0 (`group` given) packs and
    broadcasts them, the others (None) only drain the gathers. Returns the bytes broadcast."""
    tensors, sent = iter(tensors), 0
    for size, slots in plan_buckets(manifest, bucket_bytes):
        buffer = torch.empty(size, dtype=torch.uint8, device=group.device) if group is not None else None
        for index, offset in slots:
            tensor = next(tensors)
            names, dtype_name, shape = manifest[index]
            if tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"weight sync: {names[0]} has shape {tuple(tensor.shape)}, the manifest {shape}")
            if buffer is not None:
                _view(buffer, offset, dtype_name, shape).copy_(tensor)  # casts to the rollout dtype, moves device
            del tensor
        if group is not None:
            group.broadcast(buffer)
            sent += size
    if next(tensors, None) is not None:
        raise ValueError("weight sync: the actor has more tensors than the manifest")
    return sent


def receive_buckets(group: SyncGroup, manifest: Manifest, bucket_bytes: int) -> Iterator[tuple[str, torch.Tensor]]:
    """The receiver's half: (name, tensor) pairs, a tensor under each of its names, received bucket by bucket
    as the consumer asks for them. The tensors are views of their bucket (a fresh buffer per bucket, so a
    consumer may keep them). Must be consumed to the end: every bucket is a collective."""
    for size, slots in plan_buckets(manifest, bucket_bytes):
        buffer = torch.empty(size, dtype=torch.uint8, device=group.device)
        group.broadcast(buffer)
        for index, offset in slots:
            names, dtype_name, shape = manifest[index]
            tensor = _view(buffer, offset, dtype_name, shape)
            for name in names:
                yield name, tensor


def full_tensors(entries: Iterable[tuple[tuple[str, ...], torch.Tensor]]) -> Iterator[torch.Tensor]:
    """The full tensor of each entry: a DTensor is gathered (a collective: every rank in the same order)."""
    from torch.distributed.tensor import DTensor

    for _, value in entries:
        value = value.detach()
        yield value.full_tensor() if isinstance(value, DTensor) else value


def rendezvous_address() -> tuple[str, int]:
    """This node's address and a free port: where actor rank 0 hosts the group's store."""
    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return ray.util.get_node_ip_address(), port


class WeightBroadcaster:
    """Actor side, one per FSDP rank: rank 0 joins the group and sends; the others only take part in the
    gathers."""

    def __init__(self, rank: int, host: str, port: int, world_size: int, backend: str, bucket_bytes: int,
                 dtype: torch.dtype):
        self.group = SyncGroup(host, port, 0, world_size, backend) if rank == 0 else None
        self.bucket_bytes, self.dtype = bucket_bytes, dtype

    def send(self, entries: list[tuple[tuple[str, ...], torch.Tensor]]) -> int:
        return send_buckets(self.group, full_tensors(entries), tensor_manifest(entries, self.dtype),
                            self.bucket_bytes)

    def close(self) -> None:
        if self.group is not None:
            self.group.close()


class WeightSyncWorkerExtension:
    """Mixed into every vLLM worker of a rollout engine (`LLM(worker_extension_cls=...)`); the rollout worker
    calls these through `collective_rpc`, which runs them in each worker process (each TP rank)."""

    def rest_join_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str,
                              manifest: Manifest, bucket_bytes: int) -> None:
        previous = getattr(self, "_rest_weight_sync", None)
        if previous is not None:
            previous[0].close()
        group = SyncGroup(host, port, rank_offset + self.rank, world_size, backend)
        self._rest_weight_sync = (group, manifest, bucket_bytes)

    def rest_receive_weights(self) -> int:
        """Receive one sync and load it through vLLM's layer-wise reload; returns the bytes received."""
        group, manifest, bucket_bytes = self._rest_weight_sync
        weights = receive_buckets(group, manifest, bucket_bytes)
        try:
            self.reload_weights(weights_iterator=weights)
        finally:  # a reload that stopped early must still take every bucket, or the sender waits for it
            for _ in weights:
                pass
        return sum(size for size, _ in plan_buckets(manifest, bucket_bytes))


class CollectiveWeightSync:
    """Driver side: forms the group over the actor and rollout worker groups (again whenever a member was
    replaced) and runs a sync: rank 0's broadcast and every engine's receive at once."""

    def __init__(self, device: str, dtype: str, tensor_parallel_size: int, bucket_mb: int):
        self.backend = "nccl" if device == "cuda" else "gloo"
        self.dtype, self.tp, self.bucket_bytes = dtype, tensor_parallel_size, bucket_mb << 20
        self.members: tuple | None = None

    def connect(self, actor, rollout) -> None:
        """Join actor rank 0 and every engine worker of `rollout` into one group, unless they already are."""
        import ray

        members = (tuple(actor.actors), tuple(rollout.actors))
        if members == self.members:
            return
        (host, port), manifest = actor.weight_sync_manifest(self.dtype)
        world_size = 1 + len(rollout.actors) * self.tp
        ray.get(actor.call_async("join_weight_sync", host, port, world_size, self.backend, self.bucket_bytes,
                                 self.dtype)
                + rollout.call_async("join_weight_sync", host, port, world_size, self.backend, manifest,
                                     self.bucket_bytes))
        self.members = members

    def sync(self, actor, rollout) -> int:
        """One sync; returns the bytes of one copy of the weights."""
        import ray

        self.connect(actor, rollout)
        sent = ray.get(actor.call_async("broadcast_weights") + rollout.call_async("receive_weights"))
        return sent[0]
