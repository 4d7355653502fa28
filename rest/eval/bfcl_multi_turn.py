"""BFCL multi-turn: the protocol as BFCL runs it, with calls executed through our safe parser.

Per turn: append the user message (for a held-out-function turn of miss_func: add the functions and say
"I have updated some more functions ..."), then loop: query the model, decode its calls; no call ends the
turn; otherwise execute them in the simulated classes and feed each result back; more than 20 executed
steps in a turn fails the entry. The decoded calls are then scored by BFCL's `multi_turn_checker`, with its
executor swapped for `SafeExecutor` (BFCL's own runs model text through `eval`). Every entry gets fresh
instances: `SafeExecutor` keeps them in its own dict, not in module globals.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generator, Optional

from rest.data.prompts import toolrl_messages
from rest.eval.formats import decode_calls
from rest.tooluse.calls import Call, format_call, parse_call_string, render_tool_call_block

MAX_STEPS_PER_TURN = 20
STATELESS_CLASSES = ("MathAPI",)
ADDED_FUNCTIONS_PROMPT = "I have updated some more functions you can choose from. What about now?"
NO_CALL_REFERENCE = "<response> Done. </response>"


def _result_text(value: Any) -> str:
    """As BFCL stringifies results: str as is, dict as JSON (else str), anything else str()."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


class SafeExecutor:
    """Same signature as BFCL's `execute_multi_turn_func_call`; calls are parsed, never evaluated."""

    def __init__(self, class_paths: dict[str, str]):
        self.class_paths = class_paths
        self.instances: dict[tuple, Any] = {}

    def methods(self, classes: list[str], initial_config: dict, key: tuple = ("names",), long_context: bool = False):
        instances, methods = {}, {}
        for cls in classes:
            full_key = (*key, cls)
            if full_key not in self.instances:
                instance = getattr(importlib.import_module(self.class_paths[cls]), cls)()
                if cls not in STATELESS_CLASSES:
                    instance._load_scenario(copy.deepcopy(initial_config.get(cls, {})), long_context=long_context)
                self.instances[full_key] = instance
            instances[cls] = self.instances[full_key]
            for name, method in inspect.getmembers(instances[cls], predicate=inspect.ismethod):
                if not name.startswith("_"):
                    methods[name] = method
        return instances, methods

    def __call__(self, func_call_list, initial_config, involved_classes, model_name, test_entry_id,
                 long_context=False, is_evaL_run=False):
        key = (model_name, test_entry_id, bool(is_evaL_run))
        instances, methods = self.methods(involved_classes, initial_config, key, long_context)
        results = []
        for text in func_call_list:
            parsed = parse_call_string(text, methods)
            if not parsed.ok:
                results.append(f"{EXECUTION_ERROR}: {parsed.error}")
                continue
            results.append(run_call(methods, parsed.call))
        return results, instances


EXECUTION_ERROR = "Error during execution"


def run_call(methods: dict, call: Call) -> str:
    """One parsed call on the simulated instances (the training environments share it, rest.envs.bfcl_sim)."""
    try:
        return _result_text(methods[call.name](*call.args, **call.kwargs))
    except Exception as e:  # the simulated APIs raise on bad arguments; BFCL reports the message
        return f"{EXECUTION_ERROR}: {e}"


@contextmanager
def safe_checker(checker_module, executor: SafeExecutor):
    """BFCL's multi_turn_checker with our executor in place of its eval-based one, restored afterwards."""
    original = checker_module.execute_multi_turn_func_call
    checker_module.execute_multi_turn_func_call = executor
    try:
        yield checker_module.multi_turn_checker
    finally:
        checker_module.execute_multi_turn_func_call = original


