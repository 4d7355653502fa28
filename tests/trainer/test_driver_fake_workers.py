"""The control plane on CPU: `Trainer.train_step` with fake worker groups (no Ray, no vLLM, no FSDP).

The fake rollout answers every prompt with scripted responses (token ids of the real Qwen3 tokenizer, so the
real reward and region labelling run on them) and records the seeds it was given; the fake actor returns the
rollout's log-probs (plus a chosen shift) as the old policy's and records the batch its update received. With
algorithm.reward.schedule=false the three responses score 4 (right call), 2 (right name, wrong argument value:
format 1 + correctness 6 * (1 + 1 + 0) / 3 - 3 = 1) and -3 (no tags: format 0, correctness -3).
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict

from rest.config.load import load_config
from rest.data.prompt_set import Prompt
from rest.models.cache import load_tokenizer, resolve_model_path
from rest.trainer.loop import Trainer
from rest.trainer.phases import WeightSyncError
from rest.trainer.timing import PhaseTimer
from rest.tooluse.regions import Region, label_response
from rest.workers.dispatch import WorkerOutput
from rest.workers.rollout import Sample

GROUND_TRUTH = '<tool_call>\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n</tool_call>'
TEXTS = {
    "right": '<think>Look up the weather.</think>\n<tool_call>\n{"name": "get_weather", "parameters": '
             '{"city": "Paris"}}\n</tool_call><|im_end|>',
    "wrong": '<think>Look up the weather.</think>\n<tool_call>\n{"name": "get_weather", "parameters": '
             '{"city": "Rome"}}\n</tool_call><|im_end|>',
    "malformed": "It is sunny in Paris.<|im_end|>",
}
REWARD = {"right": 4.0, "wrong": 2.0, "malformed": -3.0}  # algorithm.reward.schedule=false
MIXED = ["right", "wrong", "malformed", "malformed"]  # rewards 4, 2, -3, -3: mean 0, unbiased std sqrt(38/3)
MOSTLY_RIGHT = ["right", "right", "right", "wrong"]  # 4, 4, 4, 2: mean 3.5, unbiased std 1
ALL_RIGHT = ["right"] * 4  # all equal: DAPO drops the group
ALL_MALFORMED = ["malformed"] * 4


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model_path("qwen3-tokenizer"))


@pytest.fixture(scope="module")
def ids(tokenizer):
    return {kind: tokenizer.encode(text, add_special_tokens=False) for kind, text in TEXTS.items()}


class FakeRollout:
    """Answers prompt i with script[i] (one response kind per sample); records every generate call."""

    def __init__(self, ids: dict[str, list[int]], script: dict[tuple, list[str]]):
        self.ids, self.script = ids, script
        self.calls: list[dict] = []
        self.loaded: list = []

    def generate(self, prompt_ids, seeds, max_tokens, greedy=False):
        self.calls.append({"prompts": [tuple(p) for p in prompt_ids], "seeds": seeds, "max_tokens": max_tokens})
        out = []
        for prompt, prompt_seeds in zip(prompt_ids, seeds):
            kinds = self.script[tuple(prompt)]
            assert len(kinds) == len(prompt_seeds), "one seed per sample"
            out.append([self._sample(self.ids[kind], max_tokens) for kind in kinds])
        return out

    @staticmethod
    def _sample(token_ids, max_tokens):
        token_ids = token_ids[:max_tokens]
        logprobs = [-0.1 - 0.05 * (t % 7) for t in range(len(token_ids))]
        return Sample(list(token_ids), logprobs, "stop" if len(token_ids) < max_tokens else "length")

    def load_weights(self, refs):
        self.loaded.append(refs)


class FakeActor:
    """compute_log_prob: the rollout log-probs + shift(batch) as old_log_prob, a fixed entropy ramp.
    update_policy: records the batch; fused (the driver said so), it returns the old log-probs its own forward
    would have measured, as rest.workers.fsdp_actor does. export_weights: non-blocking, returns refs at once."""

    def __init__(self, shift=None):
        self.shift = shift or (lambda batch: torch.zeros_like(batch["rollout_log_prob"]))
        self.batches: list[TensorDict] = []
        self.fused: list[bool] = []
        self.log_prob_calls = 0
        self.exports: list[str] = []

    def _old_log_prob(self, batch):
        mask = batch["response_mask"].float()
        return (batch["rollout_log_prob"] + self.shift(batch)) * mask

    def compute_log_prob(self, batch):
        self.log_prob_calls += 1
        mask = batch["response_mask"].float()
        columns = torch.arange(mask.shape[1], dtype=torch.float32)
        entropy = (0.2 + 0.1 * (columns % 5)).expand_as(mask) * mask
        return TensorDict({"old_log_prob": self._old_log_prob(batch), "entropy": entropy},
                          batch_size=batch.batch_size)

    def update_policy(self, batch, fused_old_log_prob):
        self.batches.append(batch.clone())
        self.fused.append(fused_old_log_prob)
        metrics = {"actor/pg_loss": 0.25, "actor/grad_norm": 1.5}
        fused = TensorDict({"old_log_prob": self._old_log_prob(batch)}, batch_size=batch.batch_size)
        return WorkerOutput(fused if fused_old_log_prob else None, metrics)

    def export_weights(self, dtype):
        self.exports.append(dtype)
        return [f"weights-{len(self.exports)}"]


def make_prompts(tokenizer, scripts: list[list[str]]) -> list[Prompt]:
    prompts = []
    for i in range(len(scripts)):
        text = f"<|im_start|>user\nWhat is the weather in city number {i}?<|im_end|>\n<|im_start|>assistant\n"
        prompts.append(Prompt(f"p{i}", tokenizer.encode(text, add_special_tokens=False), GROUND_TRUTH, []))
    return prompts


def make_trainer(tokenizer, ids, scripts, *overrides, shift=None, total_steps=10):
    """A Trainer over len(scripts) prompts (taken in order), 2 prompts x 4 samples per step by default."""
    cfg = load_config(["+recipe=tiny_cpu", "data.train_batch_size=2", "actor.ppo_mini_batch_size=2",
                       "actor.ppo_micro_batch_size=2", "rollout.n=4", "data.shuffle=false",
                       "trainer.progress_bar=false", *overrides])
    prompts = make_prompts(tokenizer, scripts)
    rollout = FakeRollout(ids, {tuple(p.prompt_ids): kinds for p, kinds in zip(prompts, scripts)})
    groups = SimpleNamespace(actor=FakeActor(shift), rollout=rollout)
    trainer = Trainer(cfg, groups, tokenizer, prompts, validator=None, total_steps=total_steps)
    return trainer, prompts


def step(trainer, at=1):
    trainer.step = at
    return trainer.train_step()


def row_prompts(batch, prompts) -> list[str]:
    """The uid of each row's prompt (the left-padded prompt columns of input_ids)."""
    by_ids = {tuple(p.prompt_ids): p.uid for p in prompts}
    width = batch["input_ids"].shape[1] - batch["responses"].shape[1]
    return [by_ids[tuple(row[:width][mask[:width].bool()].tolist())]
            for row, mask in zip(batch["input_ids"], batch["attention_mask"])]


