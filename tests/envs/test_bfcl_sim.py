import json
import re

import pytest

from rest.envs import make_env
from rest.envs.bfcl_sim import instances_after
from rest.envs.base import gold_calls
from rest.models.cache import load_tokenizer
from rest.workers.agent_loop import AgentLimits, ScriptedGenerate, run_agent_loop

pytest.importorskip("bfcl")
from rest.envs.bfcl_tasks import TEMPLATES, generate_tasks  # noqa: E402

N_TRAIN, N_VAL = 400, 80


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_#.]+", text.lower())


def _bfcl_entries():
    from rest.eval.bfcl_data import MULTI_TURN, VERSIONS, load_category

    for version in ("v3", "v4"):
        try:
            VERSIONS[version].data_dir
        except ImportError:
            continue
        for category in MULTI_TURN:
            yield from load_category(VERSIONS[version], category)


def test_generated_tasks_do_not_overlap_bfcl_evaluation_entries():
    train, val = generate_tasks(N_TRAIN, N_VAL, seed=0)
    tasks = train + val
    questions, configs, gold_turns, grams = set(), [], set(), set()
    n_entries = 0
    for entry, answer in _bfcl_entries():
        n_entries += 1
        for turn in entry["question"]:
            for message in turn:
                questions.add(" ".join(_words(message["content"])))
                words = _words(message["content"])
                grams.update(tuple(words[k : k + 8]) for k in range(len(words) - 7))
        configs.append(json.dumps(entry["initial_config"], sort_keys=True))
        gold_turns.update(json.dumps(turn) for turn in answer["ground_truth"] if turn)
    assert n_entries >= 800  # both versions' four multi-turn categories were read
    configs = set(configs)
    for task in tasks:
        text = task.messages[0]["content"]
        words = _words(text)
        assert " ".join(words) not in questions, text
        assert not any(tuple(words[k : k + 8]) in grams for k in range(len(words) - 7)), text
        assert json.dumps(task.state["initial_config"], sort_keys=True) not in configs
        strings = [f"{c.name}({', '.join(f'{k}={v!r}' for k, v in c.kwargs.items())})"
                   for step in gold_calls(task.gold) for c in step]
        assert json.dumps(strings) not in gold_turns


def test_every_template_runs_and_gold_calls_succeed():
    train, val = generate_tasks(48, 16, seed=1)
    assert {t.info["template"] for t in train} == set(TEMPLATES)
    assert not {t.messages[0]["content"] for t in train} & {t.messages[0]["content"] for t in val}
    for task in train:
        _, results = instances_after("v3", task.state, [c for s in gold_calls(task.gold) for c in s])
        assert not any(r.startswith("Error") or '"error"' in r for r in results), (task.info, results)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("qwen3-tokenizer")


@pytest.mark.parametrize("fmt", ["hermes", "toolrl"])
def test_oracle_through_the_loop_scores_1_and_a_skipped_step_does_not(tok, fmt):
    tasks, _ = generate_tasks(len(TEMPLATES), 0, seed=2)
    envs = [make_env("bfcl_sim", fmt) for _ in tasks]
    scripts = [env.reference_turns(t) for env, t in zip(envs, tasks)]
    samples = run_agent_loop(tasks, envs, tok, ScriptedGenerate(tok, scripts), AgentLimits(max_response_tokens=4096),
                             list(range(len(tasks))), fmt)
    assert [s.reward["success"] for s in samples] == [1.0] * len(tasks)
    assert all(s.turns == len(t.gold) + 1 and s.tool_errors == 0 for s, t in zip(samples, tasks))
    # the last gold turn left out: the state or the results seen fall short
    envs = [make_env("bfcl_sim", fmt) for _ in tasks]
    cut = [s[:-2] + s[-1:] for s in scripts]
    samples = run_agent_loop(tasks, envs, tok, ScriptedGenerate(tok, cut), AgentLimits(max_response_tokens=4096),
                             list(range(len(tasks))), fmt)
    assert all(s.reward["success"] == 0.0 and s.reward["reward"] < 1.0 for s in samples)
