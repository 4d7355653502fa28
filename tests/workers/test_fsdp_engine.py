"""The engine's scorer and a loss mask that is not the attention mask (a tool's observation inside a response:
attended to, never scored or trained)."""

import pytest
import torch

from rest.trainer.batch import build_batch
from tests.workers.test_packing import load_scorer, score


@pytest.mark.parametrize("remove_padding", [False, True])
def test_tokens_off_the_loss_mask_are_attended_to_but_not_scored(remove_padding):
    prompts, responses = [[11, 12, 13], [14, 15]], [[21, 22, 23, 24, 25], [26, 27]]
    logprobs = [[0.0] * len(r) for r in responses]
    full = build_batch(prompts, responses, logprobs, pad_id=0)
    holed = build_batch(prompts, responses, logprobs, pad_id=0, response_masks=[[1, 0, 0, 1, 1], [1, 1]])
    assert torch.equal(full["attention_mask"], holed["attention_mask"])
    scorer = load_scorer("tiny-qwen3", "sdpa", remove_padding)
    with torch.no_grad():
        full_logprob, full_entropy = score(scorer, full)
        logprob, entropy = score(scorer, holed)
    mask = holed["response_mask"].bool()
    assert torch.all(logprob[~mask] == 0) and torch.all(entropy[~mask] == 0)
    torch.testing.assert_close(logprob[mask], full_logprob[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy[mask], full_entropy[mask], rtol=1e-5, atol=1e-5)
    assert bool((full_logprob[0, 1:3] != 0).all())  # the observation positions do have a log-prob when scored