def row_kinds(batch, ids) -> list[str]:
    by_ids = {tuple(v): k for k, v in ids.items()}
    return [by_ids[tuple(row[mask.bool()].tolist())] for row, mask in zip(batch["responses"], batch["response_mask"])]


def per_row_advantage(batch) -> torch.Tensor:
    """The one advantage of each row (constant over its valid tokens, 0 on padding)."""
    adv, mask = batch["advantages"], batch["response_mask"].bool()
    values = torch.stack([a[m][0] for a, m in zip(adv, mask)])
    for a, m, v in zip(adv, mask, values):
        assert torch.all(a[m] == v) and torch.all(a[~m] == 0)
    return values


def grpo_expected(kinds: list[str], norm_by_std: bool) -> list[float]:
    rewards = [REWARD[k] for k in kinds]
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1))
    return [(r - mean) / (std + 1e-6) if norm_by_std else r - mean for r in rewards]


# ---------------------------------------------------------------- one step of every preset
PRESETS = [("rest", []), ("rest_static", []), ("grpo", []), ("drgrpo", []), ("dapo", []),
           ("rest", ["algorithm.region_weights.mode=variance_bound"])]


@pytest.mark.parametrize("preset,extra", PRESETS, ids=["rest", "rest_static", "grpo", "drgrpo", "dapo",
                                                       "variance_bound"])
