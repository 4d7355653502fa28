import builtins
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rest.tooluse.calls import (
    BLOCK_RULES,
    Call,
    DecodedCalls,
    decode,
    decode_calls,
    format_call,
    parse_call_string,
    render_tool_call_block,
)

ALLOWED = {"cd", "mkdir", "sort", "math.hypot", "echo"}


def test_keyword_and_positional_literals():
    p = parse_call_string("mkdir(dir_name='temp', mode=-1, tags=['a', ('b', 2)], opts={'x': 1.5, 'y': None})", ALLOWED)
    assert p.ok, p.error
    assert p.call.kwargs == {"dir_name": "temp", "mode": -1, "tags": ["a", ("b", 2)], "opts": {"x": 1.5, "y": None}}
    p = parse_call_string("sort('final_report.pdf')", ALLOWED)
    assert p.ok and p.call.args == ["final_report.pdf"] and p.call.kwargs == {}
    assert parse_call_string("math.hypot(x=3, y=4)", ALLOWED).call.name == "math.hypot"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch SENTINEL')",
        "cd(folder=__import__('os').system('touch SENTINEL'))",
        "os.system('touch SENTINEL')",
        "cd(folder=open('SENTINEL', 'w'))",
        "cd(folder=(lambda: open('SENTINEL', 'w'))())",
        "cd(folder=[open('SENTINEL', 'w') for _ in range(1)])",
        "cd(folder=echo('x'))",
        "cd(*['x'])",
        "cd(**{'folder': 'x'})",
        "cd(folder=f'{open(\"SENTINEL\", \"w\")}')",
        "cd(folder=x)",
        "cd(folder='a'.join('b'))",
        "cd(folder=1 + 2)",
        "cd(folder=...)",
        "cd.__class__(folder='x')",
        "cd(folder='x'); open('SENTINEL', 'w')",
        "(cd)(folder='x') if True else 0",
        "exit()",
        "",
        "cd(",
        "[" * 5000 + "]" * 5000,
        "cd(folder=" + "[" * 5000 + "]" * 5000 + ")",
    ],
)
def test_malicious_strings_are_rejected_and_nothing_runs(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    called = []  # ast.parse itself uses compile(), so spy on what model text would need to do harm
    for name in ("eval", "exec", "open"):
        original = getattr(builtins, name)
        monkeypatch.setattr(builtins, name, lambda *a, _n=name, _o=original, **k: called.append(_n) or _o(*a, **k))
    monkeypatch.setattr(os, "system", lambda *a: called.append("os.system"))
    result = parse_call_string(text, ALLOWED)
    monkeypatch.undo()
    assert not result.ok and result.error
    assert not os.path.exists(tmp_path / "SENTINEL")
    assert called == []


def test_json_lines_one_rule_for_keys_and_shapes():
    text = (
        '<tool_call>\n{"name": "cd", "arguments": {"folder": "a"}}\n'
        '{"name": "cd", "parameters": {"folder": "p"}, "arguments": {"folder": "q"}}\n'  # "parameters" wins
        '{"name": "cd", "arguments": "{\\"folder\\": \\"a\\"}"}\n'  # string-encoded: not an object
        '{"name": "cd"}\n{"name": "rm", "arguments": {}}\n["cd"]\nnot json\n</tool_call>'
    )
    out = decode(text, allowed=ALLOWED)
    assert [c.kwargs for c in out.calls] == [{"folder": "a"}, {"folder": "p"}]
    assert [line.is_json for line in out.lines] == [True] * 6 + [False]
    assert [line.error.split(" ")[0] for line in out.lines] == ["", "", "'arguments'", "no", "unknown", "not", "not"]
    assert out.lines[5].value == ["cd"] and len(out.errors) == 5
    assert decode(text, argument_keys=("parameters",)).calls == [Call("cd", {"folder": "p"})]


def test_block_rules():
    a, b = '{"name": "cd", "parameters": {"folder": "x"}}', '{"name": "mkdir", "parameters": {"dir_name": "y"}}'
    text = f"<think>maybe <tool_call> later</think>\n<tool_call>\n{a}\n</tool_call> then <tool_call>\n{b}\n\n</tool_call>"
    assert [c.name for c in decode(text).calls] == ["cd", "mkdir"]  # every closed block, think content skipped
    assert [c.name for c in decode(text, blocks="last").calls] == ["mkdir"]
    # ToolRL's reward rule: first "<tool_call>" anywhere (here inside the thought) up to the first close
    toolrl = decode(text, blocks="toolrl", skip_blank_lines=False)
    assert [line.text for line in toolrl.lines] == ["later</think>"] and toolrl.calls == []
    nested = f"<tool_call>\n{a}\n<tool_call>\n{b}\n</tool_call>"
    assert [c.name for c in decode(nested, blocks="toolrl").calls] == ["cd"]  # a second open ends the block
    lenient = decode(nested)  # scan_blocks: one block holding a, a stray "<tool_call>" line and b
    assert [c.name for c in lenient.calls] == ["cd", "mkdir"] and lenient.errors == ["line 1: not valid JSON (JSONDecodeError)"]
    blank = f"<tool_call>\n{a}\n\n{b}\n</tool_call>"
    assert len(decode(blank).calls) == 2
    strict = decode(blank, blocks="toolrl", skip_blank_lines=False)
    assert [line.is_json for line in strict.lines] == [True, False, True]
    assert decode("no calls here") == decode("<tool_call> unclosed") == DecodedCalls(found=False)
    assert not decode("</tool_call><tool_call>", blocks="all").found
    assert decode_calls(text, blocks="last") == ([Call("mkdir", {"dir_name": "y"})], [])
    with pytest.raises(ValueError, match="blocks must be one of"):
        decode(text, blocks="first")


def test_format_call_round_trips_through_the_parser():
    args = {"a": "it's", "b": [1, -2.5, None, True], "c": {"k": (1, 2)}}
    text = format_call("echo", args)
    assert text == "echo(a=\"it's\", b=[1, -2.5, None, True], c={'k': (1, 2)})"
    assert parse_call_string(text, ALLOWED).call.kwargs == args


def test_render_tool_call_block():
    block = render_tool_call_block([Call("cd", {"folder": "x"})])
    assert block == '<tool_call>\n{"name": "cd", "parameters": {"folder": "x"}}\n</tool_call>'
    assert decode_calls(block) == ([Call("cd", {"folder": "x"})], [])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_decodes_to_allowed_calls_or_errors(text):
    parsed = parse_call_string(text, ALLOWED)
    assert (parsed.call is not None and parsed.call.name in ALLOWED) if parsed.ok else (parsed.call is None and parsed.error)
    for rule in BLOCK_RULES:
        out = decode("<tool_call>" + text + "</tool_call>", blocks=rule, allowed=ALLOWED)
        assert out.found
        for line in out.lines:  # a line is a call of an allowed name, or it says why not
            assert (line.call is not None and line.call.name in ALLOWED and not line.error) or (line.call is None and line.error)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="cdfolr()=[]{}'\",.:_ -+*0123456789abx", max_size=60))
def test_call_like_text_is_a_literal_call_of_an_allowed_name_or_rejected(text):
    for candidate in ("cd(" + text, text):
        parsed = parse_call_string(candidate, ALLOWED)
        if parsed.ok:
            assert parsed.call.name in ALLOWED and format_call(parsed.call.name, parsed.call.kwargs) is not None
        else:
            assert parsed.call is None and parsed.error
