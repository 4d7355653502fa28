"""Padding removal: a micro-batch's sequences packed into one row, and micro-batches formed by token count.

The batch travels padded (`rest.trainer.batch`: [pad.. prompt | response ..pad]); only the actor's forward
sees the packed form. `pack_micro_batch` keeps the non-pad tokens of every row, back to back in one row of
T = sum of lengths tokens, with the batch's own position ids (0.. per sequence) and the boundaries
`cu_seqlens`; attention stays within each sequence (flash-attn varlen on GPU, `sdpa_varlen_attention` below on
CPU), so every hidden state equals the padded forward's. `hidden_index` says which packed position predicts
each response token, in the row-major order of `response_mask`, so the log-probs scatter back to [b, R] and
the loss code never sees the packed form.

`token_budget_partition` forms micro-batches of at most `max_tokens` tokens (prompt + response, unpadded),
first-fit decreasing, then splits the fullest ones until every rank has the same number (FSDP runs a
collective in every forward, so every rank must run every micro-batch). The loss keeps its all-reduced global
denominator, so the gradients do not depend on how the sequences are grouped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict

VARLEN_SDPA = "sdpa_varlen"  # the attention implementation name registered with transformers for the CPU path


@dataclass
class PackedMicroBatch:
    input_ids: torch.Tensor  # [1, T] the non-pad tokens of every row, row after row
    position_ids: torch.Tensor  # [1, T] restarting at 0 at each sequence
    cu_seqlens: torch.Tensor  # [S + 1] int32, sequence s is packed[cu_seqlens[s] : cu_seqlens[s + 1]]
    max_seqlen: int
    hidden_index: torch.Tensor  # [N] packed position whose hidden state predicts each selected response token

    def attention_kwargs(self) -> dict:
        """What the HF model's forward needs to attend within each sequence (flash-attn's varlen names)."""
        return {"cu_seq_lens_q": self.cu_seqlens, "cu_seq_lens_k": self.cu_seqlens,
                "max_length_q": self.max_seqlen, "max_length_k": self.max_seqlen}


def pack_micro_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                     response_mask: torch.Tensor) -> PackedMicroBatch:
    """input_ids, attention_mask, position_ids [b, P+R], response_mask [b, R] -> the packed micro-batch.

    Response token t of row i sits in padded column P+t and is predicted by column P+t-1, which must be a
    token of the same sequence (a non-empty prompt)."""
    valid = attention_mask.bool()
    lengths = valid.sum(dim=1)
    positions = position_ids[valid]
    starts = torch.cumsum(lengths, 0) - lengths
    first = positions[starts[lengths > 0]]
    if (first != 0).any():
        raise ValueError("packing needs position_ids that start at 0 at each sequence's first token")
    packed_at = (valid.flatten().long().cumsum(0) - 1).view_as(valid)  # packed position of every padded cell
    width = response_mask.shape[1]
    selected = response_mask.bool()
    if input_ids.shape[1] <= width or (selected & ~valid[:, -width - 1 : -1]).any():
        raise ValueError("a response token has no preceding token in its own sequence (empty prompt?)")
    cu_seqlens = torch.zeros(lengths.numel() + 1, dtype=torch.int32, device=input_ids.device)
    cu_seqlens[1:] = torch.cumsum(lengths, 0)
    return PackedMicroBatch(
        input_ids=input_ids[valid].unsqueeze(0),
        position_ids=positions.unsqueeze(0),
        cu_seqlens=cu_seqlens,
        max_seqlen=int(lengths.max()) if lengths.numel() else 0,
        hidden_index=packed_at[:, -width - 1 : -1][selected],
    )


def scatter_response(values: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """values [N] over the selected response tokens (row-major) -> [b, R] fp32, zeros on padding."""
    out = torch.zeros(response_mask.shape, dtype=torch.float32, device=values.device)
    return out.masked_scatter(response_mask.bool(), values.float())


# ------------------------------------------------------------------ token-budget micro-batches
def token_budget_partition(lengths: list[int], max_tokens: int, min_parts: int = 1) -> list[list[int]]:
    """Row indices grouped into micro-batches of at most `max_tokens` tokens each, at least `min_parts` of them.

    First-fit decreasing gives few, full micro-batches; while there are fewer than `min_parts`, the one with the
    most tokens among those holding two or more sequences is split in two halves of balanced tokens. Each
    micro-batch lists its rows in ascending order; micro-batches come fullest first."""
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if not lengths:
        return []
    if min_parts > len(lengths):
        raise ValueError(f"cannot form {min_parts} non-empty micro-batches from {len(lengths)} sequences")
    too_long = [(i, n) for i, n in enumerate(lengths) if n > max_tokens]
    if too_long:
        i, n = too_long[0]
        raise ValueError(f"sequence {i} has {n} tokens, more than the micro-batch budget of {max_tokens}")
    bins: list[list[int]] = []
    loads: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        for b, load in enumerate(loads):
            if load + lengths[i] <= max_tokens:
                bins[b].append(i)
                loads[b] += lengths[i]
                break
        else:
            bins.append([i])
            loads.append(lengths[i])
    while len(bins) < min_parts:
        b = max((k for k in range(len(bins)) if len(bins[k]) > 1), key=lambda k: (loads[k], -k))
        halves: tuple[list[int], list[int]] = ([], [])
        for i in bins[b]:  # already in decreasing length: greedy into the lighter half
            lighter = halves[0] if sum(lengths[k] for k in halves[0]) <= sum(lengths[k] for k in halves[1]) \
                else halves[1]
            lighter.append(i)
        bins[b:b + 1] = list(halves)
        loads[b:b + 1] = [sum(lengths[k] for k in half) for half in halves]
    order = sorted(range(len(bins)), key=lambda k: (-loads[k], k))
    return [sorted(bins[k]) for k in order]


def balance_over_ranks(lengths: list[int], world: int) -> list[int]:
    """A row order whose `world` equal contiguous chunks (how the dispatch splits a batch over ranks) carry
    balanced token counts: longest first, each row to the least loaded rank that still has room; within a
    rank the rows keep their original order."""
    if world <= 0 or len(lengths) % world:
        raise ValueError(f"{len(lengths)} rows cannot be split evenly over {world} ranks")
    room = len(lengths) // world
    ranks: list[list[int]] = [[] for _ in range(world)]
    loads = [0] * world
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        r = min((r for r in range(world) if len(ranks[r]) < room), key=lambda r: (loads[r], r))
        ranks[r].append(i)
        loads[r] += lengths[i]
    return [i for rank in ranks for i in sorted(rank)]


def fixed_size_partition(rows: int, size: int) -> list[list[int]]:
    """The padded path's micro-batches: consecutive rows, `size` at a time."""
    return [list(range(start, min(start + size, rows))) for start in range(0, rows, size)]


