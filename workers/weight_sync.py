"""The weight-sync wire format between the FSDP2 actor ranks and the rollout workers.

Every actor rank exports its own local shard of each parameter (`export_state`); the rollout worker fetches all
ranks' exports and concatenates the shards into full tensors (`assemble_weights`). Why not gather on rank 0:
measured on a 2-core CPU machine, gloo's all-gather moves 0.2-0.4 GB/s (the full-state-dict gather was half of
a sync), and torch tensors returned through Ray are pickled with `torch.save` (a copy into bytes, another out).
Here every tensor travels as a flat uint8 numpy view, which Ray writes straight into its shared-memory object
store (pickle protocol 5, out-of-band: one copy, all ranks at once) and the reader maps without copying; the
one copy left on the reader is the concatenation of the shards, made one tensor at a time as the engine loads. A tied parameter (embedding = LM head) is
sent once under all its names.

An engine whose model runs in other processes (vLLM's engine core in its own process, the GPU default, or
tensor-parallel worker processes) cannot take these views as RPC arguments ("cannot pickle memoryview
objects"; tensors arrive as lists): the rollout worker writes them as safetensors shards to a RAM-backed
folder (`write_safetensors_shards`) and every engine process reads the files (tests/workers/test_weight_sync.py
runs the greedy-equality check both ways). Measured on 2 CPU cores, tiny Qwen3 (80 MB in fp32): a sync takes
0.3-0.5 s into an engine in its own process, 0.7-1.5 s into a TP-2 engine.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import torch

# one entry per distinct tensor, in the same order on every rank: (names, dtype, full shape, sharded on dim 0)
Entry = tuple[tuple[str, ...], str, tuple[int, ...], bool]


def _pack(tensor: torch.Tensor):
    """A flat uint8 numpy view of `tensor` (on CPU, contiguous): no copy when it already is both."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def distinct_tensors(state: dict[str, torch.Tensor], strip_prefix: str = "",
                     aliases: dict[str, str] | None = None) -> list[tuple[tuple[str, ...], torch.Tensor]]:
    """(names, tensor) once per distinct tensor of `state`, in its order: a tensor under several keys (tied
    weights) is listed once with all its names. `aliases` maps extra names to a name of `state` (e.g. a tied LM
    head missing from it); names lose `strip_prefix`."""
    names: dict[int, list[str]] = {}
    tensors: dict[int, torch.Tensor] = {}
    for key, value in state.items():
        names.setdefault(id(value), []).append(key.removeprefix(strip_prefix))
        tensors[id(value)] = value
    by_name = {name: ident for ident, group in names.items() for name in group}
    for alias, target in (aliases or {}).items():
        if alias not in by_name:
            names[by_name[target]].append(alias)
    return [(tuple(names[ident]), value) for ident, value in tensors.items()]


def export_state(state: dict[str, torch.Tensor], rank: int, world_size: int, dtype: torch.dtype,
                 strip_prefix: str = "", aliases: dict[str, str] | None = None) -> dict:
    """This rank's part of `state` (a module's `state_dict(keep_vars=True)`: DTensors for FSDP2 parameters).

    A DTensor sharded on dim 0 contributes its local shard on every rank; any other tensor is sent whole by
    rank 0 (a DTensor with another placement is gathered first: a collective, so every rank must call this,
    in the same order). `aliases` maps extra names to a name of `state` (e.g. a tied LM head missing from it).
    """
    from torch.distributed.tensor import DTensor, Shard

    entries: list[Entry] = []
    data = []
    for names, value in distinct_tensors(state, strip_prefix, aliases):
        sharded = isinstance(value, DTensor) and tuple(value.placements) == (Shard(0),)
        if sharded:
            local = value.to_local()
        elif isinstance(value, DTensor):
            local = value.full_tensor()
        else:
            local = value
        entries.append((names, str(dtype).removeprefix("torch."), tuple(value.shape), sharded))
        data.append(_pack(local.detach().to(dtype)) if sharded or rank == 0 else None)
    return {"rank": rank, "world_size": world_size, "entries": entries, "data": data}


def assemble_weights(exports) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) pairs from every rank's `export_state` (or their ObjectRefs, fetched here), lazily:
    a consumer that loads one tensor at a time never holds more than one assembled tensor of its own.

    A tensor that came whole is a read-only view of the object store (no copy; only read it); a sharded one
    is the concatenation of its shards."""
    exports = [exports] if isinstance(exports, dict) else list(exports)
    if any(not isinstance(e, dict) for e in exports):
        import ray

        exports = [ray.get(e) if isinstance(e, ray.ObjectRef) else e for e in exports]
    exports = sorted(exports, key=lambda e: e["rank"])
    world = exports[0]["world_size"]
    if [e["rank"] for e in exports] != list(range(world)):
        raise ValueError(f"weight sync needs the exports of all {world} actor ranks, got ranks "
                         f"{[e['rank'] for e in exports]}")
    for i, (names, dtype_name, shape, sharded) in enumerate(exports[0]["entries"]):
        dtype = getattr(torch, dtype_name)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            pieces = [torch.from_numpy(e["data"][i]).view(dtype) for e in exports if e["data"][i] is not None]
        if sharded and len(pieces) > 1:
            row = math.prod(shape[1:])
            tensor = torch.cat([p.view(p.numel() // row if row else 0, *shape[1:]) for p in pieces])
        else:
            tensor = pieces[0].view(shape)
        if tuple(tensor.shape) != tuple(shape):
            raise ValueError(f"weight sync: {names[0]} assembled to {tuple(tensor.shape)}, expected {shape}")
        for name in names:
            yield name, tensor


def write_safetensors_shards(weights, directory: str, max_shard_bytes: int = 1 << 30) -> list[str]:
    """Write (name, tensor) pairs as safetensors files of at most ~`max_shard_bytes` each into `directory`
    (created; emptied first), for an engine that reads weights from a path (vLLM's `reload_weights(
    weights_path=...)` loads every `*.safetensors` there). The writer holds one shard at a time, not the
    model. A second name of an already written tensor (a tied LM head) is written as a copy: a file cannot
    hold two names of one storage, and the engine needs both names. Returns the file paths."""
    import os
    import shutil

    from safetensors.torch import save_file

    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    paths: list[str] = []
    shard: dict[str, torch.Tensor] = {}
    size, seen = 0, set()

    def flush() -> None:
        nonlocal shard, size
        if shard:
            path = os.path.join(directory, f"model-{len(paths) + 1:05d}.safetensors")
            save_file(shard, path, metadata={"format": "pt"})
            paths.append(path)
        shard, size = {}, 0

    for name, tensor in weights:
        key = tensor.untyped_storage().data_ptr()
        tensor = tensor.clone() if key in seen else tensor.contiguous()
        seen.add(key)
        nbytes = tensor.numel() * tensor.element_size()
        if shard and size + nbytes > max_shard_bytes:
            flush()
        shard[name] = tensor
        size += nbytes
    flush()
    return paths