def test_one_step_of_every_preset_hands_the_actor_a_complete_batch(tokenizer, ids, preset, extra):
    trainer, prompts = make_trainer(tokenizer, ids, [MIXED, MOSTLY_RIGHT, MIXED, MOSTLY_RIGHT],
                                    f"algorithm={preset}", *extra)
    metrics = step(trainer)
    actor, rollout, cfg = trainer.groups.actor, trainer.groups.rollout, trainer.cfg
    [batch] = actor.batches
    weighted = cfg.algorithm.region_weights.mode != "none"
    fused = preset in ("rest_static", "grpo", "drgrpo", "dapo")  # 1 epoch, 1 mini-batch, no entropy weights
    assert trainer.fused_old_log_prob is fused
    assert batch.batch_size == torch.Size([8])
    expected = {"input_ids", "attention_mask", "position_ids", "responses", "response_mask", "rollout_log_prob",
                "group_id", "truncated", "uid", "ground_truth", "rewards", "reward_nonfinite", "regions",
                "advantages"}
    if weighted:
        expected.add("token_weights")
    if not fused:
        expected |= {"old_log_prob", "entropy"}
    assert set(batch.keys()) == expected
    assert actor.log_prob_calls == (0 if fused else 1)
    # the rows: prompt p0's 4 samples, then p1's, in the scripted order
    assert row_prompts(batch, prompts) == ["p0"] * 4 + ["p1"] * 4
    assert row_kinds(batch, ids) == MIXED + MOSTLY_RIGHT
    assert list(batch["uid"]) == ["p0"] * 4 + ["p1"] * 4 and batch["group_id"].tolist() == [0] * 4 + [1] * 4
    assert list(batch["ground_truth"]) == [GROUND_TRUTH] * 8 and not batch["truncated"].any()
    assert set(batch["rewards"].keys()) == {"format", "correctness", "total"}
    assert float(batch["rewards", "total"].max()) == pytest.approx(metrics["critic/reward_max"])
    n_right = len(ids["right"])
    assert batch["regions"][0, :n_right].tolist() == [int(r) for r in label_response(ids["right"], tokenizer)]
    assert trainer.groups.actor.fused == [fused]
    assert rollout.calls[0]["max_tokens"] == cfg.data.max_response_length == 32
    # the rollout's own log-probs, right-padded with 0, and (unfused) the actor's old log-probs beside them
    n = len(ids["right"])
    assert batch["rollout_log_prob"][0, :n].tolist() == pytest.approx([-0.1 - 0.05 * (t % 7) for t in range(n)])
    assert torch.all(batch["rollout_log_prob"][0, n:] == 0)
    if not fused:
        assert torch.equal(batch["old_log_prob"], batch["rollout_log_prob"])
    adv = per_row_advantage(batch)
    for group in (adv[:4], adv[4:]):  # std-normalised or not, the group baseline is the group mean
        assert float(group.sum()) == pytest.approx(0.0, abs=1e-5)
    if cfg.algorithm.norm_adv_by_std:
        assert float(adv[:4].std()) == pytest.approx(1.0, abs=1e-5)  # unit (unbiased) std within each group
        assert float(adv[4:].std()) == pytest.approx(1.0, abs=1e-5)
    if weighted:
        w, mask = batch["token_weights"], batch["response_mask"].bool()
        assert torch.all(w[~mask] == 0) and torch.all(torch.isfinite(w)) and torch.all(w >= 0)
        for row_w, row_m, kind in zip(w, mask, MIXED + MOSTLY_RIGHT):  # mean 1 over each row's weighted tokens
            active = row_w[row_m & (row_w > 0)]
            if kind == "malformed" and preset == "rest_static":  # only 'other' tokens, which weigh 0 there
                assert active.numel() == 0
                continue
            assert float(active.mean()) == pytest.approx(1.0, abs=1e-5)
        assert metrics["rest/weight/format"] > 0
    # the step's metrics: rewards under the preset's own (scheduled) reward at step 1, the actor's, the timings
    assert metrics["training/step"] == 1 and metrics["actor/pg_loss"] == 0.25
    # max_f + max_c = 2 - 1/150 + 2 + 1/150; DAPO's overlong punishment with L_max = 32 < L_cache = 512 starts
    # below length 0, so even the 28-token right call loses (32 - 512 - 28) / 512
    overlong = (32 - 512 - 28) / 512 if preset == "dapo" else 0.0
    assert metrics["critic/reward_max"] == pytest.approx(4.0 + overlong, abs=1e-5)
    assert metrics["rollout/logprob_diff_max"] == 0.0
    assert metrics["response_length/max"] == max(len(v) for v in ids.values())
    assert {"timing_s/gen", "timing_s/reward", "timing_s/adv", "timing_s/update_actor", "timing_s/sync"} <= set(metrics)
    assert ("dapo/tries" in metrics) is (preset == "dapo")
    # the weight sync: the actor's shards exported in the rollout dtype, handed to the rollout
    assert actor.exports == [cfg.rollout.dtype] and rollout.loaded == [["weights-1"]]


