"""The training batch: one TensorDict per step, built right after generation and carried to the update.

Layout (verl's): prompts left-padded to the longest prompt P, responses right-padded to the longest response R,
so every row is [pad.. prompt | response ..pad] and the last R columns are the response. The fields, and the
phase (`rest.trainer.phases`) that writes each:

  rollout      input_ids, attention_mask, position_ids          [B, P+R]
               responses, rollout_log_prob                       [B, R]
               response_mask                                     [B, R]  the loss mask: 1 on the tokens the policy
                            wrote (the ones scored, trained and counted), 0 on padding and on tokens that are in
                            the sequence but not the policy's (a tool's observation: attention 1, loss 0)
               group_id (long), truncated (bool)                 [B]     a row's prompt group in this batch;
                            whether the response hit max_response_length
               uid, ground_truth                                 B strings (non-tensor) of the row's prompt
  reward       rewards: {total, format, correctness, ...}        [B] each (the reward's parts)
               regions                                           [B, R]  `rest.tooluse.regions.Region` labels
  old policy   old_log_prob, entropy                             [B, R]  (entropy only when recomputed)
  reference    ref_log_prob                                      [B, R]  (algorithm.kl_coef > 0)
  correction   rollout_is_weights                                [B, R]  (and response_mask narrowed)
  advantages   advantages, token_weights                         [B, R]  (token_weights: weighted presets)
"""

from __future__ import annotations

import torch
from tensordict import TensorDict

SEQUENCE_FIELDS = ("input_ids", "attention_mask", "position_ids")  # [B, P+R]; every other 2-D field is [B, R]
PAD_ID_FIELDS = ("input_ids", "responses")  # padded with the tokenizer's pad id; everything else with 0


def build_batch(prompts: list[list[int]], responses: list[list[int]], rollout_logprobs: list[list[float]],
                pad_id: int, response_masks: list[list[int]] | None = None) -> TensorDict:
    """The token layout of the batch. `response_masks` (default: every response token) is the loss mask."""
    if not (len(prompts) == len(responses) == len(rollout_logprobs)):
        raise ValueError("prompts, responses and log-probs must have one row per sequence")
    if response_masks is None:
        response_masks = [[1] * len(r) for r in responses]
    rows = len(prompts)
    prompt_width = max(len(p) for p in prompts)
    response_width = max(1, max(len(r) for r in responses))
    input_ids = torch.full((rows, prompt_width + response_width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    response_ids = torch.full((rows, response_width), pad_id, dtype=torch.long)
    response_mask = torch.zeros((rows, response_width), dtype=torch.long)
    rollout_log_prob = torch.zeros((rows, response_width), dtype=torch.float32)
    for i, (prompt, response, logprobs, loss_mask) in enumerate(
            zip(prompts, responses, rollout_logprobs, response_masks)):
        if not len(logprobs) == len(loss_mask) == len(response):
            raise ValueError(f"row {i}: {len(response)} response tokens but {len(logprobs)} log-probs and "
                             f"{len(loss_mask)} loss-mask values")
        input_ids[i, prompt_width - len(prompt) : prompt_width] = torch.tensor(prompt)
        attention_mask[i, prompt_width - len(prompt) : prompt_width] = 1
        if response:
            input_ids[i, prompt_width : prompt_width + len(response)] = torch.tensor(response)
            attention_mask[i, prompt_width : prompt_width + len(response)] = 1
            response_ids[i, : len(response)] = torch.tensor(response)
            response_mask[i, : len(response)] = torch.tensor(loss_mask)
            rollout_log_prob[i, : len(response)] = torch.tensor(logprobs)
    return TensorDict(
        {
            "input_ids": input_ids, "attention_mask": attention_mask, "position_ids": _positions(attention_mask),
            "responses": response_ids, "response_mask": response_mask, "rollout_log_prob": rollout_log_prob,
        },
        batch_size=[rows],
    )


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.cumsum(dim=1) - 1).clamp(min=0)


def pad_rows(values: list[list[int]], width: int, fill: int = 0) -> torch.Tensor:
    out = torch.full((len(values), width), fill, dtype=torch.long)
    for i, row in enumerate(values):
        out[i, : len(row)] = torch.tensor(row[:width], dtype=torch.long)
    return out


def widths(batch: TensorDict) -> tuple[int, int]:
    """(P, R): the prompt and response column counts."""
    response = batch["responses"].shape[1]
    return batch["input_ids"].shape[1] - response, response


def _fit(batch: TensorDict, prompt_width: int, response_width: int, pad_id: int) -> TensorDict:
    """The batch with P and R changed: prompt columns added or removed on the left, response columns on the
    right (only padding may be removed)."""
    old_prompt, old_response = widths(batch)
    out = batch.clone(recurse=False)
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor) or value.dim() != 2:
            continue
        fill = pad_id if key in PAD_ID_FIELDS else 0
        if key in SEQUENCE_FIELDS:
            prompt, response = value[:, :old_prompt], value[:, old_prompt:]
            left = prompt_width - old_prompt
            prompt = torch.cat([value.new_full((value.shape[0], left), fill), prompt], 1) if left >= 0 \
                else prompt[:, -left:]
        else:
            response = value
        right = response_width - old_response
        response = torch.cat([response, value.new_full((value.shape[0], right), fill)], 1) if right >= 0 \
            else response[:, :response_width]
        out[key] = torch.cat([prompt, response], 1) if key in SEQUENCE_FIELDS else response
    out["position_ids"] = _positions(out["attention_mask"])
    return out


def concat_batches(batches: list[TensorDict], pad_id: int) -> TensorDict:
    """Rows of several batches (e.g. DAPO's tries) in one, re-padded to common widths; group ids are made
    distinct across the batches."""
    prompt_width = max(widths(b)[0] for b in batches)
    response_width = max(widths(b)[1] for b in batches)
    parts, offset = [], 0
    for b in batches:
        b = _fit(b, prompt_width, response_width, pad_id)
        if "group_id" in b.keys() and b.batch_size[0]:
            b["group_id"] = b["group_id"] + offset
            offset = int(b["group_id"].max()) + 1
        parts.append(b)
    return torch.cat(parts, dim=0)


def compact(batch: TensorDict, pad_id: int) -> TensorDict:
    """The batch trimmed to its longest prompt and response (after rows were dropped), group ids renumbered
    0.. in order of appearance."""
    prompt_width, response_width = widths(batch)
    attention = batch["attention_mask"].bool()
    used_prompt = int(attention[:, :prompt_width].sum(1).max())
    used_response = max(1, int(attention[:, prompt_width:].sum(1).max()))
    out = _fit(batch, used_prompt, used_response, pad_id)
    if "group_id" in out.keys():
        out["group_id"] = torch.unique_consecutive(out["group_id"], return_inverse=True)[1]
    return out
