"""Per-token entropy H_t and log-prob log pi(y_t) of the taken token, computed in row chunks.

Two entry points:
- `entropy_and_logprob(logits, labels)`: the logits already exist (e.g. an HF forward); chunking bounds the
  *extra* memory (fp32 copies, softmax) to one chunk of rows instead of the whole [N, V].
- `entropy_and_logprob_from_hidden(hidden, weight, labels)`: starts from the last hidden states and the LM-head
  weight and never materialises more than one chunk of logits, forward or backward.

With grad enabled each chunk runs under `torch.utils.checkpoint`, so the backward recomputes the chunk's
logits instead of keeping [N, V] activations alive. Outputs are fp32; logprob is differentiable, entropy is
returned DETACHED (its value feeds metrics and region weights; a differentiable entropy would keep each chunk's
softmax alive until the end of the backward). Labels < 0 (ignore index) give logprob 0 at that position.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _entropy_logprob_fp32(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [n, V] (any float dtype), labels [n] -> (H [n], log pi(y) [n]) in fp32."""
    z = logits.float()
    lse = torch.logsumexp(z, dim=-1)  # log Z
    with torch.no_grad():  # detached: nothing [n, V] is saved for it, so a checkpointed backward frees all
        p = torch.softmax(z, dim=-1)
        entropy = lse - torch.einsum("nv,nv->n", p, z)  # H_t = -sum_v p_v log p_v = log Z - sum_v p_v z_v
    valid = labels >= 0
    taken = z.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    logprob = torch.where(valid, taken - lse, torch.zeros_like(lse))  # log pi(y_t) = z_y - log Z
    return entropy, logprob


def _hidden_chunk(hidden: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, temperature: float):
    # The matmul runs in the input dtype (as the model's lm_head does); softmax math is fp32.
    logits = (hidden @ weight.t()).float() / temperature
    return _entropy_logprob_fp32(logits, labels)


def _logits_chunk(logits: torch.Tensor, labels: torch.Tensor):
    return _entropy_logprob_fp32(logits, labels)


def _run_chunks(fn, row_args: list[torch.Tensor], shared_args: tuple, n: int, chunk_size: int):
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    use_ckpt = torch.is_grad_enabled() and any(
        t.requires_grad for t in list(row_args) + [a for a in shared_args if isinstance(a, torch.Tensor)]
    )
    ents, lps = [], []
    for start in range(0, n, chunk_size):
        chunk = [t[start : start + chunk_size] for t in row_args]
        if use_ckpt:
            h, lp = checkpoint(fn, *chunk, *shared_args, use_reentrant=False)
        else:
            h, lp = fn(*chunk, *shared_args)
        ents.append(h)
        lps.append(lp)
    if not ents:
        empty = torch.zeros(0, dtype=torch.float32, device=row_args[0].device)
        return empty, empty
    return torch.cat(ents), torch.cat(lps)


def entropy_and_logprob(
    logits: torch.Tensor, labels: torch.Tensor, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [..., V], labels [...] (long) -> (entropy [...], logprob [...]), fp32, chunked over rows."""
    lead = labels.shape
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    h, lp = _run_chunks(_logits_chunk, [flat_logits, flat_labels], (), flat_labels.numel(), chunk_size)
    return h.reshape(lead), lp.reshape(lead)


def entropy_and_logprob_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [N, H], weight [V, H] (lm_head), labels [N] -> (entropy [N], logprob [N]) in fp32.

    logits = hidden @ weight.T / temperature, one chunk of `chunk_size` rows at a time. Gradients w.r.t.
    hidden and weight equal the naive path's; peak extra memory is O(chunk_size * V), not O(N * V).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if hidden.dim() != 2 or weight.dim() != 2 or labels.dim() != 1:
        raise ValueError("expected hidden [N, H], weight [V, H], labels [N]")
    return _run_chunks(
        _hidden_chunk, [hidden, labels], (weight, float(temperature)), labels.numel(), chunk_size
    )


def entropy_and_logprob_naive(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference formula on the whole tensor at once (tests and the benchmark compare against it)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)  # H_t
    logprob = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return entropy, torch.where(labels >= 0, logprob, torch.zeros_like(logprob))