@pytest.mark.parametrize("preset,norm_by_std", [("grpo", True), ("drgrpo", False)])
@pytest.mark.parametrize("old_log_prob", ["auto", "recompute"])
def test_grpo_and_drgrpo_advantages_by_hand(tokenizer, ids, preset, norm_by_std, old_log_prob):
    trainer, _ = make_trainer(tokenizer, ids, [MIXED, MOSTLY_RIGHT], f"algorithm={preset}",
                              "algorithm.reward.schedule=false", f"actor.old_log_prob={old_log_prob}")
    metrics = step(trainer)
    [batch] = trainer.groups.actor.batches
    adv = per_row_advantage(batch).tolist()
    # MIXED: rewards 4, 2, -3, -3 (mean 0, std sqrt(38/3)); MOSTLY_RIGHT: 4, 4, 4, 2 (mean 3.5, std 1)
    s = math.sqrt(38 / 3)
    by_hand = ([4 / s, 2 / s, -3 / s, -3 / s, 0.5, 0.5, 0.5, -1.5] if norm_by_std
               else [4.0, 2.0, -3.0, -3.0, 0.5, 0.5, 0.5, -1.5])
    assert adv == pytest.approx(by_hand, abs=1e-5)
    assert adv == pytest.approx(grpo_expected(MIXED, norm_by_std) + grpo_expected(MOSTLY_RIGHT, norm_by_std),
                                abs=1e-6)
    assert metrics["critic/reward_mean"] == pytest.approx((0 + 14) / 8)
    assert metrics["critic/reward_min"] == -3.0 and metrics["critic/reward_max"] == 4.0
    assert ("old_log_prob" in batch.keys()) is (old_log_prob == "recompute")
    assert batch["rewards", "total"].tolist() == [REWARD[k] for k in MIXED + MOSTLY_RIGHT]


