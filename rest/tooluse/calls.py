"""The one safe parser for tool calls written by a model.

Model text is data, never code: call strings (`name(k=v, ...)`) are parsed with `ast` and accepted only when
the function name is on the caller's allow-list and every argument is a literal (constants, lists, tuples,
dicts, sets, negative/complex numbers). JSON calls (`{"name": ..., "arguments"|"parameters": {...}}`) are
checked the same way. Nothing here raises on bad input: a rejected call comes back as a `ParsedCall` with
`ok=False` and a reason. Nothing here evaluates or executes anything.

Positional arguments are accepted in call strings (BFCL's ground truth writes `sort('report.pdf')`) and kept
in `Call.args`; binding them to parameter names is the executor's job, since only it knows the signature.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

MAX_CALL_CHARS = 20_000  # longer strings are rejected before parsing (ast on huge input is slow)

_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


@dataclass
class Call:
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    args: list[Any] = field(default_factory=list)  # positional arguments, in order


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
    """Parse one `name(arg, k=v, ...)` string; `allowed` is the set of callable names."""
    try:
        if not isinstance(text, str):
            return _fail(repr(text), "call is not a string")
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


def _json_safe(value: Any, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, list):
        return all(_json_safe(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_safe(v, depth + 1) for k, v in value.items())
    return False


def parse_json_call(obj: Any, allowed: Optional[Iterable[str]] = None) -> ParsedCall:
    """Accept `{"name": str, "arguments"|"parameters": dict}` (a dict or its JSON text).

    `allowed=None` accepts any name (used for ground truths and API-Bank, whose names are free text).
    """
    source = obj if isinstance(obj, str) else ""
    try:
        if isinstance(obj, str):
            if len(obj) > MAX_CALL_CHARS:
                return _fail(obj[:200], "call too long")
            try:
                obj = json.loads(obj)
            except (ValueError, RecursionError):
                return _fail(source, "not valid JSON")
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return _fail(source or repr(obj)[:200], "expected an object with a string 'name'")
        args = obj.get("arguments", obj.get("parameters", {}))
        if args is None:
            args = {}
        if isinstance(args, str):  # some models double-encode the arguments
            try:
                args = json.loads(args)
            except ValueError:
                return _fail(source, "arguments are not a JSON object")
        if not isinstance(args, dict) or not _json_safe(args):
            return _fail(source, "arguments are not a JSON object")
        if allowed is not None and obj["name"] not in set(allowed):
            return _fail(source, f"unknown function {obj['name']!r}")
        return ParsedCall(ok=True, call=Call(name=obj["name"], kwargs=dict(args)), source=source)
    except (TypeError, ValueError, RecursionError) as e:
        return _fail(source, f"rejected: {e}")


def tool_call_blocks(text: str) -> list[str]:
    """Contents of every `<tool_call> ... </tool_call>` block, in order."""
    return _TOOL_CALL_BLOCK.findall(text) if isinstance(text, str) else []


def extract_calls(
    text: str, allowed: Optional[Iterable[str]] = None, last_block_only: bool = True
) -> tuple[list[Call], list[ParsedCall]]:
    """Decode calls from model text: one JSON object per line inside `<tool_call>` blocks.

    ToolRL/ResT read only the last block (`last_block_only`); Hermes (Qwen3) writes one block per call, so
    read them all. A call named "None" (ToolRL's no-op) is dropped. Returns (accepted calls, failures).
    """
    blocks = tool_call_blocks(text)
    if last_block_only:
        blocks = blocks[-1:]
    calls, failures = [], []
    for block in blocks:
        for line in block.strip().splitlines():
            line = line.strip()
            if not line:
                continue
            parsed = parse_json_call(line, allowed)
            if parsed.ok and parsed.call.name != "None":
                calls.append(parsed.call)
            elif not parsed.ok:
                failures.append(parsed)
    return calls, failures


def format_call(name: str, args: dict[str, Any]) -> str:
    """`name(k=repr(v), ...)`: the string form BFCL's multi-turn checker expects."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


def render_tool_call_block(calls: Iterable[Call], key: str = "parameters") -> str:
    """ToolRL's block: `<tool_call>` then one JSON object per line (`key` "parameters" or "arguments")."""
    lines = [json.dumps({"name": c.name, key: c.kwargs}, ensure_ascii=False) for c in calls]
    return "<tool_call>\n" + "\n".join(lines) + "\n</tool_call>"
