from rest.tooluse.parsing import parse_response, parse_tool_calls, scan_blocks, scan_call_spans, stray_tags

TEXT = (
    "<think>plan</think>\n<tool_call>\n"
    '{"name": "a", "parameters": {"x": 1}}\n'
    '{"name": "b", "arguments": {"y": "}"}}\n'
    "</tool_call>\n<response>done</response>"
)


def test_blocks_in_order():
    blocks = scan_blocks(TEXT)
    assert [b.kind for b in blocks] == ["think", "tool_call", "response"]
    assert TEXT[blocks[0].content.start : blocks[0].content.end] == "plan"
    assert all(b.close is not None for b in blocks)


def test_every_call_spans_name_and_params():
    b = scan_blocks(TEXT)[1]
    calls = scan_call_spans(TEXT, b.content.start, b.content.end)
    assert [TEXT[c.name.start : c.name.end] for c in calls] == ["a", "b"]
    assert [TEXT[c.params.start : c.params.end] for c in calls] == ['{"x": 1}', '{"y": "}"}']


def test_call_spans_pretty_printed_list_and_broken_json():
    text = '[\n  {\n    "name": "f",\n    "parameters": {"k": [1, {"z": 2}]}\n  },\n  {"name": "g", "parameters": {"u'
    calls = scan_call_spans(text, 0, len(text))
    assert [text[c.name.start : c.name.end] for c in calls] == ["f", "g"]
    assert text[calls[0].params.start : calls[0].params.end] == '{"k": [1, {"z": 2}]}'
    assert text[calls[1].params.start : calls[1].params.end] == '{"u'  # unterminated: runs to the end
    text = '{"name": "unterminated'
    (call,) = scan_call_spans(text, 0, len(text))
    assert text[call.name.start : call.name.end] == "unterminated"


def test_parse_response_values():
    out = parse_response(TEXT)
    assert out.think == "plan" and out.response == "done" and not out.errors
    assert [(c.name, c.parameters) for c in out.tool_calls] == [("a", {"x": 1}), ("b", {"y": "}"})]
    assert out.tag_counts["<tool_call>"] == 1


def test_malformed_parts_are_reported_not_raised():
    out = parse_response("<think>open <tool_call>\nnope")
    assert out.think == "open <tool_call>\nnope" and out.tool_calls is None
    assert out.errors == ["<think> is not closed"]
    calls, errors = parse_tool_calls('{"name": 3}\n[1]\n{"name": "x"}\nnot json\n\n{"name": "ok", "parameters": {}}')
    assert [c.name for c in calls] == ["ok"] and len(errors) == 4
    assert parse_response("").tool_calls is None
    deep = "[" * 100000
    assert parse_tool_calls(deep)[1]


def test_prompt_opened_think_and_stray_tags():
    text = "reasoning here</think>\n<response>x</response></tool_call>"
    blocks = scan_blocks(text)
    assert blocks[0].kind == "think" and text[: blocks[0].content.end] == "reasoning here"
    assert [text[s.start : s.end] for s in stray_tags(text, blocks)] == ["</tool_call>"]