def test_groups_stay_intact_when_rows_are_balanced_over_ranks(tokenizer, ids):
    """actor.max_tokens_per_micro_batch reorders the rows for equal token loads per rank; every row's
    advantage must still come from its own prompt's group."""
    trainer, prompts = make_trainer(tokenizer, ids, [MIXED, MOSTLY_RIGHT], "algorithm=grpo",
                                    "algorithm.reward.schedule=false", "actor.max_tokens_per_micro_batch=512",
                                    "actor.use_remove_padding=true")
    step(trainer)
    [batch] = trainer.groups.actor.batches
    uids, kinds, adv = row_prompts(batch, prompts), row_kinds(batch, ids), per_row_advantage(batch)
    assert sorted(zip(uids, kinds)) == sorted(zip(["p0"] * 4 + ["p1"] * 4, MIXED + MOSTLY_RIGHT))
    assert uids != ["p0"] * 4 + ["p1"] * 4  # really reordered (else this test proves nothing)
    expected = {("p0", k): a for k, a in zip(MIXED, grpo_expected(MIXED, True))}
    expected |= {("p1", k): a for k, a in zip(MOSTLY_RIGHT, grpo_expected(MOSTLY_RIGHT, True))}
    assert adv.tolist() == pytest.approx([expected[u, k] for u, k in zip(uids, kinds)], abs=1e-5)


def test_static_region_weights_at_the_step_by_hand(tokenizer, ids):
    """rest_static at step 3: format 1, name 1.2, params = cot = 0.6 + 0.002 * 3, other 0; per row over
    its weighted tokens divided by their mean."""
    trainer, _ = make_trainer(tokenizer, ids, [MIXED, MOSTLY_RIGHT, MIXED, MOSTLY_RIGHT], "algorithm=rest_static")
    step(trainer, at=3)
    [batch] = trainer.groups.actor.batches
    regions = [int(r) for r in label_response(ids["right"], tokenizer)]
    counts = {r: regions.count(int(r)) for r in Region}
    assert (counts[Region.FORMAT], counts[Region.NAME], counts[Region.PARAMS], counts[Region.COT]) == (4, 2, 6, 5)
    raw = {Region.OTHER: 0.0, Region.FORMAT: 1.0, Region.NAME: 1.2, Region.PARAMS: 0.606, Region.COT: 0.606}
    mean = (4 * 1.0 + 2 * 1.2 + 6 * 0.606 + 5 * 0.606) / 17
    row = batch["token_weights"][0]  # p0's first sample is the right call
    n = len(ids["right"])
    assert row[:n].tolist() == pytest.approx([raw[Region(r)] / mean for r in regions], rel=1e-5)
    assert torch.all(row[n:] == 0)


# ---------------------------------------------------------------- DAPO dynamic sampling
def test_dapo_drops_all_equal_groups_and_draws_more_prompts(tokenizer, ids):
    scripts = [ALL_RIGHT, MIXED, ALL_MALFORMED, MOSTLY_RIGHT, MIXED, MIXED]
    trainer, prompts = make_trainer(tokenizer, ids, scripts, "algorithm=dapo", "algorithm.overlong.enable=false",
                                    "algorithm.reward.schedule=false")
    metrics = step(trainer)
    rollout = trainer.groups.rollout
    # try 1 drew p0 (all equal, dropped), p1 (kept); try 2 drew p2 (dropped), p3 (kept): full, stop
    assert [call["prompts"] for call in rollout.calls] == [
        [tuple(prompts[0].prompt_ids), tuple(prompts[1].prompt_ids)],
        [tuple(prompts[2].prompt_ids), tuple(prompts[3].prompt_ids)]]
    assert metrics["dapo/tries"] == 2 and metrics["dapo/filled_groups"] == 0
    [batch] = trainer.groups.actor.batches
    assert row_prompts(batch, prompts) == ["p1"] * 4 + ["p3"] * 4
    assert per_row_advantage(batch).tolist() == pytest.approx(
        grpo_expected(MIXED, True) + grpo_expected(MOSTLY_RIGHT, True), abs=1e-5)
    # every try drew fresh seeds
    seeds = [s for call in rollout.calls for per_prompt in call["seeds"] for s in per_prompt]
    assert len(set(seeds)) == len(seeds) == 16


