"""The offline demo task: a seeded generator of short tool-use problems in ToolRL's format.

Why this shape: the CPU demo must show learning within minutes on a tiny model, so prompts are short (a
compact ToolRL-style system prompt with three tools, well under 200 Qwen3 tokens), answers are short, the
arguments are copied from the request and come from small closed sets (one-digit numbers, weekdays, one-word
titles and topics: the 2-layer demo model did not learn open-ended ones such as dates or two-digit numbers),
and the format score is reachable before correctness.
The mix: one call (most), two calls (parallel), and no tool at all (a plain `<response>`).
"""

from __future__ import annotations

import json
import random

from rest.data.example import ToolUseExample
from rest.data.prompts import HISTORY_HEAD, history_to_chat, render_toolrl_tool_list

TOOLS = {
    "get_weather": ("Get the current weather in a city.", {"city": "string"}),
    "get_time": ("Get the local time in a city.", {"city": "string"}),
    "add": ("Add two integers.", {"a": "integer", "b": "integer"}),
    "multiply": ("Multiply two integers.", {"a": "integer", "b": "integer"}),
    "convert_units": ("Convert a value between units.", {"value": "integer", "from_unit": "string", "to_unit": "string"}),
    "create_event": ("Add an event to the calendar.", {"title": "string", "date": "string"}),
    "search_web": ("Search the web.", {"query": "string"}),
}
CITIES = ["Paris", "Tokyo", "Lima", "Cairo", "Oslo", "Delhi", "Rome", "Seoul", "Berlin", "Sydney", "Boston", "Madrid"]
UNITS = [("km", "miles"), ("miles", "km"), ("kg", "pounds"), ("pounds", "kg"), ("celsius", "fahrenheit"), ("meters", "feet")]
EVENTS = ["Dentist", "Meeting", "Lunch", "Gym", "Dinner", "Flight"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TOPICS = ["jazz", "chess", "pasta", "python", "coffee", "soccer"]
DIGITS = range(2, 10)
CHATS = [
    ("Hi there!", "Hello! How can I help you today?"),
    ("Thank you so much!", "You're welcome!"),
    ("Who are you?", "I am an assistant that can use tools."),
    ("Good morning.", "Good morning! What can I do for you?"),
    ("Tell me a joke.", "Why did the bicycle fall over? It was two tired."),
    ("Bye!", "Goodbye, have a nice day!"),
]

SYSTEM_HEAD = "**Available Tools**\n"
SYSTEM_TAIL = (
    "\n\n**Output Format**\n<think> Your thoughts </think>\n<tool_call>\n"
    '{"name": "Tool name", "parameters": {"Parameter name": "value"}}\n</tool_call>\n'
    "<response> Your reply </response>\nCall tools if needed, else respond."
)


def tool_schema(name: str) -> dict:
    description, params = TOOLS[name]
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": {k: {"type": t} for k, t in params.items()}, "required": list(params)},
    }


def _single_call(rng: random.Random) -> tuple[str, list[dict]]:
    kind = rng.choice(["get_weather", "get_time", "add", "multiply", "convert_units", "create_event", "search_web"])
    if kind in ("get_weather", "get_time"):
        city = rng.choice(CITIES)
        text = f"What's the weather in {city}?" if kind == "get_weather" else f"What time is it in {city}?"
        return text, [{"name": kind, "parameters": {"city": city}}]
    if kind in ("add", "multiply"):
        a, b = rng.choice(DIGITS), rng.choice(DIGITS)
        text = f"What is {a} plus {b}?" if kind == "add" else f"What is {a} times {b}?"
        return text, [{"name": kind, "parameters": {"a": a, "b": b}}]
    if kind == "convert_units":
        value, (src, dst) = rng.choice(DIGITS), rng.choice(UNITS)
        return f"Convert {value} {src} to {dst}.", [
            {"name": kind, "parameters": {"value": value, "from_unit": src, "to_unit": dst}}
        ]
    if kind == "create_event":
        title, day = rng.choice(EVENTS), rng.choice(DAYS)
        return f"Add '{title}' to my calendar on {day}.", [{"name": kind, "parameters": {"title": title, "date": day}}]
    topic = rng.choice(TOPICS)
    return f"Search the web for {topic}.", [{"name": "search_web", "parameters": {"query": topic}}]


