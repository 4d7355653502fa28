"""The multi-turn control plane on CPU: `Trainer.train_step` and `fit` with data.source=env over fake worker groups.

The fake rollout group's `run_agent` runs the real agent loop (`rest.workers.agent_loop`) on the real
`embedded_multiturn` environments with the real Qwen3 tokenizer and chat template; only the engine is scripted
(`ScriptedGenerate`). Sample k of each task's group plays SCRIPT[k]: the gold episode (reward 1: success, every
gold call, a clean reply), a reply without any call (reward 0.1: format only) or an unknown tool and then a reply
(reward 0: the error observation costs the format part). The fake actor is the single-turn test's.
"""

from __future__ import annotations

import json

import pytest
import torch

from rest.config.load import load_config
from rest.data.prompt_set import EnvTaskSet
from rest.envs import make_env
from rest.envs.embedded import generate_split
from rest.models.cache import load_tokenizer, resolve_model_path
from rest.trainer import phases
from rest.trainer.loop import Trainer
from rest.trainer.phases import WeightSyncError
from rest.trainer.validation import Validator
from rest.tooluse.regions import Region, label_agent_response
from rest.workers.agent_loop import AgentLimits, AgentSample, ScriptedGenerate, rollout_metrics, run_agent_loop
from tests.trainer.test_driver_fake_workers import FakeActor

LAZY = ["<think> no tool needed </think>\n<response> I do not know. </response>"]
UNKNOWN = ['<tool_call>\n{"name": "delete_everything", "parameters": {}}\n</tool_call>',
           "<response> Sorry. </response>"]
SCRIPT = ["gold", "lazy", "unknown", "gold"]  # sample k of every group
REWARD = {"lazy": 0.1, "unknown": 0.0, "gold": 1.0}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model_path("qwen3-tokenizer"))


@pytest.fixture(scope="module")
def tasks():
    train, val = generate_split(8, 4, seed=5)
    return train, val


class AgentRollout:
    """`run_agent` as `RolloutWorker.run_agent` does it, with a scripted engine. Training calls (greedy=False):
    sample i of the call plays SCRIPT[i % n]. Greedy calls (validation): task j plays gold when j < `good`
    (which grows by `improve` at every weight sync), else the lazy reply. Every call and its samples are kept."""

    def __init__(self, tokenizer, cfg, good: int = 0, improve: int = 0):
        self.tokenizer, self.cfg, self.good, self.improve = tokenizer, cfg, good, improve
        self.calls: list[dict] = []
        self.samples: list[AgentSample] = []
        self.loaded: list = []

    def run_agent(self, tasks, seeds, max_tokens, greedy=False):
        data, multi = self.cfg.data, self.cfg.rollout.multi_turn
        envs = [make_env(data.env_name, data.prompt_format) for _ in tasks]
        if greedy:
            kinds = ["gold" if j < self.good else "lazy" for j in range(len(tasks))]
        else:
            kinds = [SCRIPT[i % self.cfg.rollout.n] for i in range(len(tasks))]
        scripts = [env.reference_turns(task) if kind == "gold" else {"lazy": LAZY, "unknown": UNKNOWN}[kind]
                   for env, task, kind in zip(envs, tasks, kinds)]
        generate = ScriptedGenerate(self.tokenizer, scripts, stop_at_call_close=multi.stop_at_tool_call_close)
        limits = AgentLimits(multi.max_turns, max_tokens, multi.max_obs_tokens)
        samples = run_agent_loop(tasks, envs, self.tokenizer, generate, limits, seeds, data.prompt_format)
        self.calls.append({"uids": [t.uid for t in tasks], "seeds": seeds, "max_tokens": max_tokens,
                           "greedy": greedy, "kinds": kinds})
        self.samples += samples
        return samples

    def load_weights(self, refs):
        self.loaded.append(refs)
        self.good += self.improve


def make_trainer(tokenizer, tasks, *overrides, actor=None, validator=False, total_steps=4, good=0, improve=0):
    cfg = load_config(["+recipe=multiturn_cpu", "data.train_batch_size=2", "rollout.n=4",
                       "actor.ppo_mini_batch_size=2", "actor.ppo_micro_batch_size=2", "data.shuffle=false",
                       "trainer.progress_bar=false", *overrides])
    train_tasks, val_tasks = tasks
    train = EnvTaskSet(train_tasks, cfg.data.env_name, tokenizer, cfg.data.prompt_format, cfg.data.max_prompt_length)
    rollout = AgentRollout(tokenizer, cfg, good, improve)
    groups = type("Groups", (), {})()
    groups.actor, groups.rollout = actor or FakeActor(), rollout
    val = None
    if validator:
        val = Validator(cfg, rollout, tokenizer, EnvTaskSet(val_tasks, cfg.data.env_name, tokenizer,
                                                            cfg.data.prompt_format, cfg.data.max_prompt_length))
    return Trainer(cfg, groups, tokenizer, train, val, total_steps), rollout


