"""bench/multiturn.py's accounting without an engine: a scripted multi-turn rollout against a fake single-turn
generator; both sides count the same generated tokens, and the report renders (fast)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import multiturn  # noqa: E402
from rest.envs import make_env  # noqa: E402
from rest.envs.embedded import generate_split  # noqa: E402
from rest.models.cache import load_tokenizer  # noqa: E402
from rest.workers.agent_loop import AgentLimits, Generation, ScriptedGenerate  # noqa: E402


def test_compare_counts_equal_generated_tokens_and_renders():
    tok = load_tokenizer("qwen3-tokenizer")
    tasks, _ = generate_split(6, 0, seed=2)
    scripts = [make_env(multiturn.ENV, multiturn.PROMPT_FORMAT).reference_turns(t) for t in tasks]
    seen = []

    def forced(requests):
        seen.append([r.max_tokens for r in requests])
        return [Generation([7] * r.max_tokens, [0.0] * r.max_tokens, "length") for r in requests]

    limits = AgentLimits(3, 192, 64)
    cell = multiturn.compare(tasks, tok, ScriptedGenerate(tok, scripts, stop_at_call_close=True), forced, limits,
                             repeats=2)
    samples, _ = multiturn.multi_turn_pass(tasks, tok, ScriptedGenerate(tok, scripts, stop_at_call_close=True),
                                           limits, seed=1)
    model_tokens = [sum(s.response_mask) for s in samples]
    assert seen[-1] == model_tokens and len(seen) == 3  # warm-up + 2 repeats, each forcing the same lengths
    assert cell["generated_tokens"] == [sum(model_tokens)] * 2
    assert cell["turns_mean"] == sum(len(s) for s in scripts) / len(scripts) > 2
    assert cell["ratio"] == cell["multi_tok_s"] / cell["single_tok_s"] > 0
    text = multiturn.render([cell], 2, limits)
    assert "| 6 |" in text and "Target multi-turn >= 0.8x single-turn" in text
