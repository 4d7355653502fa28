"""Each phase of a step (`rest.trainer.phases`) on a small batch, by hand; no Ray, no model."""

import math
from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict

from rest.config.load import load_config
from rest.data.prompt_set import Prompt
from rest.trainer import phases
from rest.trainer.batch import build_batch, compact, concat_batches
from rest.workers.rollout import Sample

PAD = 0


class ScriptedRollout:
    """Prompt i's samples: the scripted token lists, log-prob -0.5 per token, "length" at max_tokens."""

    def __init__(self, script: dict[tuple, list[list[int]]]):
        self.script = script

    def generate(self, prompt_ids, seeds, max_tokens):
        return [[Sample(ids, [-0.5] * len(ids), "length" if len(ids) >= max_tokens else "stop")
                 for ids in self.script[tuple(p)]] for p in prompt_ids]


def cfg(*overrides):
    return load_config(["+recipe=tiny_cpu", "data.max_response_length=4", *overrides])


def two_groups(responses=((7, 8), (9,), (5, 6, 7, 8), (3,))) -> TensorDict:
    """Prompts a=[1, 2] and b=[3], two samples each."""
    prompts = [Prompt("a", [1, 2], "gt-a", []), Prompt("b", [3], "gt-b", [])]
    rollout = ScriptedRollout({(1, 2): [list(responses[0]), list(responses[1])],
                               (3,): [list(responses[2]), list(responses[3])]})
    return phases.generate(rollout, prompts, [[1, 2], [3, 4]], max_tokens=4, pad_id=PAD)


def with_rewards(batch, totals):
    batch = batch.clone(recurse=False)
    rows = batch.batch_size[0]
    batch["rewards"] = TensorDict({"total": torch.tensor(totals, dtype=torch.float32),
                                   "format": torch.ones(rows), "correctness": torch.tensor(totals) - 1},
                                  batch_size=[rows])
    return batch


# ---------------------------------------------------------------- rollout
def test_generate_builds_one_row_per_sample_with_its_prompt_group():
    batch = two_groups()
    assert list(batch["uid"]) == ["a", "a", "b", "b"] and list(batch["ground_truth"]) == ["gt-a"] * 2 + ["gt-b"] * 2
    assert batch["group_id"].tolist() == [0, 0, 1, 1]
    assert batch["truncated"].tolist() == [False, False, True, False]  # 4 tokens = max_tokens
    assert batch["input_ids"].tolist() == [[1, 2, 7, 8, 0, 0], [1, 2, 9, 0, 0, 0], [0, 3, 5, 6, 7, 8],
                                           [0, 3, 3, 0, 0, 0]]
    assert batch["response_mask"].tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert batch["rollout_log_prob"][2].tolist() == [-0.5] * 4 and batch["rollout_log_prob"][1, 1:].eq(0).all()


# ---------------------------------------------------------------- reward
def test_score_writes_every_reward_part_and_adds_the_overlong_penalty_to_the_total():
    """L_max = 4, L_cache = 2, factor 2: lengths 2, 1, 4, 1 lose 0, 0, 2 * (4 - 2 - 4) / 2 = -2, 0."""
    config = cfg("algorithm=dapo", "algorithm.overlong.buffer_len=2", "algorithm.overlong.penalty_factor=2.0")
    seen = []

    def reward_fn(text, truth, step, progress):
        seen.append((text, truth, step, progress))
        return {"format": 1.0, "correctness": float(len(text)), "total": 1.0 + len(text)}

    tokenizer = SimpleNamespace(decode=lambda ids, skip_special_tokens: "x" * len(ids))
    batch = phases.score(two_groups(), reward_fn, tokenizer, step=3, progress=0.25, cfg=config)
    assert seen == [("xx", "gt-a", 3, 0.25), ("x", "gt-a", 3, 0.25), ("xxxx", "gt-b", 3, 0.25), ("x", "gt-b", 3, 0.25)]
    assert batch["rewards", "correctness"].tolist() == [2.0, 1.0, 4.0, 1.0]  # the penalty is on the total only
    assert batch["rewards", "total"].tolist() == [3.0, 2.0, 5.0 - 2.0, 2.0]
    assert not batch["reward_nonfinite"].any()