def step(trainer, at=1):
    trainer.step = at
    return trainer.train_step()


# ---------------------------------------------------------------- the batch the actor trains on
def test_one_step_trains_on_the_interleaved_ids_with_observations_off_the_loss(tokenizer, tasks):
    trainer, rollout = make_trainer(tokenizer, tasks, "algorithm=rest")  # region weights, pi_old recomputed
    metrics = step(trainer)
    [call] = rollout.calls
    # two tasks x n = 4 episodes, each task's 4 in a row, one seed each; the whole response budget per episode
    assert call["uids"] == [tasks[0][0].uid] * 4 + [tasks[0][1].uid] * 4 and len(set(call["seeds"])) == 8
    assert call["max_tokens"] == trainer.cfg.data.max_response_length == 192 and not call["greedy"]
    [batch] = trainer.groups.actor.batches
    samples = rollout.samples
    assert batch.batch_size == torch.Size([8]) and trainer.groups.actor.log_prob_calls == 1  # ResT: pi_old first
    prompt_width = batch["input_ids"].shape[1] - batch["responses"].shape[1]
    observation_tokens = 0
    for row, sample in enumerate(samples):
        attended = batch["attention_mask"][row].bool()
        # the sequence is exactly prompt + generated + observation ids, as the agent loop laid them out
        assert batch["input_ids"][row][attended].tolist() == sample.prompt_ids + sample.response_ids
        n = len(sample.response_ids)
        mask = batch["response_mask"][row]
        assert mask[:n].tolist() == sample.response_mask and not mask[n:].any()
        assert batch["rollout_log_prob"][row, :n].tolist() == pytest.approx(sample.rollout_logprobs)
        observation = ~mask[:n].bool()
        observation_tokens += int(observation.sum())
        assert attended[prompt_width:prompt_width + n].all()  # observations are attended to
        # ResT regions per model turn; none on observation tokens; no advantage there either
        assert batch["regions"][row, :n].tolist() == label_agent_response(sample.response_ids, sample.response_mask,
                                                                         tokenizer)
        assert torch.all(batch["regions"][row, :n][observation] == Region.OTHER)
        assert torch.all(batch["advantages"][row, :n][observation] == 0)
        assert torch.all(batch["token_weights"][row, :n][observation] == 0) or not observation.any()
    assert observation_tokens > 0
    # rewards: the environment's parts, as the batch names them
    kinds = SCRIPT * 2
    assert batch["rewards", "total"].tolist() == pytest.approx([REWARD[k] for k in kinds])
    assert batch["rewards", "correctness"].tolist() == [float(k == "gold") for k in kinds]  # success
    assert batch["rewards", "format"].tolist() == [float(k != "unknown") for k in kinds]
    assert batch["rewards", "calls"].tolist() == [float(k == "gold") for k in kinds]
    # a group's mean is (1 + 0.1 + 0 + 1) / 4: the gold episodes get a positive advantage on every model token
    model = batch["response_mask"].bool()
    assert all(bool((batch["advantages"][row][model[row]] > 0).all()) == (kind == "gold")
               for row, kind in enumerate(kinds))
    # the rollout/* metrics over the episodes; lengths count the policy's tokens only
    assert {k: metrics[k] for k in rollout_metrics(samples)} == rollout_metrics(samples)
    gold_turns = [len(make_env("embedded_multiturn", "toolrl").reference_turns(t)) for t in tasks[0][:2]]
    assert [s.turns for s in samples] == [gold_turns[0], 1, 2, gold_turns[0], gold_turns[1], 1, 2, gold_turns[1]]
    assert metrics["rollout/turns_mean"] > 1 and metrics["rollout/tool_calls_mean"] > 0
    assert metrics["rollout/tool_error_rate"] == pytest.approx(2 / sum(s.tool_calls for s in samples))
    assert metrics["rollout/obs_tokens_mean"] == pytest.approx(observation_tokens / 8)
    assert metrics["critic/env/success_mean"] == 0.5 and metrics["critic/correctness_mean"] == 0.5
    assert metrics["response_length/mean"] == pytest.approx(float(model.sum()) / 8)
    assert metrics["rollout/logprob_diff_max"] == 0.0
    assert len(rollout.loaded) == 1  # the weights went back to the rollout group


class ObservationBlindActor(FakeActor):
    """An actor whose log-probs agree with the rollout's on model tokens and are far off on observation tokens
    (as a real forward is: the rollout has no log-prob there); `model_shift` moves the model tokens' too."""

    def __init__(self, model_shift=0.0):
        super().__init__()
        self.model_shift = model_shift

    def _old_log_prob(self, batch):
        mask = batch["response_mask"].float()
        return batch["rollout_log_prob"] + self.model_shift * mask - 5.0 * (1 - mask)


