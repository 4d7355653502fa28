"""Parse a tool-use response: `<think>...</think>`, `<tool_call>` (one JSON object per line), `<response>`.

Nothing here raises on any input string: malformed parts are reported in `ParsedResponse.errors`.

Two views of the same text:
- `scan_blocks` / `scan_call_spans`: character spans (tags, think content, each call's name value and
  argument object), lenient enough to locate a name in broken JSON; `rest.tooluse.regions` labels tokens
  from them.
- `parse_response` / `parse_tool_calls`: strict values (json.loads per line) for the reward.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

BLOCK_KINDS = ("think", "tool_call", "response")
TAGS = tuple(t for k in BLOCK_KINDS for t in (f"<{k}>", f"</{k}>"))
_OPEN_RE = re.compile(r"<(think|tool_call|response)>")
_ANY_TAG_RE = re.compile(r"</?(?:think|tool_call|response)>")
PARAM_KEYS = ("parameters", "arguments")


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # exclusive


@dataclass(frozen=True)
class Block:
    kind: str
    open: Span  # empty Span(0, 0) when the opening tag lives in the prompt
    content: Span
    close: Optional[Span]  # None when the block is never closed (runs to the end)


@dataclass(frozen=True)
class CallSpan:
    name: Optional[Span]  # the tool-name string value, without its quotes
    params: Optional[Span]  # the whole argument value, braces included


@dataclass
class ToolCall:
    name: str
    parameters: dict


@dataclass
class ParsedResponse:
    think: Optional[str] = None
    tool_calls: Optional[list[ToolCall]] = None  # None: no <tool_call> block
    response: Optional[str] = None
    errors: list[str] = field(default_factory=list)
    tag_counts: dict[str, int] = field(default_factory=dict)


def scan_blocks(text: str) -> list[Block]:
    """Top-level blocks in order. A block runs from its opening tag to the next matching closing tag (other
    tags inside are content). If the text's first tag is a `</think>` (the opening tag was in the prompt, as
    in Qwen3 chat templates), the text before it is a think block."""
    blocks: list[Block] = []
    pos = 0
    first = _ANY_TAG_RE.search(text)
    if first is not None and first.group(0) == "</think>":
        blocks.append(Block("think", Span(0, 0), Span(0, first.start()), Span(first.start(), first.end())))
        pos = first.end()
    while True:
        m = _OPEN_RE.search(text, pos)
        if m is None:
            return blocks
        kind = m.group(1)
        close_tag = f"</{kind}>"
        c = text.find(close_tag, m.end())
        if c < 0:
            blocks.append(Block(kind, Span(m.start(), m.end()), Span(m.end(), len(text)), None))
            return blocks
        blocks.append(Block(kind, Span(m.start(), m.end()), Span(m.end(), c), Span(c, c + len(close_tag))))
        pos = c + len(close_tag)


def stray_tags(text: str, blocks: list[Block]) -> list[Span]:
    """Tag occurrences outside every block (e.g. an unmatched `</response>`)."""
    covered = [(b.open.start, b.close.end if b.close else len(text)) for b in blocks]
    return [
        Span(m.start(), m.end())
        for m in _ANY_TAG_RE.finditer(text)
        if not any(s <= m.start() < e for s, e in covered)
    ]


def _scan_string(text: str, i: int, end: int) -> int:
    """i at an opening quote -> index after the closing quote (or `end` if unterminated)."""
    i += 1
    while i < end:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    return end


def _scan_value(text: str, i: int, end: int) -> int:
    """i at the first char of a JSON value -> index after it (lenient: stops at `end`)."""
    ch = text[i]
    if ch == '"':
        return _scan_string(text, i, end)
    if ch in "{[":
        depth = 0
        while i < end:
            ch = text[i]
            if ch == '"':
                i = _scan_string(text, i, end)
                continue
            if ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return end
    while i < end and text[i] not in ",}]\n":
        i += 1
    return i


def _skip_ws(text: str, i: int, end: int) -> int:
    while i < end and text[i] in " \t\r\n":
        i += 1
    return i


def _scan_call_object(text: str, i: int, end: int) -> tuple[int, CallSpan]:
    """i at '{' of a call object -> (index after it, spans of its top-level name / parameters values)."""
    name = params = None
    i += 1
    while True:
        i = _skip_ws(text, i, end)
        if i >= end:
            break
        if text[i] == "}":
            i += 1
            break
        if text[i] != '"':
            break  # malformed: stop here, the caller resumes scanning after it
        key_end = _scan_string(text, i, end)
        key = text[i + 1 : key_end - 1]
        i = _skip_ws(text, key_end, end)
        if i >= end or text[i] != ":":
            break
        i = _skip_ws(text, i + 1, end)
        if i >= end:
            break
        v_end = max(_scan_value(text, i, end), i + 1)
        if key == "name" and text[i] == '"':
            closed = v_end - 1 > i and text[v_end - 1] == '"'
            name = Span(i + 1, v_end - 1 if closed else v_end)
        elif key in PARAM_KEYS:
            params = Span(i, v_end)
        i = _skip_ws(text, v_end, end)
        if i < end and text[i] == ",":
            i += 1
    return i, CallSpan(name, params)


def scan_call_spans(text: str, start: int, end: int) -> list[CallSpan]:
    """Every `{...}` call object in text[start:end] (one per line, pretty-printed, or inside a list)."""
    calls: list[CallSpan] = []
    i = start
    while i < end:
        if text[i] == "{":
            j, call = _scan_call_object(text, i, end)
            if call.name is not None or call.params is not None:
                calls.append(call)
            i = max(j, i + 1)
        else:
            i += 1
    return calls


def parse_tool_calls(block: str) -> tuple[list[ToolCall], list[str]]:
    """One JSON object per non-blank line: {"name": str, "parameters"|"arguments": object}."""
    calls: list[ToolCall] = []
    errors: list[str] = []
    for n, line in enumerate(block.strip().split("\n")):
        if not line.strip():
            continue
        try:
            obj: Any = json.loads(line)
        except (ValueError, RecursionError) as exc:
            errors.append(f"line {n}: invalid JSON ({type(exc).__name__})")
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            errors.append(f"line {n}: not an object with a string 'name'")
            continue
        key = next((k for k in PARAM_KEYS if k in obj), None)
        params = obj[key] if key else None
        if not isinstance(params, dict):
            errors.append(f"line {n}: 'parameters' missing or not an object")
            continue
        calls.append(ToolCall(obj["name"], params))
    return calls, errors


def parse_response(text: str) -> ParsedResponse:
    """Strict view: the first block of each kind; tool calls parsed with `parse_tool_calls`."""
    out = ParsedResponse(tag_counts={t: text.count(t) for t in TAGS})
    for block in scan_blocks(text):
        content = text[block.content.start : block.content.end]
        if block.close is None:
            out.errors.append(f"<{block.kind}> is not closed")
        if block.kind == "think" and out.think is None:
            out.think = content
        elif block.kind == "response" and out.response is None:
            out.response = content
        elif block.kind == "tool_call" and out.tool_calls is None:
            out.tool_calls, errs = parse_tool_calls(content)
            out.errors.extend(errs)
    return out