def test_a_non_finite_reward_names_the_sample_and_prompt_or_scores_zero():
    def reward_fn(text, truth, step, progress):  # the second sample of prompt b is NaN
        bad = truth == "gt-b" and len(text) == 1
        return {"format": 1.0, "correctness": math.nan if bad else 0.5, "total": math.nan if bad else 1.5}

    tokenizer = SimpleNamespace(decode=lambda ids, skip_special_tokens: "x" * len(ids))
    with pytest.raises(FloatingPointError, match="step 3: sample 1 of prompt 'b' has a non-finite reward"):
        phases.score(two_groups(), reward_fn, tokenizer, 3, 0.5, cfg("trainer.nonfinite_reward=error"))
    batch = phases.score(two_groups(), reward_fn, tokenizer, 3, 0.5, cfg("trainer.nonfinite_reward=zero"))
    assert batch["rewards", "total"].tolist() == [1.5, 1.5, 1.5, 0.0]
    assert batch["rewards", "correctness"].tolist() == [0.5, 0.5, 0.5, 0.0]
    assert batch["reward_nonfinite"].tolist() == [False, False, False, True]


def test_varied_groups_keeps_the_groups_whose_rewards_differ():
    batch = with_rewards(two_groups(), [1.0, 0.0, 2.0, 2.0])
    assert phases.varied_groups(batch).tolist() == [True, True, False, False]


# ---------------------------------------------------------------- batch plumbing
def test_concatenated_selected_and_compacted_rows_equal_a_batch_built_from_those_rows():
    first = two_groups().select(*build_batch([[1]], [[1]], [[0.0]], PAD).keys(), "group_id")  # P = 2, R = 4
    second = build_batch([[9, 9, 9]] * 2, [[4], [4, 5, 6]], [[-1.0], [-1.0] * 3], PAD).update(
        {"group_id": torch.tensor([0, 0])})  # P = 3, R = 3
    merged = concat_batches([first, second], PAD)
    assert merged["input_ids"].shape == (6, 3 + 4) and merged["group_id"].tolist() == [0, 0, 1, 1, 2, 2]
    kept = compact(merged[torch.tensor([0, 1, 4, 5])], PAD)  # prompt a's group and the second batch's
    expected = build_batch([[1, 2], [1, 2], [9, 9, 9], [9, 9, 9]], [[7, 8], [9], [4], [4, 5, 6]],
                           [[-0.5, -0.5], [-0.5], [-1.0], [-1.0] * 3], PAD)
    for key in expected.keys():
        assert torch.equal(kept[key], expected[key]), key
    assert kept["group_id"].tolist() == [0, 0, 1, 1]


def test_balance_rows_moves_every_field_of_a_row_together():
    batch = two_groups()
    balanced = phases.balance_rows(batch, num_workers=2)
    rows = {tuple(r.tolist()): i for i, r in enumerate(batch["input_ids"])}  # every row's tokens differ
    order = [rows[tuple(r.tolist())] for r in balanced["input_ids"]]
    assert sorted(order) == [0, 1, 2, 3] and order != [0, 1, 2, 3]  # lengths 4, 3, 6, 3: really reordered
    assert balanced["group_id"].tolist() == [batch["group_id"][i].item() for i in order]
    assert list(balanced["uid"]) == [batch["uid"][i] for i in order]


# ---------------------------------------------------------------- weight-sync check
def test_check_weight_sync_measures_the_loss_mask_tokens_and_raises_past_the_threshold():
    batch = build_batch([[1]] * 2, [[5, 6, 7], [8]], [[-1.0, -2.0, -3.0], [-4.0]], PAD,
                        response_masks=[[1, 0, 1], [1]])
    batch["old_log_prob"] = torch.tensor([[-1.5, 9.0, -3.0], [-4.25, 0.0, 0.0]])  # the masked token differs by 11
    metrics = phases.check_weight_sync(batch, threshold=None, step=5)
    assert metrics == {"rollout/logprob_diff_max": 0.5, "rollout/logprob_diff_mean": pytest.approx(0.75 / 3)}
    assert phases.check_weight_sync(batch, threshold=0.5, step=5)["rollout/logprob_diff_max"] == 0.5
    with pytest.raises(phases.WeightSyncError, match=r"step 5: rollout/logprob_diff_max = 0\.5 > "
                                                     r"rollout\.logprob_diff_threshold = 0\.4"):
        phases.check_weight_sync(batch, threshold=0.4, step=5)


