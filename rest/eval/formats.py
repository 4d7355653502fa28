"""What a model writes in each prompt format, both ways: decode its calls, and render gold answers.

"toolrl": `<think> .. </think>` then one `<tool_call>` block (JSON per line, "parameters") and/or
`<response>`; only the last block is read, as ToolRL's and ResT's evaluation scripts do (their reward reads
the first: `rest.tooluse.reward`). "hermes" (Qwen3): one `<tool_call>` block per call with "arguments";
every block is read. Both go through `rest.tooluse.calls.decode` and accept either key.
"""

from __future__ import annotations

from typing import Iterable, Optional

from rest.data.prompts import PROMPT_FORMATS, assistant_hermes_text
from rest.tooluse.calls import Call, decode_calls as decode_tool_calls, render_tool_call_block


def decode_calls(text: str, prompt_format: str, allowed: Optional[Iterable[str]] = None) -> list[Call]:
    """The calls a model made; a call named "None" is ToolRL's written-out "no call" and is dropped."""
    calls, _errors = decode_tool_calls(text, blocks="last" if prompt_format == "toolrl" else "all", allowed=allowed)
    return [c for c in calls if c.name != "None"]


def render_answer(calls: list[Call], response: Optional[str], prompt_format: str) -> str:
    """A gold answer as the model would write it (what the oracle backend replays)."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt format {prompt_format!r}")
    if prompt_format == "hermes":
        return assistant_hermes_text([{"name": c.name, "arguments": c.kwargs} for c in calls], response)
    parts = ["<think> I know the answer. </think>"]
    if calls:
        parts.append(render_tool_call_block(calls))
    if response or not calls:
        parts.append(f"<response> {response or 'Done.'} </response>")
    return "\n".join(parts)