def ground_truth_as_json_calls(call_strings: list[str], methods: dict) -> tuple[list[Call], bool]:
    """Ground-truth call strings as keyword-only calls, and whether JSON can carry them exactly.

    Positional arguments are bound to names by the method's signature. Not expressible: a value JSON turns
    into something else (a tuple becomes a list, a non-string key a string) or a call that does not parse.
    """
    calls, expressible = [], True
    for text in call_strings:
        parsed = parse_call_string(text, methods)
        if not parsed.ok:
            expressible = False
            continue
        try:
            bound = inspect.signature(methods[parsed.call.name]).bind(*parsed.call.args, **parsed.call.kwargs)
            kwargs = dict(bound.arguments)
        except TypeError:
            expressible, kwargs = False, dict(parsed.call.kwargs)
        try:
            round_trip = json.loads(json.dumps(kwargs))
        except (TypeError, ValueError):
            round_trip = None
        if round_trip != kwargs:
            expressible = False
        calls.append(Call(parsed.call.name, round_trip if round_trip is not None else kwargs))
    return calls, expressible


def template_tools(docs: list[dict]) -> Optional[list[dict]]:
    """BFCL docs as plain function schemas for a chat template: their top-level "type": "dict" becomes JSON
    schema's "object". Not wrapped: the backend wraps once, where it applies the template."""
    return [{**d, "parameters": {**d.get("parameters", {}), "type": "object"}} for d in docs] or None


@dataclass
class Request:
    messages: list[dict]
    tools: Optional[list[dict]]
    reference: str


@dataclass
class EntryRun:
    model_calls: list[list[list[str]]] = field(default_factory=list)  # [turn][step] -> call strings
    force_terminated: bool = False
    expressible: bool = True
    prompt_overflow: bool = False  # a step's prompt did not fit the engine's context (the answer was None)


def run_entry(entry: dict, answer: dict, prompt_format: str, executor: SafeExecutor, model_name: str
              ) -> Generator[Request, str, EntryRun]:
    """One entry's dialogue as a generator: yields a Request per model step, receives the model's text, or
    None when the prompt did not fit the engine's context: that ends the entry (later prompts only grow)."""
    long_context = "long_context" in entry["id"]
    _, methods = executor.methods(entry["involved_classes"], entry["initial_config"], ("names", entry["id"]))
    tools = list(entry["function"])
    records: list[tuple[str, str]] = []  # ToolRL format: rendered into one user message each step
    chat: list[dict] = []  # Hermes format
    run = EntryRun()
    for turn, user_messages in enumerate(entry["question"]):
        if turn in entry.get("held_out_functions", {}):
            tools += entry["held_out_functions"][turn]
            user_messages = [{"role": "user", "content": ADDED_FUNCTIONS_PROMPT}]
        for m in user_messages:
            records.append(("user", m["content"]))
            chat.append({"role": m["role"], "content": m["content"]})
        gold, expressible = ground_truth_as_json_calls(answer["ground_truth"][turn], methods)
        run.expressible &= expressible
        steps: list[list[str]] = []
        for step in range(MAX_STEPS_PER_TURN + 1):
            if prompt_format == "toolrl":
                request = Request(toolrl_messages(tools, records), None, "")
            else:
                request = Request(list(chat), template_tools(tools), "")
            request.reference = render_tool_call_block(gold) if step == 0 and gold else NO_CALL_REFERENCE
            text = yield request
            if text is None:
                run.prompt_overflow = True
                run.model_calls.append(steps)
                return run
            calls = decode_calls(text, prompt_format, methods)
            if not calls:
                break
            strings = [format_call(c.name, c.kwargs) for c in calls]
            steps.append(strings)
            results, _ = executor(strings, entry["initial_config"], entry["involved_classes"], model_name,
                                  entry["id"], long_context=long_context)
            records.append(("assistant", text))
            records.append(("obs", json.dumps([{"name": c.name, "results": r} for c, r in zip(calls, results)])))
            chat.append({"role": "assistant", "content": text})
            chat += [{"role": "tool", "content": r} for r in results]
            if step + 1 > MAX_STEPS_PER_TURN:
                run.force_terminated = True
                run.model_calls.append(steps)
                return run
        run.model_calls.append(steps)
    return run