def test_dapo_fills_a_short_batch_with_dropped_groups_after_max_tries(tokenizer, ids):
    scripts = [ALL_RIGHT, ALL_MALFORMED, MIXED, ALL_RIGHT, ALL_MALFORMED, MIXED]
    trainer, prompts = make_trainer(tokenizer, ids, scripts, "algorithm=dapo", "algorithm.overlong.enable=false",
                                    "algorithm.reward.schedule=false", "algorithm.dynamic_sampling.max_tries=2")
    metrics = step(trainer)
    assert len(trainer.groups.rollout.calls) == 2  # max_tries, though only one group was kept
    assert metrics["dapo/tries"] == 2 and metrics["dapo/filled_groups"] == 1
    [batch] = trainer.groups.actor.batches
    # kept first (p2, from try 2), then the first dropped group (p0) fills the batch with zero advantage
    assert row_prompts(batch, prompts) == ["p2"] * 4 + ["p0"] * 4
    adv = per_row_advantage(batch)
    assert adv[:4].tolist() == pytest.approx(grpo_expected(MIXED, True), abs=1e-5)
    assert torch.all(adv[4:] == 0)


def test_without_dynamic_sampling_all_equal_groups_stay_with_zero_advantage(tokenizer, ids):
    trainer, prompts = make_trainer(tokenizer, ids, [ALL_RIGHT, MIXED], "algorithm=grpo")
    metrics = step(trainer)
    assert len(trainer.groups.rollout.calls) == 1 and "dapo/tries" not in metrics
    [batch] = trainer.groups.actor.batches
    assert row_prompts(batch, prompts) == ["p0"] * 4 + ["p1"] * 4
    assert torch.all(per_row_advantage(batch)[:4] == 0)


# ---------------------------------------------------------------- overlong penalty
def test_overlong_penalty_is_added_to_the_reward(tokenizer, ids):
    """DAPO's soft punishment with L_max = 32, L_cache = 16, factor 2: the 28-token right call scores
    4 + 2 * (32 - 16 - 28) / 16 = 2.5; the short malformed answer (<= 16 tokens) is not punished."""
    assert len(ids["right"]) == 28 and len(ids["malformed"]) <= 16
    trainer, _ = make_trainer(tokenizer, ids, [MIXED, MOSTLY_RIGHT], "algorithm=dapo",
                              "algorithm.reward.schedule=false", "algorithm.overlong.buffer_len=16",
                              "algorithm.overlong.penalty_factor=2.0")
    trainer.step = 1
    batch, _ = trainer._rollout_and_score(0.0, PhaseTimer())
    wrong = 2.0 + 2 * (16 - len(ids["wrong"])) / 16
    assert batch["rewards", "total"].tolist() == pytest.approx([2.5, wrong, -3.0, -3.0, 2.5, 2.5, 2.5, wrong])
    assert batch["rewards", "correctness"][[0, 4]].tolist() == [3.0, 3.0]  # the penalty is on the total only
    metrics = step(trainer, at=2)
    assert metrics["critic/reward_max"] == pytest.approx(2.5)


def test_overlong_penalty_off_leaves_the_reward(tokenizer, ids):
    trainer, _ = make_trainer(tokenizer, ids, [MIXED, MOSTLY_RIGHT], "algorithm=grpo",
                              "algorithm.reward.schedule=false", "algorithm.overlong.buffer_len=16")
    trainer.step = 1
    batch, _ = trainer._rollout_and_score(0.0, PhaseTimer())
    assert batch["rewards", "total"][:4].tolist() == [4.0, 2.0, -3.0, -3.0]


