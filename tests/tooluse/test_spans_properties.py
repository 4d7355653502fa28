"""Thousands of random and malformed responses through the decoder: spans stay in bounds and agree with the
decoded values (the region labels and the reward read the same calls)."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rest.tooluse.calls import decode, scan_blocks, scan_call_spans, stray_tags

FRAGMENTS = [
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<response>", "</response>", "\n", " ",
    '{"name": "', '"parameters": {', '"arguments": ', '"name"', "{", "}", "[", "]", '"', ":", ",", "\\",
    "get_weather", '"city"', "Paris", "日本", "é", "<", ">", "tool", "_call", "null", "1.5", "\x00",
]
responses = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=40).map("".join)
SETTINGS = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(responses)
def test_parse_never_raises_and_spans_are_in_bounds(text):
    blocks = scan_blocks(text)
    out = decode(text)
    assert out.found == any(b.kind == "tool_call" and b.close is not None for b in blocks)
    for line in out.lines:  # each line is a call or says why not, never both
        assert (line.call is None) == bool(line.error)
    last = 0
    for b in blocks:
        assert last <= b.open.start <= b.open.end <= b.content.start <= b.content.end <= len(text)
        if b.close is not None:
            assert b.content.end == b.close.start and text[b.close.start : b.close.end] == f"</{b.kind}>"
            last = b.close.end
        else:
            assert b.content.end == len(text)
        if b.kind == "tool_call":
            spans = scan_call_spans(text, b.content.start, b.content.end)
            for call in spans:
                for span in (call.name, call.params):
                    if span is not None:
                        assert b.content.start <= span.start <= span.end <= b.content.end
            if b.close is not None:  # every decoded name is the text of a NAME span of its block
                names = {text[c.name.start : c.name.end] for c in spans if c.name is not None}
                lines = decode(text[b.open.start : b.close.end]).lines
                assert {x.call.name for x in lines if x.call is not None and "\\" not in x.text} <= names
    for span in stray_tags(text, blocks):
        assert text[span.start : span.end].strip("</>") in ("think", "tool_call", "response")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=3000))
def test_arbitrary_unicode_and_long_inputs(text):
    for rule in ("all", "last", "toolrl"):
        if "</tool_call>" not in text:
            assert not decode(text, blocks=rule).found and not decode("<tool_call>\n" + text, blocks=rule).found
        closed = "<tool_call>\n" + text + "\n</tool_call>"
        out = decode(closed, blocks=rule)
        assert out.found and all(line.text in closed and "\n" not in line.text for line in out.lines)
