"""rest.eval.multiturn.evaluate_env with scripted generate functions: the gold episodes score success 1 and
pass@k 1; a sampler right on some samples only gives the hand-computed pass@1 and pass@k."""

import pytest

from rest.envs import make_env
from rest.envs.embedded import generate_split
from rest.eval.multiturn import evaluate_env
from rest.models.cache import load_tokenizer
from rest.workers.agent_loop import AgentLimits, ScriptedGenerate


def test_gold_and_partly_right_samplers():
    tok = load_tokenizer("qwen3-tokenizer")
    _, tasks = generate_split(16, 4, seed=9)
    gold = [make_env("embedded_multiturn", "toolrl").reference_turns(t) for t in tasks]
    limits = AgentLimits(3, 192, 64)
    oracle = ScriptedGenerate(tok, gold, stop_at_call_close=True)
    n = 4
    # sampled episodes are laid out task-major: episode j of task i is sample i * n + j; right when j == 0 only
    wrong = "<think> no </think>\n<response> I cannot. </response>"
    scripts = [gold[i] if j == 0 else [wrong] for i in range(len(tasks)) for j in range(n)]
    sampled = ScriptedGenerate(tok, scripts, stop_at_call_close=True)
    m = evaluate_env(tasks, "embedded_multiturn", tok, oracle, sampled, limits, n=n, k=2)
    assert m["val/embedded_multiturn/success"] == 1.0 and m["val/embedded_multiturn/reward"] == pytest.approx(1.0)
    assert m["val/embedded_multiturn/turns_mean"] > 2 and m["val/embedded_multiturn/tool_error_rate"] == 0.0
    assert m["val/embedded_multiturn/pass_at_1"] == pytest.approx(0.25)
    assert m["val/embedded_multiturn/pass_at_2"] == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    greedy_only = evaluate_env(tasks, "embedded_multiturn", tok, oracle, None, limits)
    assert "val/embedded_multiturn/pass_at_8" not in greedy_only


def test_bfcl_entries_load_as_an_evaluation_only_environment_and_the_oracle_scores_100():
    pytest.importorskip("bfcl")
    from rest.config.load import load_config
    from rest.config.validate import ConfigError
    from rest.envs import load_env_tasks

    train, tasks = load_env_tasks("bfcl_eval", 512, 3, 0, bfcl_category="multi_turn_miss_param")
    assert train == [] and len(tasks) == 3 and all(t.env == "bfcl_eval" for t in tasks)
    assert all(t.uid.startswith("multi_turn_miss_param") for t in tasks)
    with pytest.raises(ValueError, match="multi-turn categories"):
        load_env_tasks("bfcl_eval", 0, 3, 0, bfcl_category="simple")
    with pytest.raises(ConfigError, match="never trained on"):  # BFCL's entries are no training data
        load_config(["+recipe=multiturn_cpu", "data.env_name=bfcl_eval"])
    tok = load_tokenizer("qwen3-tokenizer")
    oracle = ScriptedGenerate(tok, [make_env("bfcl_eval", "hermes").reference_turns(t) for t in tasks])
    m = evaluate_env(tasks, "bfcl_eval", tok, oracle, None, AgentLimits(64, 60_000, 60_000), "hermes")
    assert m["val/bfcl_eval/success"] == 1.0 and m["val/bfcl_eval/n"] == 3


def test_the_cli_names_the_tasks_that_do_not_fit_the_context(capsys):
    from rest.eval.multiturn import main

    with pytest.raises(SystemExit):
        main(["--model", "qwen3-tokenizer", "--n-val", "4", "--max-model-len", "256", "--max-response-tokens", "192"])
    err = capsys.readouterr().err
    assert "4 of 4 tasks do not fit --max-model-len 256" in err and "mt-val-0" in err
