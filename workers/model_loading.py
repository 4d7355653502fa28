"""Rank-0 model loading: only rank 0 reads the checkpoint; the other ranks build the model on the meta device
and receive their shards after `fully_shard`.

Loading the whole model on every rank costs world x model of host RAM per node before sharding frees most of
it (14B in fp32: ~59 GB a rank). Here rank 0 loads the Hugging Face model as usual and keeps its full state
dict until the broadcast; every other rank builds the same module from the config on `meta` (no storage), is
sharded like rank 0, allocates only its shards (`to_empty`), and `set_model_state_dict(..., full_state_dict=True,
broadcast_from_rank0=True)` sends one full tensor at a time from rank 0, of which each rank keeps its shard. So
a non-zero rank's peak is its shards plus the largest single tensor.

Non-persistent buffers (the rotary `inv_freq`) are not in any state dict: rank 0 broadcasts them too.
Tied embeddings stay tied: the meta module ties them at construction (one parameter under two names), and
`to_empty` and the state-dict load keep that one parameter.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict


def build_causal_lm(model_path: str, dtype: torch.dtype, attn_implementation: str, on_meta: bool) -> nn.Module:
    """The HF causal LM with its checkpoint weights, or (on_meta) the same architecture without any storage."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not on_meta:
        return AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation=attn_implementation)
    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)


def full_state_for_broadcast(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """Rank 0's full state dict, taken BEFORE `fully_shard` (it holds references to the full tensors, so they
    outlive the sharding until the broadcast is done); `prefix` names the module inside the one that is loaded."""
    return {prefix + key: value.detach() for key, value in module.state_dict().items()}


def non_persistent_buffers(module: nn.Module) -> list[str]:
    """Names of the buffers no state dict carries (e.g. rotary inv_freq), in a rank-independent order."""
    names = []
    for prefix, sub in module.named_modules():
        for name in sorted(sub._non_persistent_buffers_set):
            if sub._buffers.get(name) is not None:
                names.append(f"{prefix}.{name}" if prefix else name)
    return names


def load_sharded_from_rank0(module: nn.Module, full_state: dict[str, torch.Tensor] | None,
                            device: torch.device) -> None:
    """Fill the `fully_shard`-ed `module` on every rank from rank 0's `full_state` (None elsewhere; a collective).

    `device`: where the shards live (CPU under CPU offload). Rank 0's module holds real shards, the others' are
    on meta until `to_empty`."""
    rank = dist.get_rank()
    if rank == 0:
        if full_state is None:
            raise ValueError("rank 0 must pass the full state dict it loaded")
        module.to(device)
    else:
        module.to_empty(device=device)
    set_model_state_dict(module, full_state if rank == 0 else {},
                         options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=True))
    broadcast_device = torch.device("cuda", torch.cuda.current_device()) \
        if dist.get_backend() == "nccl" else torch.device("cpu")
    for name in non_persistent_buffers(module):
        owner_name, _, buffer_name = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        value = owner._buffers[buffer_name]
        received = value.detach().to(broadcast_device) if rank == 0 else \
            torch.empty(value.shape, dtype=value.dtype, device=broadcast_device)
        dist.broadcast(received, src=0)
        owner._buffers[buffer_name] = received.to(device)


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (VmHWM), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM missing from /proc/self/status")