# ---------------------------------------------------------------- advantages and weights
def test_compute_advantages_by_hand_on_the_loss_mask():
    """GRPO: group a (1, 3): mean 2, unbiased std sqrt 2 -> -+1/sqrt 2; group b (2, 2): 0."""
    batch = with_rewards(two_groups(), [1.0, 3.0, 2.0, 2.0])
    out = phases.compute_advantages(batch, cfg("algorithm=grpo").algorithm)
    a = 1 / (math.sqrt(2) + 1e-6)
    assert torch.allclose(out["advantages"], torch.tensor([[-a, -a, 0, 0], [a, 0, 0, 0], [0] * 4, [0] * 4]))
    assert "advantages" not in batch.keys()  # a new batch; the input is unchanged
    drgrpo = phases.compute_advantages(batch, cfg("algorithm=drgrpo").algorithm)
    assert drgrpo["advantages"][:2, 0].tolist() == [-1.0, 1.0]


def test_weight_tokens_adds_weights_only_for_weighted_presets():
    batch = two_groups()
    batch["regions"] = torch.tensor([[1, 2, 0, 0], [4, 0, 0, 0], [1, 2, 3, 1], [4, 0, 0, 0]])
    unweighted, metrics = phases.weight_tokens(batch, 0.0, 1, cfg("algorithm=grpo").algorithm)
    assert "token_weights" not in unweighted.keys()
    assert metrics["rest/share/format"] == pytest.approx(3 / 8) and metrics["rest/weight/format"] == 1.0
    weighted, _ = phases.weight_tokens(batch, 0.0, 1, cfg("algorithm=rest_static").algorithm)
    w = weighted["token_weights"]
    assert torch.all(w[batch["response_mask"] == 0] == 0) and torch.all(w[0, :2] > 0)


def test_data_metrics_by_hand():
    batch = with_rewards(two_groups(), [1.0, 3.0, 2.0, 4.0])
    batch["advantages"] = torch.tensor([[1.0, 1.0, 0, 0], [-2.0, 0, 0, 0], [0.5] * 4, [3.0, 0, 0, 0]])
    metrics = phases.data_metrics(batch, batch["response_mask"])
    assert metrics == {
        "critic/reward_mean": 2.5, "critic/reward_max": 4.0, "critic/reward_min": 1.0, "critic/format_mean": 1.0,
        "critic/correctness_mean": 1.5, "critic/advantage_abs_mean": pytest.approx((1 + 1 + 2 + 4 * 0.5 + 3) / 8),
        "response_length/mean": 2.0, "response_length/max": 4.0, "response_length/clip_ratio": 0.25}


# ---------------------------------------------------------------- a loss mask that is not the attention mask
def test_observation_tokens_are_in_the_sequence_but_out_of_loss_lengths_and_advantages():
    """A multi-turn response [call, call, obs, obs, answer]: attention 1 everywhere, loss mask 0 on the tool's
    observation; the reward reads the whole response, every per-token quantity only the policy's tokens."""
    batch = build_batch([[1, 2]] * 2, [[5, 6, 7, 8, 9], [5]], [[-1.0, -1.0, 0.0, 0.0, -1.0], [-1.0]], PAD,
                        response_masks=[[1, 1, 0, 0, 1], [1]])
    batch.update({"group_id": torch.tensor([0, 0]), "truncated": torch.tensor([False, False]),
                  "uid": ["a", "a"], "ground_truth": ["gt", "gt"]})
    assert batch["attention_mask"][0].tolist() == [1] * 7
    assert phases.response_token_ids(batch) == [[5, 6, 7, 8, 9], [5]]
    tokenizer = SimpleNamespace(decode=lambda ids, skip_special_tokens: " ".join(map(str, ids)))
    texts = []
    scored = phases.score(batch, lambda text, *a: texts.append(text) or {"format": 0.0, "correctness": 0.0,
                                                                         "total": float(len(text))},
                          tokenizer, 1, 0.0, cfg("data.max_response_length=8"))
    assert texts == ["5 6 7 8 9", "5"]
    with_adv = phases.compute_advantages(scored, cfg("algorithm=drgrpo").algorithm)
    assert with_adv["advantages"][0].tolist() == [4.0, 4.0, 0.0, 0.0, 4.0]  # (9 - 1) / 2 on the policy's tokens
    assert phases.data_metrics(with_adv, with_adv["response_mask"])["response_length/max"] == 3.0