def _two_calls(rng: random.Random) -> tuple[str, list[dict]]:
    c1, c2 = rng.sample(CITIES, 2)
    if rng.random() < 0.5:
        return f"What's the weather in {c1} and in {c2}?", [
            {"name": "get_weather", "parameters": {"city": c1}},
            {"name": "get_weather", "parameters": {"city": c2}},
        ]
    return f"What's the weather in {c1} and the time in {c2}?", [
        {"name": "get_weather", "parameters": {"city": c1}},
        {"name": "get_time", "parameters": {"city": c2}},
    ]


def generate_problem(rng: random.Random) -> tuple[str, list[dict], str | None, list[str]]:
    """(user request, gold calls, gold response, tool names shown) for one problem."""
    roll = rng.random()
    if roll < 0.25:
        text, reply = rng.choice(CHATS)
        calls, response = [], reply
    elif roll < 0.45:
        (text, calls), response = _two_calls(rng), None
    else:
        (text, calls), response = _single_call(rng), None
    needed = sorted({c["name"] for c in calls})
    others = rng.sample(sorted(set(TOOLS) - set(needed)), 3 - len(needed))
    shown = needed + others
    rng.shuffle(shown)
    return text, calls, response, shown


def render_ground_truth(calls: list[dict], response: str | None) -> str:
    parts = []
    if calls:
        parts.append("<tool_call>\n" + "\n".join(json.dumps(c) for c in calls) + "\n</tool_call>")
    if response:
        parts.append(f"<response> {response} </response>")
    return "\n".join(parts)


# The SFT demonstrator's typical slips (rest/models/tool_sft.py imitates a demonstrator that makes one of them
# often). "no_call": it answers a request that needs a tool without calling one (the under-calling that ToolRL's
# format/correctness split is meant to catch). "lookalike": a look-alike tool called with the same arguments, and
# a parallel request answered by its first call only.
UNCALLED_REPLY = "I cannot check that, sorry."
LOOKALIKE_TOOLS = {"get_time": "get_weather", "multiply": "add"}


def uncalled_reply(calls: list[dict]) -> str | None:
    """The reply an under-calling demonstrator gives instead of `calls` (None where no call is needed)."""
    return render_ground_truth([], UNCALLED_REPLY) if calls else None


def slipped_calls(calls: list[dict]) -> list[dict] | None:
    """The calls a careless demonstrator writes instead of `calls`, or None where it has no typical slip."""
    if len(calls) > 1:
        return calls[:1]
    if len(calls) == 1 and calls[0]["name"] in LOOKALIKE_TOOLS:
        return [{"name": LOOKALIKE_TOOLS[calls[0]["name"]], "parameters": calls[0]["parameters"]}]
    return None


def make_example(uid: str, rng: random.Random, prompt_format: str) -> ToolUseExample:
    text, calls, response, shown = generate_problem(rng)
    tools = [tool_schema(n) for n in shown]
    history = f"{HISTORY_HEAD}\n<user> {text} </user>"
    if prompt_format == "toolrl":
        messages = [
            {"role": "system", "content": SYSTEM_HEAD + render_toolrl_tool_list(tools) + SYSTEM_TAIL},
            {"role": "user", "content": history},
        ]
    else:
        messages = history_to_chat(history)
    return ToolUseExample(uid=uid, messages=messages, ground_truth=render_ground_truth(calls, response), tools=tools,
                          source="embedded")


def generate_demonstrations(n: int, seed: int, held_out: list[ToolUseExample], prompt_format: str = "toolrl"):
    """`n` problems for a supervised warm start, drawn from `seed`, none with the prompt of a `held_out` item."""
    banned = {json.dumps(ex.messages) for ex in held_out}
    rng, examples, tries = random.Random(seed), [], 0
    while len(examples) < n:
        tries += 1
        if tries > 100 * n:
            raise ValueError(f"only {len(examples)} of {n} generated problems are not held out")
        ex = make_example(f"embedded-sft-{len(examples)}", rng, prompt_format)
        if json.dumps(ex.messages) not in banned:
            examples.append(ex)
    return examples


def generate_split(n_train: int, n_val: int, seed: int, prompt_format: str = "toolrl"):
    """Deterministic train/val lists; validation requests never appear in train (matched on prompt text)."""
    rng = random.Random(seed)
    train = [make_example(f"embedded-train-{i}", rng, prompt_format) for i in range(n_train)]
    seen = {json.dumps(ex.messages) for ex in train}
    val, rng_val, tries = [], random.Random(seed + 1_000_003), 0
    while len(val) < n_val and tries < 100 * max(n_val, 1):
        tries += 1
        ex = make_example(f"embedded-val-{len(val)}", rng_val, prompt_format)
        if json.dumps(ex.messages) not in seen:
            seen.add(json.dumps(ex.messages))
            val.append(ex)
    return train, val
