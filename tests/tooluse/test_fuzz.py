"""10,000 seeded fuzzed model outputs through every reader of model text: the reward (both variants), the
region labels, the decoder (every block rule) and the multi-turn executor (`SafeExecutor`, BFCL's dispatch).
No exception, every value finite, and nothing executed: a canary function beside the tools proves it."""

import builtins
import json
import math
import os
import random
import subprocess
import sys
import types

import numpy as np
import pytest

from rest.eval.bfcl_multi_turn import SafeExecutor
from rest.eval.formats import decode_calls as eval_decode_calls
from rest.tooluse.calls import BLOCK_RULES, decode, format_call
from rest.tooluse.regions import Region, label_text
from rest.tooluse.reward import VARIANTS, compute_score

N_OUTPUTS = 10_000
TRIPPED: list[str] = []


def canary(*args, **kwargs):
    TRIPPED.append("canary")
    return "tripped"


class FuzzTools:
    """A simulated API class as BFCL has them: public methods are the tools."""

    def _load_scenario(self, config, long_context=False):
        self.state = dict(config)

    def cd(self, folder: str = ""):
        return {"current_working_directory": str(folder)[:50]}

    def echo(self, content=None):
        return str(content)[:50]

    def _secret(self):
        return canary()


TOOLS = ("cd", "echo")
GT_CALL = '{"name": "cd", "parameters": {"folder": "docs"}}'
GROUND_TRUTHS = [
    f"<tool_call>\n{GT_CALL}\n</tool_call>",
    f'<tool_call>\n{GT_CALL}\n{{"name": "echo", "parameters": {{"content": "hi"}}}}\n</tool_call>',
    "<response> Done. </response>",
    f"<tool_call>\n{GT_CALL}\n</tool_call>\n<response> ok </response>",
]
ATTACKS = [
    "__import__('os').system('echo pwned')", "canary()", "cd(folder=canary())", "_secret()", "cd._secret()",
    "cd.__self__._secret()", "cd.__globals__['canary']()", "().__class__.__bases__[0].__subclasses__()",
    "exec('canary()')", "eval('1')", "open('/etc/passwd').read()", "import os", "lambda: canary()",
    "cd(folder=(lambda: canary())())", "cd(**{'folder': canary})", "cd(*[canary()])", "echo(content=[x for x in ()])",
    "echo(content=f'{canary()}')", "getattr(cd, '__call__')('x')", "echo.__func__.__globals__", "breakpoint()",
    "echo(content=__builtins__)", "FuzzTools()._secret()", "sys.modules['fuzz_tools'].canary()", "cd(folder='a')",
    "echo(content={'k': [1, -2.5, None, (1, 2)]})", "cd('positional')", "cd(folder=1e309)", "echo(content=-1j)",
]
FRAGMENTS = [
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<response>", "</response>", "\n", "\n\n", " ",
    GT_CALL, '{"name": "echo", "arguments": {"content": 1}}', '{"name": "cd"}', '{"name": ["cd"], "parameters": {}}',
    '{"name": "canary", "parameters": {}}', '{"name": "__import__", "arguments": {"name": "os"}}',
    '{"name": "cd", "parameters": {"folder": NaN}}', '{"name": "echo", "parameters": {"content": Infinity}}',
    '{"name": "_secret", "parameters": {}}', "{", "}", "[", "]", '"', "\\", ":", ",", "null", "<|im_end|>",
    "<|endoftext|>", "<|im_start|>assistant\n", "日本", "\x00", "\ud800",
]


