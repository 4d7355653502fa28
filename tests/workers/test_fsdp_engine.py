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


def test_observation_tokens_get_no_gradient_through_the_actor_loss():
    """The real scorer and the actor's injected loss (`ppo_loss`, ResT's preset) on a multi-turn layout: the loss
    has zero gradient with respect to the log-probs of observation tokens (mask 0), and whatever advantages, old
    log-probs or weights those tokens carry, the parameter gradients are the same."""
    from rest.algo import objective
    from rest.config.load import load_config
    from rest.workers.fsdp_actor import ppo_loss

    algo = load_config(["+recipe=multiturn_cpu"]).algorithm
    prompts, responses = [[11, 12, 13], [14, 15]], [[21, 22, 23, 24, 25, 26], [27, 28, 29]]
    masks = [[1, 1, 0, 0, 0, 1], [1, 0, 1]]
    batch = build_batch(prompts, responses, [[0.0] * len(r) for r in responses], pad_id=0, response_masks=masks)
    mask = batch["response_mask"].bool()
    scorer = load_scorer("tiny-qwen3", "sdpa", remove_padding=False)
    with torch.no_grad():
        batch["old_log_prob"] = score(scorer, batch)[0] - 0.05 * mask  # slightly off-policy: ratios != 1
    torch.manual_seed(0)
    batch["advantages"] = torch.randn(mask.shape) * mask
    batch["token_weights"] = (0.5 + torch.rand(mask.shape)) * mask

    def gradients(micro):
        scorer.zero_grad()
        denominator = objective.loss_denominator(micro["response_mask"], micro["token_weights"], algo, norm_len=8)
        log_prob, _ = score(scorer, micro)
        log_prob.retain_grad()
        loss, _ = ppo_loss(algo, 8, denominator, fused=False)(log_prob, micro)
        loss.backward()
        return log_prob.grad, {n: p.grad.clone() for n, p in scorer.named_parameters() if p.grad is not None}

    grad_log_prob, grads = gradients(batch)
    assert torch.all(grad_log_prob[~mask] == 0) and torch.all(grad_log_prob[mask] != 0)
    noisy = batch.clone()
    for key in ("advantages", "old_log_prob", "token_weights"):
        noisy[key] = torch.where(mask, batch[key], torch.full_like(batch[key], 1e3))
    _, noisy_grads = gradients(noisy)
    assert grads.keys() == noisy_grads.keys() and len(grads) > 0
    for name in grads:
        torch.testing.assert_close(noisy_grads[name], grads[name], rtol=0, atol=0)
