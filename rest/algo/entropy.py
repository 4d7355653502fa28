"""Per-token entropy H_t and log-prob log pi(y_t) of the taken token, computed in row chunks.

Two entry points:
- `entropy_and_logprob(logits, labels)`: the logits already exist (e.g. an HF forward); chunking bounds the
  *extra* memory (fp32 copies, softmax) to one chunk of rows instead of the whole [N, V]. With grad enabled each
  chunk runs under `torch.utils.checkpoint`, so the backward recomputes the chunk instead of keeping [N, V]
  activations alive.
- `entropy_and_logprob_from_hidden(hidden, weight, labels)`: starts from the last hidden states and the LM-head
  weight (what the FSDP actor runs). A custom autograd function: the forward keeps only the [N] log-normalisers,
  the backward recomputes each chunk's logits and turns them into d logits in place. Both passes reuse ONE
  [chunk, V] fp32 buffer (plus one in the input dtype under bf16) allocated once per call, so the peak extra
  memory is ~1 chunk x V x 4 bytes and, unlike a fresh allocation per chunk, does not creep up with N under
  the workers' never-trim allocator settings (heap fragmentation).

Outputs are fp32; logprob is differentiable, entropy is returned DETACHED (its value feeds metrics and region
weights; a differentiable entropy would keep each chunk's softmax alive until the end of the backward).
Labels < 0 (ignore index) give logprob 0 at that position.
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


def entropy_and_logprob(
    logits: torch.Tensor, labels: torch.Tensor, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [..., V], labels [...] (long) -> (entropy [...], logprob [...]), fp32, chunked over rows."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    lead = labels.shape
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    use_ckpt = torch.is_grad_enabled() and flat_logits.requires_grad
    ents, lps = [], []
    for start in range(0, flat_labels.numel(), chunk_size):
        chunk = (flat_logits[start : start + chunk_size], flat_labels[start : start + chunk_size])
        if use_ckpt:
            h, lp = checkpoint(_entropy_logprob_fp32, *chunk, use_reentrant=False)
        else:
            h, lp = _entropy_logprob_fp32(*chunk)
        ents.append(h)
        lps.append(lp)
    if not ents:
        empty = torch.zeros(lead, dtype=torch.float32, device=logits.device)
        return empty, empty.clone()
    return torch.cat(ents).reshape(lead), torch.cat(lps).reshape(lead)


class _FusedHeadEntropyLogprob(torch.autograd.Function):
    """(hidden [N, H], weight [V, H], labels [N]) -> (entropy [N], logprob [N]); logits = hidden @ weight.T / T,
    one chunk of rows at a time in a reused buffer. The matmul runs in the input dtype (as the model's lm_head
    does); the softmax math is fp32."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, temperature: float, chunk_size: int):
        n, vocab = labels.numel(), weight.shape[0]
        device = hidden.device
        entropy = torch.empty(n, dtype=torch.float32, device=device)
        logprob = torch.empty(n, dtype=torch.float32, device=device)
        lse = torch.empty(n, dtype=torch.float32, device=device)
        bufs = _buffers(min(chunk_size, n), vocab, hidden.dtype, device)
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            z = _logits_into(hidden[start:stop], weight, temperature, bufs)  # [r, V] fp32, the reused buffer
            y = labels[start:stop]
            taken = z.gather(-1, y.clamp_min(0).unsqueeze(-1)).squeeze(-1)
            peak = z.amax(-1)
            e = z.sub_(peak.unsqueeze(-1)).exp_()  # exp(z - max), in place
            total = e.sum(-1)
            # sum_v e_v (z_v - max) = sum_v e_v log e_v; H_t = log Z - sum_v p_v z_v = log(total) - that / total
            e_log_e = e.xlogy_(e).sum(-1)
            log_total = total.log()
            lse[start:stop] = peak + log_total
            entropy[start:stop] = log_total - e_log_e / total
            logprob[start:stop] = torch.where(y >= 0, taken - lse[start:stop], torch.zeros_like(taken))
        ctx.save_for_backward(hidden, weight, labels, lse)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        ctx.mark_non_differentiable(entropy)
        return entropy, logprob

    @staticmethod
    def backward(ctx, grad_entropy, grad_logprob):
        hidden, weight, labels, lse = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        n, chunk_size, temperature = labels.numel(), ctx.chunk_size, ctx.temperature
        if n == 0 or not (need_h or need_w):
            return grad_h, grad_w, None, None, None
        g = torch.where(labels >= 0, grad_logprob.float(), torch.zeros_like(lse))  # d loss / d logprob
        bufs = _buffers(min(chunk_size, n), weight.shape[0], hidden.dtype, hidden.device)
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            gs = g[start:stop].unsqueeze(-1)
            # d logprob / d z = onehot(y) - softmax(z): build g * (onehot - p) / T in the logits buffer
            d = _logits_into(hidden[start:stop], weight, temperature, bufs)
            d.sub_(lse[start:stop].unsqueeze(-1)).exp_().mul_(-gs)
            d.scatter_add_(-1, labels[start:stop].clamp_min(0).unsqueeze(-1), gs)
            if temperature != 1.0:
                d.div_(temperature)
            if bufs[1] is not None:  # back to the matmul dtype, as autograd through `.float()` would
                d = bufs[1][: stop - start].copy_(d)
            if need_h:
                torch.mm(d, weight, out=grad_h[start:stop])
            if need_w:
                grad_w.addmm_(d.t(), hidden[start:stop])
        return grad_h, grad_w, None, None, None


def _buffers(rows: int, vocab: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    fp32 = torch.empty(rows, vocab, dtype=torch.float32, device=device)
    low = None if dtype == torch.float32 else torch.empty(rows, vocab, dtype=dtype, device=device)
    return fp32, low


def _logits_into(hidden: torch.Tensor, weight: torch.Tensor, temperature: float, bufs) -> torch.Tensor:
    fp32, low = bufs
    rows = hidden.shape[0]
    if low is None:
        z = torch.mm(hidden, weight.t(), out=fp32[:rows])
    else:
        z = fp32[:rows].copy_(torch.mm(hidden, weight.t(), out=low[:rows]))
    return z.div_(temperature) if temperature != 1.0 else z


def entropy_and_logprob_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [N, H], weight [V, H] (lm_head), labels [N] -> (entropy [N], logprob [N]) in fp32.

    logits = hidden @ weight.T / temperature, one chunk of `chunk_size` rows at a time. Gradients w.r.t.
    hidden and weight equal the naive path's; peak extra memory is ~chunk_size x V x 4 bytes, not O(N x V).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if hidden.dim() != 2 or weight.dim() != 2 or labels.dim() != 1:
        raise ValueError("expected hidden [N, H], weight [V, H], labels [N]")
    if labels.numel() == 0:
        empty = torch.zeros(0, dtype=torch.float32, device=hidden.device)
        return empty, empty.clone()
    return _FusedHeadEntropyLogprob.apply(hidden, weight, labels, float(temperature), int(chunk_size))


def entropy_and_logprob_naive(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference formula on the whole tensor at once (tests and the benchmark compare against it)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)  # H_t
    logprob = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return entropy, torch.where(labels >= 0, logprob, torch.zeros_like(logprob))
