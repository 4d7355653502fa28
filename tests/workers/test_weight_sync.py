"""Weight sync: after an FSDP2 update, the vLLM rollout worker generates exactly what transformers generates
with the actor's new weights; and a rollout that missed the sync is caught by the log-prob check."""

import os

import pytest
import ray
import torch

from rest.config.load import load_config
from rest.models.cache import resolve_model_path
from rest.trainer.batch import build_batch
from rest.trainer.cluster import create_worker_groups, start_ray

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["inline", "separate"])
def stack(request, tmp_path_factory):
    """The tiny CPU stack with vLLM's engine core in the rollout actor (the CPU default) or in its own process
    (the GPU default, where weights travel as safetensors files in rollout.weight_sync_dir)."""
    shm = tmp_path_factory.mktemp("shm")
    cfg, groups = start_stack(tmp_path_factory.mktemp("run"), f"rollout.engine_process={request.param}",
                              f"rollout.weight_sync_dir={shm}")
    yield cfg, groups
    groups.actor.shutdown()
    ray.shutdown()


def greedy(groups, prompts, max_tokens=12):
    return [g[0].token_ids for g in groups.rollout.generate(prompts, [[0]] * len(prompts), max_tokens, True)]


def one_update(cfg, groups, prompts):
    n = cfg.rollout.n
    seeds = [[7 * p + k for k in range(n)] for p in range(len(prompts))]
    samples = groups.rollout.generate(prompts, seeds, 16)
    flat = [s for group in samples for s in group]
    batch = build_batch([p for p in prompts for _ in range(n)], [s.token_ids for s in flat],
                        [s.logprobs for s in flat], pad_id=0)
    batch.update(groups.actor.compute_log_prob(batch))
    # seeded: the module's tests share one stack, so what this update does must not depend on the tests that
    # ran before in the session (the global RNG's state)
    noise = torch.randn(len(flat), 1, generator=torch.Generator().manual_seed(len(flat)))
    batch["advantages"] = noise.expand_as(batch["response_mask"]).contiguous()
    groups.actor.update_policy(batch)
    return batch


def start_stack(run_dir, *overrides):
    cfg = load_config(["+recipe=tiny_cpu", "actor.lr=1e-4", f"trainer.run_dir={run_dir}", *overrides])
    start_ray(cfg)
    return cfg, create_worker_groups(cfg, str(resolve_model_path(cfg.model.path)), total_steps=1)


def actor_only(stack):
    """The tests of the actor's update need one engine mode: skip the second (it costs slow steps)."""
    if stack[0].rollout.engine_process != "inline":
        pytest.skip("the actor update does not depend on the engine process; tested with the inline engine")


def test_vllm_matches_transformers_after_update(stack, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg, groups = stack
    prompts = [[9707, 11, 1879, 0], [151644, 872, 198, 3838, 374], [40, 1079, 264, 5392], [785, 3974, 13876, 38835]]
    before = greedy(groups, prompts)
    batch = one_update(cfg, groups, prompts)
    assert float(batch["rollout_log_prob"].sub(batch["old_log_prob"]).abs().max()) < 1e-3

    refs = groups.actor.export_weights(cfg.rollout.dtype)  # non-blocking: one ObjectRef per rank
    groups.rollout.load_weights(refs)  # every rank exports its shards; the rollout assembles them
    after = greedy(groups, prompts)

    groups.actor.save_hf(str(tmp_path))
    model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    expected = []
    for prompt in prompts:
        out = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                             attention_mask=torch.ones(1, len(prompt), dtype=torch.long), eos_token_id=None,
                             pad_token_id=0)
        expected.append(out[0, len(prompt):].tolist())
    assert after == [e[: len(a)] for a, e in zip(after, expected)]
    assert after != before  # the update changed the policy, and vLLM follows it
    assert not any(os.scandir(cfg.rollout.weight_sync_dir))  # files of a separate engine's sync are removed


def test_missed_sync_shows_in_logprob_diff(stack):
    actor_only(stack)
    cfg, groups = stack
    prompts = [[9707, 11, 1879, 0], [40, 1079, 264, 5392]]
    one_update(cfg, groups, prompts)  # actor moves; the rollout is NOT synced
    n = cfg.rollout.n
    samples = groups.rollout.generate(prompts, [[k for k in range(n)]] * 2, 16)
    flat = [s for group in samples for s in group]
    batch = build_batch([p for p in prompts for _ in range(n)], [s.token_ids for s in flat],
                        [s.logprobs for s in flat], pad_id=0)
    batch.update(groups.actor.compute_log_prob(batch))
    mask = batch["response_mask"].bool()
    assert float((batch["rollout_log_prob"] - batch["old_log_prob"]).abs()[mask].max()) > 1e-3


def test_update_moves_log_probs_in_the_direction_of_the_advantage(stack):
    """The sign and scale of the whole update path (loss, aggregation over ranks, FSDP gradients, AdamW)."""
    actor_only(stack)
    cfg, groups = stack
    prompts = [[9707, 11, 1879, 0], [40, 1079, 264, 5392]]
    n = cfg.rollout.n
    samples = groups.rollout.generate(prompts, [[11 * p + k for k in range(n)] for p in range(2)], 16)
    flat = [s for group in samples for s in group]
    batch = build_batch([p for p in prompts for _ in range(n)], [s.token_ids for s in flat],
                        [s.logprobs for s in flat], pad_id=0)
    batch.update(groups.actor.compute_log_prob(batch))
    sign = torch.tensor([1.0, -1.0] * (len(flat) // 2))
    batch["advantages"] = sign[:, None].expand_as(batch["response_mask"]).contiguous()
    before = batch["old_log_prob"].clone()
    groups.actor.update_policy(batch)
    after = groups.actor.compute_log_prob(batch)["old_log_prob"]
    mask = batch["response_mask"].float()
    change = ((after - before) * mask).sum(-1) / mask.sum(-1)
    # per sequence the samples of one prompt interfere; on average the update follows the advantage
    assert float(change[sign > 0].mean()) > 0 > float(change[sign < 0].mean()), change
