import builtins
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rest.tooluse.calls import (
    Call,
    extract_calls,
    format_call,
    parse_call_string,
    parse_json_call,
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


def test_json_calls():
    assert parse_json_call('{"name": "cd", "arguments": {"folder": "a"}}', ALLOWED).call.kwargs == {"folder": "a"}
    assert parse_json_call({"name": "cd", "parameters": {"folder": "a"}}).call.kwargs == {"folder": "a"}
    assert parse_json_call('{"name": "cd", "arguments": "{\\"folder\\": \\"a\\"}"}').ok  # double-encoded
    assert not parse_json_call('{"name": "rm", "arguments": {}}', ALLOWED).ok
    assert not parse_json_call('{"name": "cd", "arguments": [1]}').ok
    assert not parse_json_call("not json").ok
    assert not parse_json_call('["cd"]').ok


def test_extract_calls_last_block_and_all_blocks():
    text = (
        '<tool_call>\n{"name": "cd", "parameters": {"folder": "x"}}\n</tool_call> then '
        '<tool_call>\n{"name": "mkdir", "parameters": {"dir_name": "y"}}\n{"name": "None", "parameters": {}}\n'
        "garbage\n</tool_call>"
    )
    calls, failures = extract_calls(text)
    assert [c.name for c in calls] == ["mkdir"] and len(failures) == 1
    calls, _ = extract_calls(text, last_block_only=False)
    assert [c.name for c in calls] == ["cd", "mkdir"]
    assert extract_calls("no calls here") == ([], [])


def test_format_call_round_trips_through_the_parser():
    args = {"a": "it's", "b": [1, -2.5, None, True], "c": {"k": (1, 2)}}
    text = format_call("echo", args)
    assert text == "echo(a=\"it's\", b=[1, -2.5, None, True], c={'k': (1, 2)})"
    assert parse_call_string(text, ALLOWED).call.kwargs == args


def test_render_tool_call_block():
    block = render_tool_call_block([Call("cd", {"folder": "x"})])
    assert block == '<tool_call>\n{"name": "cd", "parameters": {"folder": "x"}}\n</tool_call>'
    assert extract_calls(block)[0][0].kwargs == {"folder": "x"}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_never_raises_on_any_text(text):
    assert parse_call_string(text, ALLOWED).ok in (True, False)
    assert parse_json_call(text, ALLOWED).ok in (True, False)
    extract_calls("<tool_call>" + text + "</tool_call>", ALLOWED)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="cdfolr()=[]{}'\",.:_ -+*0123456789abx", max_size=60))
def test_never_raises_on_call_like_text(text):
    parse_call_string("cd(" + text, ALLOWED)
    parse_call_string(text, ALLOWED)