# ---------------------------------------------------------------- seeds
def test_seeds_are_distinct_per_step_prompt_and_sample_and_repeat_with_the_step(tokenizer, ids):
    scripts = [MIXED, MOSTLY_RIGHT] * 3
    trainer, _ = make_trainer(tokenizer, ids, scripts, "algorithm=grpo", "trainer.seed=7")
    for at in (1, 2):
        step(trainer, at=at)
    first, second = (call["seeds"] for call in trainer.groups.rollout.calls)
    assert [len(s) for s in first] == [4, 4]
    flat = [s for seeds in (first, second) for per_prompt in seeds for s in per_prompt]
    assert len(set(flat)) == len(flat) == 16
    assert all(0 <= s < 2**31 - 1 for s in flat)
    # rest.workers.rollout.sample_seed(run seed 7, step 100 * step + try, prompt p, sample k)
    assert second[1][3] == ((7 * 1_000_003 + 200) * 1_000_033 + 1 * 1009 + 3) % (2**31 - 1)
    # a replayed step (a resumed run, or a step redone after an actor restart) draws the same seeds
    again, _ = make_trainer(tokenizer, ids, scripts, "algorithm=grpo", "trainer.seed=7")
    step(again, at=2)
    assert again.groups.rollout.calls[0]["seeds"] == second
    other, _ = make_trainer(tokenizer, ids, scripts, "algorithm=grpo", "trainer.seed=8")
    step(other, at=2)
    assert not set(s for p in other.groups.rollout.calls[0]["seeds"] for s in p) & set(flat)


# ---------------------------------------------------------------- the weight-sync check
@pytest.mark.parametrize("old_log_prob", ["auto", "recompute"])
def test_a_log_prob_diff_over_the_threshold_raises_weight_sync_error(tokenizer, ids, old_log_prob):
    shift = lambda batch: torch.full_like(batch["rollout_log_prob"], 0.01)  # noqa: E731
    trainer, _ = make_trainer(tokenizer, ids, [MIXED, MOSTLY_RIGHT], "algorithm=grpo",
                              f"actor.old_log_prob={old_log_prob}", shift=shift)
    assert trainer.cfg.rollout.logprob_diff_threshold == 1e-3
    with pytest.raises(WeightSyncError, match=r"step 1: rollout/logprob_diff_max = 0\.01 > "
                                              r"rollout\.logprob_diff_threshold = 0\.001"):
        step(trainer)
    assert trainer.groups.rollout.loaded == []  # no weights handed over after the failed check
    if old_log_prob == "recompute":
        assert trainer.groups.actor.batches == []  # checked before the update


@pytest.mark.parametrize("old_log_prob", ["auto", "recompute"])
def test_a_log_prob_diff_under_the_threshold_is_reported(tokenizer, ids, old_log_prob):
    shift = lambda batch: torch.full_like(batch["rollout_log_prob"], 5e-4)  # noqa: E731
    trainer, _ = make_trainer(tokenizer, ids, [MIXED, MOSTLY_RIGHT], "algorithm=grpo",
                              f"actor.old_log_prob={old_log_prob}", shift=shift)
    metrics = step(trainer)
    assert metrics["rollout/logprob_diff_max"] == pytest.approx(5e-4, rel=1e-3)
    assert metrics["rollout/logprob_diff_mean"] == pytest.approx(5e-4, rel=1e-3)
    assert trainer.groups.rollout.loaded == [["weights-1"]]


def test_a_null_threshold_turns_the_check_off(tokenizer, ids):
    shift = lambda batch: torch.full_like(batch["rollout_log_prob"], 3.0)  # noqa: E731
    trainer, _ = make_trainer(tokenizer, ids, [MIXED, MOSTLY_RIGHT], "algorithm=grpo",
                              "rollout.logprob_diff_threshold=null", shift=shift)
    assert step(trainer)["rollout/logprob_diff_max"] == pytest.approx(3.0)


