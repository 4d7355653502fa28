"""Tools as typed Python functions, and `ToolEnv`, an environment whose tools are its decorated methods.

A tool is a function with type hints and a Google-style docstring under `@function_tool`, as in verl's
`@function_tool` (which calls `transformers.get_json_schema`): the JSON schema comes from the signature, the
descriptions from the docstring. Before a tool runs, its arguments are checked against the schema (unknown,
missing, wrongly typed arguments give an error observation), so a tool body sees only what its hints promise.
Results are returned as the observation text: a string as is, anything else as JSON.

    @register_env("calculator")
    class Calculator(ToolEnv):
        @function_tool
        def add(self, a: int, b: int) -> dict:
            \"\"\"Add two integers.

            Args:
                a: The first addend.
                b: The second addend.
            \"\"\"
            return {"result": a + b}
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from rest.envs.base import Environment, EnvTask, Observation, Trajectory
from rest.tooluse.calls import Call

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object", list: "array"}
_ARG_LINE = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _json_type(hint: Any) -> dict:
    """JSON schema of a type hint: builtins, list[X], dict[str, X], Optional[X], Literal[...]."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _json_type(inner[0])
        return {"anyOf": [_json_type(a) for a in inner]}
    if origin is typing.Literal:
        return {"type": _JSON_TYPES[type(args[0])], "enum": list(args)}
    if origin in (list, tuple):
        return {"type": "array", **({"items": _json_type(args[0])} if args else {})}
    if origin is dict:
        return {"type": "object"}
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    raise TypeError(f"unsupported tool parameter type {hint!r}")


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) of a Google-style docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    description, params, in_args = [], {}, False
    current = None
    for line in lines:
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args and line.strip().endswith(":") and not line.startswith(" "):
            in_args = False  # Returns:, Raises:, ...
        if in_args:
            m = _ARG_LINE.match(line)
            if m and line.startswith(" ") and len(line) - len(line.lstrip()) <= 4:
                current = m.group(1)
                params[current] = m.group(2).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
        elif not params and line.strip():
            description.append(line.strip())
    return " ".join(description), params


@dataclass
class FunctionTool:
    name: str
    schema: dict  # {"name", "description", "parameters": {"type": "object", "properties", "required"}}
    fn: Callable

    def __get__(self, instance, owner):  # a method tool bound to its environment, like a plain method
        return self if instance is None else FunctionTool(self.name, self.schema, self.fn.__get__(instance, owner))

    def __call__(self, **kwargs):
        return self.fn(**kwargs)


def function_tool(fn: Optional[Callable] = None, *, name: Optional[str] = None):
    """Decorator: a typed function (or method; `self` is skipped) as a tool with a JSON schema."""

    def wrap(f: Callable) -> FunctionTool:
        hints = typing.get_type_hints(f)
        description, param_docs = _docstring_parts(f.__doc__ or "")
        properties, required = {}, []
        for pname, param in inspect.signature(f).parameters.items():
            if pname == "self":
                continue
            if pname not in hints:
                raise TypeError(f"tool {f.__name__}: parameter {pname!r} needs a type hint")
            properties[pname] = {**_json_type(hints[pname]), "description": param_docs.get(pname, "")}
            if param.default is inspect.Parameter.empty:
                required.append(pname)
        schema = {"name": name or f.__name__, "description": description,
                  "parameters": {"type": "object", "properties": properties, "required": required}}
        return FunctionTool(name or f.__name__, schema, f)

    return wrap(fn) if fn is not None else wrap


def _matches(value: Any, schema: dict) -> bool:
    if "anyOf" in schema:
        return any(_matches(value, s) for s in schema["anyOf"])
    kind = schema.get("type")
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str), "boolean": isinstance(value, bool), "object": isinstance(value, dict),
        "array": isinstance(value, list) and all(_matches(v, schema["items"]) for v in value)
        if "items" in schema and isinstance(value, list) else isinstance(value, list),
    }.get(kind, True)
    return ok and ("enum" not in schema or value in schema["enum"])


def check_arguments(schema: dict, kwargs: dict) -> str:
    """"" when `kwargs` fit the tool's schema, else why not (the error observation's text)."""
    params = schema.get("parameters", {})
    props = params.get("properties", {})
    unknown = sorted(set(kwargs) - set(props))
    if unknown:
        return f"unknown argument(s) {unknown} for {schema['name']}"
    missing = [p for p in params.get("required", []) if p not in kwargs]
    if missing:
        return f"missing required argument(s) {missing} for {schema['name']}"
    for key, value in kwargs.items():
        if not _matches(value, props[key]):
            return f"argument {key!r} of {schema['name']} must be {props[key].get('type', 'valid')}"
    return ""


def result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def run_tool(tool: FunctionTool, call: Call) -> Observation:
    """Execute one checked call; a tool that raises gives an error observation (the message, not a traceback)."""
    why = check_arguments(tool.schema, call.kwargs)
    if why:
        return Observation(f"Error: {why}", error=True)
    try:
        return Observation(result_text(tool(**call.kwargs)))
    except Exception as e:  # a tool's own failure is the model's feedback, not the trainer's crash
        return Observation(f"Error: {type(e).__name__}: {e}", error=True)


class ToolEnv(Environment):
    """An environment whose tools are its `@function_tool` methods (or the `tools` passed in). A turn without
    calls ends the episode. Subclasses load state in `load_state` and score in `score`."""

    def __init__(self, prompt_format: str = "hermes", tools: Optional[list[FunctionTool]] = None):
        super().__init__(prompt_format)
        found = tools if tools is not None else [
            getattr(self, n) for n, v in inspect.getmembers(type(self)) if isinstance(v, FunctionTool)]
        self.tools = {t.name: t for t in found}
        self.task: Optional[EnvTask] = None

    @property
    def tool_names(self) -> list[str]:
        return list(self.tools)

    def schemas(self, names: Optional[list[str]] = None) -> list[dict]:
        return [self.tools[n].schema for n in (names or self.tools)]

    def load_state(self, state: dict) -> None:
        """Subclasses: set up the episode's state from `EnvTask.state`."""

    def reset(self, task: EnvTask) -> tuple[list[dict], list[dict]]:
        self.task = task
        self.load_state(task.state)
        tools = self.schemas(task.info.get("tools"))
        return render_task_messages(task.messages, tools, self.prompt_format), tools

    def step(self, calls: list[Call]) -> tuple[list[Observation], bool]:
        if not calls:
            return [], True
        return [run_tool(self.tools[c.name], c) for c in calls], False

    def score(self, trajectory: Trajectory) -> dict[str, float]:
        raise NotImplementedError


def render_task_messages(messages: list[dict], tools: list[dict], prompt_format: str,
                         system_head: Optional[str] = None) -> list[dict]:
    """A task's messages for a prompt format: ToolRL's system prompt (tool list, output format) before them, or
    the messages as they are for Hermes (the chat template lists the tools)."""
    if prompt_format == "hermes" or any(m["role"] == "system" for m in messages):
        return [dict(m) for m in messages]
    from rest.data.prompts import toolrl_system_prompt

    return [{"role": "system", "content": system_head or toolrl_system_prompt(tools)}] + [dict(m) for m in messages]
