"""Thousands of random and malformed responses through the parser: never raises, spans stay in bounds."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rest.tooluse.parsing import parse_response, scan_blocks, scan_call_spans, stray_tags

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
    out = parse_response(text)
    assert isinstance(out.errors, list)
    blocks = scan_blocks(text)
    last = 0
    for b in blocks:
        assert last <= b.open.start <= b.open.end <= b.content.start <= b.content.end <= len(text)
        if b.close is not None:
            assert b.content.end == b.close.start and text[b.close.start : b.close.end] == f"</{b.kind}>"
            last = b.close.end
        else:
            assert b.content.end == len(text)
        if b.kind == "tool_call":
            for call in scan_call_spans(text, b.content.start, b.content.end):
                for span in (call.name, call.params):
                    if span is not None:
                        assert b.content.start <= span.start <= span.end <= b.content.end
    for span in stray_tags(text, blocks):
        assert text[span.start : span.end].strip("</>") in ("think", "tool_call", "response")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=3000))
def test_arbitrary_unicode_and_long_inputs(text):
    parse_response(text)
    parse_response("<tool_call>\n" + text)
