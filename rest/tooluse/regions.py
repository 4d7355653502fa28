"""Region label of every sampled response token: FORMAT, NAME, PARAMS, COT or OTHER.

Labels come from the sampled token ids themselves, never from re-tokenizing decoded text:
1. each id -> its exact bytes (byte-level BPE: the inverse GPT-2 byte map; added tokens: their content;
   special tokens such as EOS/padding: no bytes, label OTHER);
2. the bytes are concatenated and decoded with `surrogateescape`, so every byte belongs to one character
   even when a token ends inside a multi-byte UTF-8 character;
3. characters are labelled from the spans of `rest.tooluse.calls` (the decoder's block rules and argument
   keys): the six tags -> FORMAT; think content -> COT; inside a `<tool_call>` block, EVERY call object's
   "name" string value (without quotes) -> NAME and its whole "parameters"/"arguments" value (braces included) -> PARAMS; everything else (JSON keys and
   punctuation of the call object, response text, whitespace between blocks) -> OTHER.

Straddling rule: a token covering characters of several regions takes the highest-priority one,
FORMAT > NAME > PARAMS > COT > OTHER. So `>\\n` closing a multi-token `<tool_call>` is FORMAT, `"get` is NAME,
` {"` opening the arguments is PARAMS, and `.</` ending a thought is FORMAT. A token with no bytes is OTHER.
The rule depends only on the text, so a tag sampled as one added token (Qwen3's `<tool_call>`) or as several
pieces (SmolLM2's, or Qwen3 spelling it out) is labelled the same way.
"""

from __future__ import annotations

import re
from enum import IntEnum

import numpy as np

from rest.tooluse.calls import scan_blocks, scan_call_spans, stray_tags
from rest.byte_level import bytes_to_unicode


class Region(IntEnum):
    OTHER = 0
    FORMAT = 1
    NAME = 2
    PARAMS = 3
    COT = 4


_PRIORITY = np.array([0, 4, 3, 2, 1], dtype=np.int8)  # by Region value: FORMAT > NAME > PARAMS > COT > OTHER
_BY_PRIORITY = np.array([Region.OTHER, Region.COT, Region.PARAMS, Region.NAME, Region.FORMAT], dtype=np.int64)
_HEX_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


_BYTE_DECODER = {char: byte for byte, char in bytes_to_unicode().items()}


class TokenBytes:
    """id -> exact bytes for one tokenizer (cached per id)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.byte_level = self._is_byte_level(tokenizer)
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        self.added = {int(i): getattr(t, "content", str(t)) for i, t in added.items()}
        self.textless = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}
        self.cache: dict[int, bytes] = {}

    @staticmethod
    def _is_byte_level(tokenizer) -> bool:
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        if decoder is None:
            return False
        try:
            state = decoder.__getstate__()  # the decoder's JSON (a Sequence lists its parts)
        except Exception:  # noqa: BLE001 - an exotic backend: fall back to the generic path
            return type(decoder).__name__ == "ByteLevel"
        return b'"ByteLevel"' in (state if isinstance(state, bytes) else str(state).encode())

    def __call__(self, token_id: int) -> bytes:
        b = self.cache.get(token_id)
        if b is None:
            b = self.cache[token_id] = self._lookup(token_id)
        return b

    def _lookup(self, token_id: int) -> bytes:
        if token_id in self.textless:
            return b""
        if token_id in self.added:
            return self.added[token_id].encode("utf-8")
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if piece is None:
            return b""
        if self.byte_level and all(ch in _BYTE_DECODER for ch in piece):
            return bytes(_BYTE_DECODER[ch] for ch in piece)
        m = _HEX_BYTE.match(piece)
        if m:  # sentencepiece byte fallback
            return bytes([int(m.group(1), 16)])
        if self.byte_level:
            return self.tokenizer.decode([token_id]).encode("utf-8")
        return piece.replace("\u2581", " ").encode("utf-8")  # sentencepiece word boundary


_TOKEN_BYTES: dict[int, TokenBytes] = {}


def token_bytes(tokenizer) -> TokenBytes:
    entry = _TOKEN_BYTES.get(id(tokenizer))
    if entry is None or entry.tokenizer is not tokenizer:
        entry = _TOKEN_BYTES[id(tokenizer)] = TokenBytes(tokenizer)
    return entry


def label_text(text: str) -> np.ndarray:
    """Region per character of `text` (int8 array)."""
    labels = np.zeros(len(text), dtype=np.int8)
    blocks = scan_blocks(text)
    for block in blocks:
        labels[block.open.start : block.open.end] = Region.FORMAT
        if block.close is not None:
            labels[block.close.start : block.close.end] = Region.FORMAT
        if block.kind == "think":
            labels[block.content.start : block.content.end] = Region.COT
        elif block.kind == "tool_call":
            for call in scan_call_spans(text, block.content.start, block.content.end):
                if call.params is not None:
                    labels[call.params.start : call.params.end] = Region.PARAMS
                if call.name is not None:
                    labels[call.name.start : call.name.end] = Region.NAME
    for span in stray_tags(text, blocks):
        labels[span.start : span.end] = Region.FORMAT
    return labels


def label_response(token_ids: list[int], tokenizer) -> list[int]:
    """Region value of each token in `token_ids` (the sampled response ids), see the module docstring."""
    ids = [int(t) for t in token_ids]
    if not ids:
        return []
    lookup = token_bytes(tokenizer)
    pieces = [lookup(t) for t in ids]
    data = b"".join(pieces)
    text = data.decode("utf-8", errors="surrogateescape")
    char_labels = label_text(text)
    if len(text) == len(data):  # ASCII fast path: one byte per character
        byte_labels = char_labels
    else:
        widths = [len(ch.encode("utf-8", errors="surrogateescape")) for ch in text]
        byte_labels = np.repeat(char_labels, widths)
    byte_prio = _PRIORITY[byte_labels]
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    out = np.zeros(len(ids), dtype=np.int64)
    nonempty = lengths > 0
    if nonempty.any() and byte_prio.size:
        token_prio = np.maximum.reduceat(byte_prio, starts[nonempty])
        out[nonempty] = _BY_PRIORITY[token_prio]
    return out.tolist()


def model_turn_spans(response_mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each maximal run of mask-1 tokens: one model turn each (the agent loop always puts the
    chat template's tokens, mask 0, between two turns)."""
    spans, start = [], None
    for i, m in enumerate(response_mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    return spans + ([(start, len(response_mask))] if start is not None else [])


def label_agent_response(response_ids: list[int], response_mask: list[int], tokenizer) -> list[int]:
    """Region value of each token of a multi-turn response (`rest.workers.agent_loop.AgentSample`): every model turn
    is labelled on its own, as a single-turn response (`label_response`: a `<think>` or `<tool_call>` never spans
    turns); observation and template tokens (mask 0) get OTHER. They carry no region: region weights and
    region entropy statistics (`rest.algo.region_weights`) count only tokens with loss mask 1, so the label of a
    mask-0 token is never read; OTHER keeps it a valid index."""
    if len(response_ids) != len(response_mask):
        raise ValueError(f"{len(response_ids)} response ids but {len(response_mask)} mask values")
    labels = [int(Region.OTHER)] * len(response_ids)
    for start, end in model_turn_spans(response_mask):
        labels[start:end] = label_response(response_ids[start:end], tokenizer)
    return labels