# ---------------------------------------------------------------- rollout correction
def test_rollout_correction_weights_tokens_and_masks_sequences(tokenizer, ids):
    """pi_old / pi_rollout = e^0.5 on every token of the malformed answers, 1 elsewhere: token TIS caps it at
    1.5; the malformed sequences' ratio e^(0.5 L) > 2 puts them out of the loss (response mask 0)."""
    malformed = torch.tensor(ids["malformed"])

    def shift(batch):
        rows = [bool(torch.equal(r[m.bool()], malformed)) for r, m in zip(batch["responses"], batch["response_mask"])]
        return 0.5 * torch.tensor(rows, dtype=torch.float32)[:, None].expand_as(batch["rollout_log_prob"])

    trainer, _ = make_trainer(tokenizer, ids, [MIXED, MOSTLY_RIGHT], "algorithm=grpo",
                              "algorithm.reward.schedule=false", "rollout.logprob_diff_threshold=null",
                              "algorithm.rollout_correction.token_is_cap=1.5",
                              "algorithm.rollout_correction.seq_mask_high=2.0", shift=shift)
    assert not trainer.fused_old_log_prob  # the correction needs pi_old before the update
    metrics = step(trainer)
    [batch] = trainer.groups.actor.batches
    assert "rollout_is_weights" in batch.keys() and "old_log_prob" in batch.keys()
    masked = [k == "malformed" for k in MIXED + MOSTLY_RIGHT]  # rows 2 and 3
    lengths = batch["response_mask"].sum(-1).tolist()
    assert [n == 0 for n in lengths] == masked
    full = [len(ids[k]) for k in MIXED + MOSTLY_RIGHT]
    assert [n for n, m in zip(lengths, masked) if not m] == [n for n, m in zip(full, masked) if not m]
    weights = batch["rollout_is_weights"]
    for row, (kind, n) in enumerate(zip(MIXED + MOSTLY_RIGHT, full)):
        if kind != "malformed":
            assert torch.all(weights[row, :n] == 1.0)
    assert torch.all(weights[torch.tensor(masked)] == 0)  # masked rows carry no IS weight either
    # e^0.5 > 1.5 on every malformed token: they are the capped ones among all valid (pre-mask) tokens
    assert metrics["rollout_corr/token_capped_fraction"] == pytest.approx(2 * len(ids["malformed"]) / sum(full))
    assert torch.all(batch["advantages"][torch.tensor(masked)] == 0)  # no gradient from masked rows
    # the advantages were computed from the rewards of all rows (the baseline keeps the masked samples)
    assert batch["advantages"][0, 0].item() == pytest.approx(grpo_expected(MIXED, True)[0], abs=1e-5)
    assert metrics["rollout_corr/seq_masked_fraction"] == pytest.approx(2 / 8)


# ---------------------------------------------------------------- non-finite rewards
def nan_on_wrong(trainer):
    real = trainer.reward_fn

    def reward(solution, ground_truth, step, progress):
        score = real(solution, ground_truth, step, progress)
        return {**score, "total": float("nan")} if "Rome" in solution else score

    trainer.reward_fn = reward


def test_a_non_finite_reward_stops_the_step_naming_sample_and_prompt(tokenizer, ids):
    trainer, _ = make_trainer(tokenizer, ids, [MOSTLY_RIGHT, MIXED], "algorithm=grpo")
    nan_on_wrong(trainer)
    with pytest.raises(FloatingPointError, match=r"step 1: sample 3 of prompt 'p0' has a non-finite reward"):
        step(trainer)
    assert trainer.groups.actor.batches == []


def test_a_non_finite_reward_scored_zero_is_counted_and_the_step_goes_on(tokenizer, ids, tmp_path):
    trainer, _ = make_trainer(tokenizer, ids, [MOSTLY_RIGHT, MIXED], "algorithm=grpo",
                              "algorithm.reward.schedule=false", "trainer.nonfinite_reward=zero",
                              f"trainer.run_dir={tmp_path}", "trainer.loggers=[jsonl]", "trainer.save_final=false",
                              "trainer.export_hf=false", total_steps=1)
    nan_on_wrong(trainer)
    trainer.fit()
    [batch] = trainer.groups.actor.batches
    adv = per_row_advantage(batch)
    assert torch.all(torch.isfinite(adv))
    # the wrong calls scored 0: rewards (4, 4, 4, 0), mean 3, std 2; (4, 0, -3, -3), mean -0.5, std sqrt(11)
    s = math.sqrt(11)
    assert adv.tolist() == pytest.approx([0.5, 0.5, 0.5, -1.5, 4.5 / s, 0.5 / s, -2.5 / s, -2.5 / s], abs=1e-5)
    [row] = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert row["critic/nonfinite_rewards"] == 2
