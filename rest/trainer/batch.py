"""The training batch: prompts and sampled responses as one TensorDict with named fields.

Layout (verl's): prompts left-padded to the longest prompt P, responses right-padded to the longest response R,
so every row is [pad.. prompt | response ..pad] and the last R columns are the response. Fields:
  input_ids, attention_mask, position_ids  [B, P+R]
  responses, response_mask, rollout_log_prob  [B, R]
Later phases add old_log_prob, entropy, advantages and token_weights ([B, R]).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict


def build_batch(prompts: list[list[int]], responses: list[list[int]], rollout_logprobs: list[list[float]],
                pad_id: int) -> TensorDict:
    if not (len(prompts) == len(responses) == len(rollout_logprobs)):
        raise ValueError("prompts, responses and log-probs must have one row per sequence")
    rows = len(prompts)
    prompt_width = max(len(p) for p in prompts)
    response_width = max(1, max(len(r) for r in responses))
    input_ids = torch.full((rows, prompt_width + response_width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    response_ids = torch.full((rows, response_width), pad_id, dtype=torch.long)
    response_mask = torch.zeros((rows, response_width), dtype=torch.long)
    rollout_log_prob = torch.zeros((rows, response_width), dtype=torch.float32)
    for i, (prompt, response, logprobs) in enumerate(zip(prompts, responses, rollout_logprobs)):
        if len(logprobs) != len(response):
            raise ValueError(f"row {i}: {len(response)} response tokens but {len(logprobs)} log-probs")
        input_ids[i, prompt_width - len(prompt) : prompt_width] = torch.tensor(prompt)
        attention_mask[i, prompt_width - len(prompt) : prompt_width] = 1
        if response:
            input_ids[i, prompt_width : prompt_width + len(response)] = torch.tensor(response)
            attention_mask[i, prompt_width : prompt_width + len(response)] = 1
            response_ids[i, : len(response)] = torch.tensor(response)
            response_mask[i, : len(response)] = 1
            rollout_log_prob[i, : len(response)] = torch.tensor(logprobs)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return TensorDict(
        {
            "input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
            "responses": response_ids, "response_mask": response_mask, "rollout_log_prob": rollout_log_prob,
        },
        batch_size=[rows],
    )


def pad_rows(values: list[list[int]], width: int, fill: int = 0) -> torch.Tensor:
    out = torch.full((len(values), width), fill, dtype=torch.long)
    for i, row in enumerate(values):
        out[i, : len(row)] = torch.tensor(row[:width], dtype=torch.long)
    return out