def test_the_agreement_check_reads_model_tokens_only(tokenizer, tasks):
    trainer, _ = make_trainer(tokenizer, tasks, actor=ObservationBlindActor())
    assert step(trainer)["rollout/logprob_diff_max"] == 0.0
    trainer, _ = make_trainer(tokenizer, tasks, actor=ObservationBlindActor(model_shift=0.01))
    with pytest.raises(WeightSyncError, match="rollout/logprob_diff_max = 0.01"):
        step(trainer)


def test_dapo_dynamic_sampling_joins_multi_turn_tries(tokenizer, tasks):
    trainer, rollout = make_trainer(tokenizer, tasks, "algorithm=dapo")
    metrics = step(trainer)
    [batch] = trainer.groups.actor.batches
    assert metrics["dapo/tries"] == 1 and metrics["dapo/filled_groups"] == 0  # every group's rewards differ
    assert batch.batch_size == torch.Size([8]) and metrics["rollout/turns_mean"] > 1
    assert batch["response_mask"].sum() < batch["attention_mask"][:, -batch["responses"].shape[1]:].sum()


def test_the_overlong_penalty_counts_the_policy_tokens_only():
    """max_response_length 12, buffer 4: a response of 3 model + 10 observation tokens is not penalised (it would
    be by -1 if the observation counted); one of 10 model tokens gets (8 - 10) / 4 = -0.5."""
    from rest.trainer.batch import build_batch

    cfg = load_config(["+recipe=multiturn_cpu", "algorithm=dapo", "data.max_response_length=12",
                       "rollout.multi_turn.max_obs_tokens=8", "algorithm.overlong.buffer_len=4",
                       "algorithm.overlong.penalty_factor=1.0"])
    assert cfg.algorithm.overlong.enable
    masks = [[1, 1] + [0] * 10 + [1], [1] * 10]
    batch = build_batch([[1], [1]], [[7] * 13, [7] * 10], [[0.0] * 13, [0.0] * 10], 0, masks)
    batch["group_id"], batch["uid"] = torch.tensor([0, 0]), ["t", "t"]
    samples = [AgentSample([1], reward={"reward": 1.0, "success": 1.0, "calls": 1.0, "format": 1.0}),
               AgentSample([1], reward={"reward": 0.5, "success": 0.0, "calls": 1.0, "format": 1.0})]
    scored = phases.score_episodes(batch, samples, 1, cfg)
    assert scored["rewards", "total"].tolist() == [1.0, 0.0]
    assert scored["rewards", "correctness"].tolist() == [1.0, 0.0] and scored["rewards", "calls"].tolist() == [1, 1]


# ---------------------------------------------------------------- validation through the agent loop
def test_fit_validates_held_out_tasks_and_ends_with_the_paired_gain(tokenizer, tasks, tmp_path, capsys):
    """Greedy held-out success 1/4 at step 0; every weight sync makes one more task right (the fake's stand-in for
    learning): 3/4 after 2 steps. The run writes each task's success and ends with the paired interval."""
    trainer, rollout = make_trainer(tokenizer, tasks, f"trainer.run_dir={tmp_path}", "trainer.test_freq=2",
                                    "trainer.loggers=[console,jsonl]", "trainer.save_final=false",
                                    "trainer.export_hf=false", validator=True, total_steps=2, good=1, improve=1)
    trainer.fit()
    out = capsys.readouterr().out
    greedy = [c for c in rollout.calls if c["greedy"]]
    assert [c["kinds"].count("gold") for c in greedy] == [1, 3]  # step 0 and step 2
    assert all(c["max_tokens"] == 192 and c["uids"] == [t.uid for t in tasks[1]] for c in greedy)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert rows[0]["val/embedded_multiturn/success"] == 0.25 and rows[2]["val/embedded_multiturn/success"] == 0.75
    assert rows[0]["val/embedded_multiturn/n"] == 4 and rows[2]["val/embedded_multiturn/format"] == 1.0
    assert rows[2]["val/embedded_multiturn/reward"] == pytest.approx((3 * 1.0 + 0.1) / 4)
    assert "rollout/turns_mean" in rows[1] and "val/embedded_multiturn/success" not in rows[1]
    items = [json.loads(line) for line in (tmp_path / "val_items.jsonl").read_text().splitlines()]
    assert [(r["step"], r["success"]) for r in items] == [(0, [1, 0, 0, 0]), (2, [1, 1, 1, 0])]
    assert "validation: 4 held-out embedded_multiturn tasks (" in out
    assert "val step 0: embedded_multiturn n=4 success 0.250" in out
    assert ("held-out embedded_multiturn/success: step 0 0.250 -> step 2 0.750 (n=4); gain +0.500, 95% paired "
            "bootstrap CI [+0.000, +1.000]") in out