def micro_batch_indices(batch: TensorDict, max_tokens: int | None, size: int) -> list[list[int]]:
    """This rank's micro-batches as row indices: by token budget (the same count on every rank of the default
    process group, agreed with one all-reduce) when `max_tokens` is set, else `size` rows at a time."""
    rows = batch.batch_size[0]
    if not max_tokens:
        return fixed_size_partition(rows, size)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    parts = len(token_budget_partition(lengths, max_tokens))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        count = torch.tensor([parts], dtype=torch.int64)
        if torch.distributed.get_backend() == "nccl":
            count = count.cuda()
        torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
        parts = int(count.item())
    return token_budget_partition(lengths, max_tokens, min_parts=parts)


# ------------------------------------------------------------------ exact CPU attention over packed sequences
def sdpa_varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: float | None = None, **kwargs):
    """transformers attention function: causal SDPA within each packed sequence (the CPU stand-in for
    flash-attn's varlen kernel). query [1, H, T, D], key/value [1, Hkv, T, D] -> ([1, T, H, D], None).
    Costs sum_s L_s^2 like varlen flash-attn, not T^2 like a block-diagonal mask over the packed row."""
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is None or attention_mask is not None or query.shape[0] != 1:
        raise ValueError(f"attn_implementation={VARLEN_SDPA} runs packed micro-batches only "
                         "(batch of one row, no attention_mask, cu_seq_lens_q given)")
    bounds = cu_seqlens.tolist()
    gqa = query.shape[1] != key.shape[1]
    out = torch.empty_like(query)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop > start:
            out[:, :, start:stop] = F.scaled_dot_product_attention(
                query[:, :, start:stop], key[:, :, start:stop], value[:, :, start:stop],
                dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


def register_varlen_attention() -> str:
    """Make `sdpa_varlen` a valid attn_implementation (idempotent); returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(VARLEN_SDPA, sdpa_varlen_attention)
    return VARLEN_SDPA


def packed_attn_implementation(configured: str) -> str:
    """The attention a packed forward runs with: flash-attn's own varlen path on GPU, ours in place of sdpa,
    eager through transformers' block-diagonal mask from the restarting position ids."""
    if configured == "sdpa":
        return register_varlen_attention()
    return configured
