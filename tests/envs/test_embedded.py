import json

import pytest

from rest.envs import Trajectory, Turn, make_env
from rest.envs.embedded import KINDS, generate_split
from rest.tooluse.calls import Call


def test_split_is_seeded_and_disjoint():
    train, val = generate_split(64, 32, seed=5)
    again, _ = generate_split(64, 32, seed=5)
    assert [t.messages for t in train] == [t.messages for t in again]
    assert {t.info["kind"] for t in train} == set(KINDS) and len(val) == 32
    # requests recur (closed sets); a request in the same world never does
    keys = {(t.messages[0]["content"], str(t.state)) for t in train}
    assert not any((t.messages[0]["content"], str(t.state)) in keys for t in val)


def test_every_argument_and_answer_is_one_qwen3_token():
    """The 2-layer demo model copies single tokens only: each gold argument value and answer is one token inside
    JSON, and the same token where the request names it (Qwen3 splits digits, so one-digit numbers)."""
    from rest.models.cache import load_tokenizer

    tok = load_tokenizer("qwen3-tokenizer")
    train, _ = generate_split(200, 0, seed=4)
    values = {v for t in train for step in t.gold for c in step for v in c["arguments"].values()}
    values |= {t.info["answer"] for t in train if t.info["answer"] is not None}

    def pieces(text):
        return [tok.decode([i]).strip() for i in tok(text, add_special_tokens=False)["input_ids"]]

    assert len(values) > 20
    for v in values:
        assert str(v) in pieces(json.dumps({"k": v})), v
    for task in train:
        request = pieces(task.messages[0]["content"])
        for c in task.gold[0]:
            for v in c["arguments"].values():
                assert str(v) in request, (task.messages, v)


def _replay(env, task, replies):
    """Run reference-like replies through the env by hand: calls from the gold, final reply text."""
    env.reset(task)
    traj = Trajectory(task)
    for step in task.gold:
        calls = [Call(c["name"], c["arguments"]) for c in step]
        observations, _ = env.step(calls)
        traj.turns.append(Turn("...", calls, observations))
    traj.turns.append(Turn(replies))
    return traj


@pytest.mark.parametrize("fmt", ["toolrl", "hermes"])
def test_gold_scores_1_and_answers_need_the_observations(fmt):
    train, _ = generate_split(40, 0, seed=2)
    for task in train:
        env = make_env("embedded_multiturn", fmt)
        final = env.reference_turns(task)[-1]
        assert env.score(_replay(env, task, final))["reward"] == pytest.approx(1.0)
        # answering without calling the tools fails (the answer is in an observation, not the prompt)
        env.reset(task)
        no_tools = Trajectory(task, [Turn(final)])
        assert env.score(no_tools)["calls"] == 0.0
        if task.info["kind"] == "lookup_act":
            assert env.score(no_tools)["success"] == 0.0
        else:
            wrong = final.replace(str(task.info["answer"]), str(task.info["answer"] + 1))
            assert env.score(_replay(env, task, wrong))["success"] == 0.0


def test_lookup_answer_is_not_in_the_prompt():
    train, _ = generate_split(40, 0, seed=2)
    lookups = [t for t in train if t.info["kind"] == "lookup_answer"]
    env = make_env("embedded_multiturn", "toolrl")
    for task in lookups:
        messages, _ = env.reset(task)
        observations, _ = env.step([Call("get_temperature", task.gold[0][0]["arguments"])])
        assert str(task.info["answer"]) in observations[0].content
