"""The one decoder of tool calls written by a model; the reward, the region labels and the evaluation use it.

A model answers with `<think>...</think>`, `<tool_call>` blocks holding one JSON object per line
(`{"name": str, "parameters"|"arguments": object}`) and `<response>...</response>`. This module reads that
text three ways, all from the same block rules:
- spans (`scan_blocks`, `stray_tags`, `scan_call_spans`): character positions of tags, think content and
  each call's name value and argument object, lenient enough to locate a name in broken JSON
  (`rest.tooluse.regions` labels tokens from them);
- values (`decode`, `decode_calls`): one `CallLine` per line of the chosen block(s), each with its JSON value
  and, when it is a well-formed call, a `Call`. What differs between the published reward code and our
  evaluation is an explicit option (`blocks`, `skip_blank_lines`, `argument_keys`), never another parser;
- call strings (`parse_call_string`): BFCL's `name(k=v, ...)`, parsed with `ast`, literals only.

Model text is data, never code: nothing here evaluates or executes anything, and nothing raises on any text.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

# ---------------------------------------------------------------------------------------------- spans

BLOCK_KINDS = ("think", "tool_call", "response")
TAGS = tuple(t for k in BLOCK_KINDS for t in (f"<{k}>", f"</{k}>"))
ARGUMENT_KEYS = ("parameters", "arguments")  # precedence: ToolRL's key first, then Hermes/Qwen3's
_OPEN_RE = re.compile(r"<(think|tool_call|response)>")
_ANY_TAG_RE = re.compile(r"</?(?:think|tool_call|response)>")


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
            return min(i + 1, end)
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
    """i at '{' of a call object -> (index after it, spans of its top-level name / argument values)."""
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
        elif key in ARGUMENT_KEYS:
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


# --------------------------------------------------------------------------------------------- values

BLOCK_RULES = ("all", "last", "toolrl")


@dataclass
class Call:
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    args: list[Any] = field(default_factory=list)  # positional arguments (call strings only), in order


@dataclass
class CallLine:
    """One line of a `<tool_call>` block: its text, its JSON value (when `is_json`) and its call (when the
    value is `{"name": str, <argument key>: object}` with an allowed name), else an error."""

    text: str
    is_json: bool = False
    value: Any = None
    call: Optional[Call] = None
    error: str = ""


@dataclass
class DecodedCalls:
    found: bool  # a block was found under the block rule
    lines: list[CallLine] = field(default_factory=list)
    block_errors: list[str] = field(default_factory=list)

    @property
    def calls(self) -> list[Call]:
        return [line.call for line in self.lines if line.call is not None]

    @property
    def errors(self) -> list[str]:
        return self.block_errors + [f"line {i}: {line.error}" for i, line in enumerate(self.lines) if line.error]


def _block_texts(text: str, blocks: str) -> Optional[list[str]]:
    """Contents of the `<tool_call>` blocks the rule selects; None when there is none.

    "all": every closed block (Hermes writes one block per call); "last": the last closed block (ToolRL's
    and ResT's evaluation scripts); "toolrl": ToolRL's and ResT's reward code, `text.split("<tool_call>")[1]
    .split("</tool_call>")[0]` once both tags occur anywhere. So the content runs from the first
    `<tool_call>` to the first `</tool_call>` after it or, if a second `<tool_call>` comes first, to that
    one (quirk (d)): `<tool_call>\\nA\\n<tool_call>\\nB\\n</tool_call>` reads A.
    """
    if blocks == "toolrl":
        if "<tool_call>" not in text or "</tool_call>" not in text:
            return None
        return [text.split("<tool_call>")[1].split("</tool_call>")[0]]
    closed = [b for b in scan_blocks(text) if b.kind == "tool_call" and b.close is not None]
    if not closed:
        return None
    if blocks == "last":
        closed = closed[-1:]
    return [text[b.content.start : b.content.end] for b in closed]


def call_from_object(value: Any, argument_keys: tuple[str, ...] = ARGUMENT_KEYS,
                     allowed: Optional[Iterable[str]] = None) -> tuple[Optional[Call], str]:
    """(Call, "") for `{"name": str, key: object}` with `key` the first of `argument_keys` present, else
    (None, why). A missing argument object is an error, not `{}`; arguments written as a JSON string are too."""
    if not isinstance(value, dict):
        return None, "not a JSON object"
    name = value.get("name")
    if not isinstance(name, str):
        return None, "'name' missing or not a string"
    key = next((k for k in argument_keys if k in value), None)
    if key is None:
        return None, f"no {' or '.join(repr(k) for k in argument_keys)} key"
    if not isinstance(value[key], dict):
        return None, f"{key!r} is not an object"
    if allowed is not None and name not in set(allowed):
        return None, f"unknown function {name!r}"
    return Call(name, dict(value[key])), ""


def decode(text: str, *, blocks: str = "all", skip_blank_lines: bool = True,
           argument_keys: tuple[str, ...] = ARGUMENT_KEYS, allowed: Optional[Iterable[str]] = None) -> DecodedCalls:
    """Decode the calls of the chosen `<tool_call>` block(s), one JSON object per `\\n`-separated line.

    `skip_blank_lines=False` is ToolRL's reading: the block is stripped, then every line must be JSON, so a
    blank line between calls is a failed line (quirk (a)). Lines are split at "\\n" only, as ToolRL does.
    """
    if blocks not in BLOCK_RULES:
        raise ValueError(f"blocks must be one of {BLOCK_RULES}, got {blocks!r}")
    if not isinstance(text, str):
        return DecodedCalls(False, block_errors=["text is not a string"])
    contents = _block_texts(text, blocks)
    if contents is None:
        return DecodedCalls(False)
    out = DecodedCalls(True)
    allowed = None if allowed is None else set(allowed)
    for content in contents:
        for line_text in content.strip().split("\n"):
            if skip_blank_lines and not line_text.strip():
                continue
            line = CallLine(line_text)
            try:
                line.value, line.is_json = json.loads(line_text), True
            except (ValueError, RecursionError, MemoryError) as e:
                line.error = f"not valid JSON ({type(e).__name__})"
                out.lines.append(line)
                continue
            line.call, line.error = call_from_object(line.value, argument_keys, allowed)
            out.lines.append(line)
    return out


def decode_calls(text: str, blocks: str = "all", allowed: Optional[Iterable[str]] = None
                 ) -> tuple[list[Call], list[str]]:
    """(calls, errors) of the chosen blocks; the simple entry point for evaluation."""
    decoded = decode(text, blocks=blocks, allowed=allowed)
    return decoded.calls, decoded.errors


# --------------------------------------------------------------------------------------- call strings

MAX_CALL_CHARS = 20_000  # longer call strings are rejected before parsing (ast on huge input is slow)


@dataclass
class ParsedCall:
    ok: bool
    call: Optional[Call] = None
    error: str = ""
    source: str = ""


def _fail(source: str, error: str) -> ParsedCall:
    return ParsedCall(ok=False, error=error, source=source)


def _literal(node: ast.AST) -> Any:
    """Value of a literal node; raises ValueError for anything that is not a plain literal."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, type(...)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, bool) or not isinstance(value, (int, float, complex)):
            raise ValueError("unary sign on a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Set):
        return {_literal(e) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dict unpacking (**) is not a literal")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    raise ValueError(f"{type(node).__name__} is not a literal")


def _dotted_name(node: ast.AST) -> Optional[str]:
    """`a.b.c` for Name/Attribute chains (BFCL has names like `math.hypot`); None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def parse_call_string(text: str, allowed: Iterable[str]) -> ParsedCall:
    """Parse one `name(arg, k=v, ...)` string; `allowed` is the set of callable names.

    Positional arguments are kept in `Call.args` (BFCL's ground truth writes `sort('report.pdf')`); binding
    them to parameter names is the executor's job, since only it knows the signature.
    """
    try:
        if not isinstance(text, str):
            return _fail(repr(text)[:200], "call is not a string")
        if len(text) > MAX_CALL_CHARS:
            return _fail(text[:200], "call string too long")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
            return _fail(text, f"not a call expression: {type(e).__name__}")
        node = tree.body
        if not isinstance(node, ast.Call):
            return _fail(text, f"expected a call, got {type(node).__name__}")
        name = _dotted_name(node.func)
        if name is None:
            return _fail(text, "callee is not a plain name")
        if name not in set(allowed):
            return _fail(text, f"unknown function {name!r}")
        call = Call(name=name)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                return _fail(text, "starred arguments are not allowed")
            call.args.append(_literal(arg))
        for kw in node.keywords:
            if kw.arg is None:
                return _fail(text, "**kwargs are not allowed")
            if kw.arg in call.kwargs:
                return _fail(text, f"duplicate argument {kw.arg!r}")
            call.kwargs[kw.arg] = _literal(kw.value)
        return ParsedCall(ok=True, call=call, source=text)
    except (ValueError, TypeError, RecursionError, MemoryError) as e:
        return _fail(str(text)[:200], f"rejected: {e}")


def format_call(name: str, args: dict[str, Any]) -> str:
    """`name(k=repr(v), ...)`: the string form BFCL's multi-turn checker expects."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


def render_tool_call_block(calls: Iterable[Call], key: str = "parameters") -> str:
    """ToolRL's block: `<tool_call>` then one JSON object per line (`key` "parameters" or "arguments")."""
    lines = [json.dumps({"name": c.name, key: c.kwargs}, ensure_ascii=False) for c in calls]
    return "<tool_call>\n" + "\n".join(lines) + "\n</tool_call>"
