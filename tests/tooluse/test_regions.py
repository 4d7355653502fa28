"""Region labels on real tokenizers: Qwen3's vocabulary (tags are single added tokens) and SmolLM2's (tags are
several ordinary tokens), with tags split across tokens in different ways."""

import functools

import pytest

from rest.tooluse.regions import Region, label_response, label_text

cache = pytest.importorskip("rest.models.cache")

F, N, P, C, O = Region.FORMAT, Region.NAME, Region.PARAMS, Region.COT, Region.OTHER
TWO_CALLS = (
    "<think>Two lookups.</think>\n<tool_call>\n"
    '{"name": "get_weather", "parameters": {"city": "Paris"}}\n'
    '{"name": "get_time", "parameters": {"tz": "CET"}}\n'
    "</tool_call>\n<response>ok</response>"
)


@functools.lru_cache(maxsize=None)
def load(name):
    return cache.load_tokenizer(name)


@pytest.fixture(scope="module", params=["tiny-qwen3", "smollm2-135m-instruct"])
def tok(request):
    return load(request.param)


def enc(tok, *pieces):
    """Concatenate separately encoded pieces: a tokenization that re-tokenizing the text would not give."""
    return [i for p in pieces for i in tok.encode(p, add_special_tokens=False)]


def by_piece(tok, ids, labels):
    return [(tok.decode([i]), Region(l).name) for i, l in zip(ids, labels)]


def reference_labels(tok, text):
    """Independent path: the tokenizer's own char offsets + max-priority over label_text."""
    rank = {O: 0, C: 1, P: 2, N: 3, F: 4}
    chars = label_text(text)
    out = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for s, e in out["offset_mapping"]:
        labels.append(max((Region(int(c)) for c in chars[s:e]), key=rank.get, default=O))
    return out["input_ids"], [int(l) for l in labels]


def test_matches_offset_reference_on_canonical_encoding(tok):
    ids, expected = reference_labels(tok, TWO_CALLS)
    assert label_response(ids, tok) == expected


def test_every_call_labelled(tok):
    ids = tok.encode(TWO_CALLS, add_special_tokens=False)
    labels = label_response(ids, tok)
    names = "".join(tok.decode([i]) for i, l in zip(ids, labels) if l == N)
    assert "get_weather" in names and "get_time" in names
    params = "".join(tok.decode([i]) for i, l in zip(ids, labels) if l == P)
    assert "Paris" in params and "CET" in params
    cot = "".join(tok.decode([i]) for i, l in zip(ids, labels) if l == C)
    assert "Two lookups" in cot
    assert [tok.decode([i]) for i, l in zip(ids, labels) if l == O and tok.decode([i]).strip() == "ok"]


@pytest.mark.parametrize(
    "pieces",
    [
        ("<tool", "_call>", "\n", '{"name": "f", "parameters": {}}', "\n</tool", "_call>"),
        ("<", "tool_", "call", ">\n{", '"name": "f", "parameters": {}}\n<', "/tool_call>"),
        ("<tool_call>\n", '{"na', 'me": "f", "param', 'eters": {}}\n', "</tool_call>"),
    ],
)
def test_tags_split_differently_label_the_same(tok, pieces):
    ids = enc(tok, *pieces)
    labels = label_response(ids, tok)
    text = "".join(pieces)
    assert tok.decode(ids) == text
    got = {tok.decode([i]): l for i, l in zip(ids, labels)}
    assert any(l == N for l in labels), by_piece(tok, ids, labels)
    assert got[[tok.decode([i]) for i in ids][0]] == F  # the first piece of <tool_call> is a tag token
    assert labels[-1] == F
    for i, l in zip(ids, labels):
        piece = tok.decode([i])
        if piece and set(piece) <= set("<>/tool_call"):
            assert l == F, by_piece(tok, ids, labels)


def test_qwen3_single_tag_token_vs_spelled_out():
    tok = load("tiny-qwen3")
    single = tok.encode("<tool_call>", add_special_tokens=False)
    assert len(single) == 1
    spelled = enc(tok, "<", "tool", "_call", ">")
    assert len(spelled) > 1
    for ids in (single, spelled):
        assert label_response(ids + enc(tok, "\n{\"name\": \"f\"}"), tok)[: len(ids)] == [F] * len(ids)


def test_name_sampled_char_by_char(tok):
    head = enc(tok, "<tool_call>\n{\"name\": \"")
    ids = head + enc(tok, *"get_weather") + enc(tok, "\"}\n</tool_call>")
    labels = label_response(ids, tok)
    assert labels[len(head) : len(head) + len("get_weather")] == [N] * len("get_weather")


def test_special_tokens_unclosed_think_and_unicode(tok):
    eos = tok.eos_token_id
    tag = enc(tok, "<think>")
    ids = tag + enc(tok, "Zürich 日本 ") + [eos]
    labels = label_response(ids, tok)
    assert labels[: len(tag)] == [F] * len(tag) and labels[-1] == O and set(labels[len(tag) : -1]) == {C}
    ids = enc(tok, "reasoning</think>\n<response>hi</response>")  # think opened in the prompt
    labels = label_response(ids, tok)
    assert labels[0] == C and O in labels
    assert label_response([], tok) == []


def test_multibyte_char_split_across_byte_tokens():
    tok = load("tiny-qwen3")
    # Qwen's byte-level vocabulary has a token for every single byte: spell 日 as three byte tokens
    byte_ids = [tok.convert_tokens_to_ids(c) for c in tok.convert_ids_to_tokens(tok.encode("日", add_special_tokens=False))]
    assert byte_ids
    ids = enc(tok, "<think>a") + byte_ids + enc(tok, "</think>")
    labels = label_response(ids, tok)
    assert labels[1:-1] == [C] * (len(ids) - 2)


# --- property tests: random / malformed responses, canonical and arbitrary tokenizations ---------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FRAGMENTS = [
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<response>", "</response>", "\n", " ", ".",
    '{"name": "', '"parameters": {', '"arguments": ', "{", "}", "[", "]", '"', ":", ",", "\\", "get_weather",
    "Paris", "<", ">", "tool", "_call", "/", "think", "1.5", "abc def",
]
ascii_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text("ab \n{}\"<>/_:", max_size=4)), max_size=30).map("".join)
any_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS + ["日本", "é", "🙂"]), st.text(max_size=4)), max_size=30).map("".join)
PROPS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@PROPS
@given(text=ascii_text)
def test_property_matches_offset_reference(tok, text):
    ids, expected = reference_labels(tok, text)
    assert label_response(ids, tok) == expected


@PROPS
@given(text=any_text)
def test_property_any_text_labels_in_range(tok, text):
    ids = tok.encode(text, add_special_tokens=False)
    labels = label_response(ids, tok)
    assert len(labels) == len(ids) and set(labels) <= {0, 1, 2, 3, 4}


@PROPS
@given(data=st.data())
def test_property_arbitrary_token_ids(tok, data):
    ids = data.draw(st.lists(st.integers(0, len(tok) - 1), max_size=40))
    labels = label_response(ids, tok)
    assert len(labels) == len(ids) and set(labels) <= {0, 1, 2, 3, 4}