def fuzz_output(rng: random.Random) -> str:
    kind = rng.choices(range(8), weights=(2, 3, 1, 1, 2, 2, 3, 3))[0]  # huge and deep ones are slow to label
    if kind == 0:  # random bytes, as a tokenizer might decode them
        return bytes(rng.randrange(256) for _ in range(rng.randrange(300))).decode("utf-8", "surrogateescape")
    if kind == 1:  # unbalanced tags and JSON pieces
        return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randrange(40)))
    if kind == 2:  # huge JSON: long strings and long lists
        value = rng.choice(["x" * rng.randrange(5_000, 40_000), list(range(rng.randrange(500, 5_000)))])
        return "<think>t</think>\n<tool_call>\n" + json.dumps({"name": "echo", "parameters": {"content": value}}) + "\n</tool_call>"
    if kind == 3:  # deeply nested JSON, closed or not
        depth = rng.choice([50, 1_000, 5_000, 50_000])  # json and ast hit their recursion limits
        body = '{"name": "echo", "parameters": {"content": ' + "[" * depth + "]" * (depth if rng.random() < 0.5 else 0) + "}}"
        return "<think>t</think>\n<tool_call>\n" + body + "\n</tool_call>"
    if kind == 4:  # Python expressions as calls (BFCL's multi-turn format)
        return "\n".join(rng.choice(ATTACKS) for _ in range(rng.randrange(1, 4)))
    if kind == 5:  # tool calls whose names are not tools, or whose arguments carry expressions
        name = rng.choice(["canary", "_secret", "__import__", "eval", "cd.__globals__", "echo", "cd"])
        args = {"content": rng.choice(ATTACKS), "folder": rng.choice(ATTACKS)}
        return f"<think>t</think>\n<tool_call>\n{json.dumps({'name': name, 'parameters': args})}\n</tool_call>"
    if kind == 6:  # plausible answers with one mutation
        text = rng.choice(GROUND_TRUTHS).replace("<tool_call>", rng.choice(["<tool_call>", "<tool_call>\n", ""]), 1)
        cut = rng.randrange(len(text) + 1)
        return "<think>x</think>\n" + text[:cut] + rng.choice(FRAGMENTS) + text[cut:]
    return "".join(rng.choice(FRAGMENTS + ATTACKS) for _ in range(rng.randrange(60)))


@pytest.fixture
def no_execution(monkeypatch):
    """Spies on everything model text would need to do harm; the canary is the tools' neighbour."""
    calls = TRIPPED
    calls.clear()
    for name in ("eval", "exec", "open", "breakpoint"):
        original = getattr(builtins, name)
        monkeypatch.setattr(builtins, name, lambda *a, _n=name, _o=original, **k: calls.append(_n) or _o(*a, **k))
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append("os.system"))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: calls.append("Popen"))
    module = types.ModuleType("fuzz_tools")
    module.FuzzTools, module.canary = FuzzTools, canary
    monkeypatch.setitem(sys.modules, "fuzz_tools", module)
    yield calls


def test_fuzzed_outputs_break_nothing_and_run_nothing(no_execution):
    rng = random.Random(20251201)
    executor = SafeExecutor({"FuzzTools": "fuzz_tools"})
    seen = {"calls": 0, "executed": 0, "rejected": 0}
    for i in range(N_OUTPUTS):
        text = fuzz_output(rng)
        gt = GROUND_TRUTHS[i % len(GROUND_TRUTHS)]
        for variant in VARIANTS:
            score = compute_score(text, gt, step=1 + i % 300, schedule=bool(i % 2), variant=variant)
            assert set(score) == {"format", "correctness", "total"} and all(math.isfinite(v) for v in score.values())
        labels = label_text(text)
        assert labels.shape == (len(text),) and np.isin(labels, [r.value for r in Region]).all()
        for rule in BLOCK_RULES:
            out = decode(text, blocks=rule, allowed=TOOLS)
            assert all(c.name in TOOLS for c in out.calls)
        calls = eval_decode_calls(text, "hermes" if i % 2 else "toolrl", TOOLS)
        strings = [format_call(c.name, c.kwargs) for c in calls] + text.split("\n")[:4]
        results, _ = executor(strings, {"FuzzTools": {}}, ["FuzzTools"], "fuzz", f"entry_{i % 7}")
        assert len(results) == len(strings) and all(isinstance(r, str) for r in results)
        seen["calls"] += len(calls)
        seen["rejected"] += sum(r.startswith("Error during execution") for r in results)
        seen["executed"] += sum(not r.startswith("Error during execution") for r in results)
    assert no_execution == []
    # the fuzz reaches both sides: real tool calls run, and most raw text is turned away
    assert seen["calls"] > 500 and seen["executed"] > 500 and seen["rejected"] > 5_000, seen
