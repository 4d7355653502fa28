from rest.tooluse.calls import scan_blocks, scan_call_spans, stray_tags

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


def test_stray_tags_are_the_tags_outside_every_block():
    text = "a</response> <think>x <tool_call> y</think> </tool_call>"
    blocks = scan_blocks(text)
    assert [b.kind for b in blocks] == ["think"]  # the <tool_call> inside the thought is think content
    assert [text[s.start : s.end] for s in stray_tags(text, blocks)] == ["</response>", "</tool_call>"]
