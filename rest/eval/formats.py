"""What a model writes in each prompt format, both ways: decode its calls, and render gold answers.

"toolrl": `<think> .. </think>` then one `<tool_call>` block (JSON per line, "parameters") and/or
`<response>`; only the last block is read (ToolRL/ResT's parser). "hermes" (Qwen3): one `<tool_call>` block
per call with "arguments"; every block is read. Both decoders accept either key.
"""

from __future__ import annotations

from typing import Iterable, Optional

from rest.data.prompts import PROMPT_FORMATS, assistant_hermes_text
from rest.tooluse.calls import Call, extract_calls, render_tool_call_block


def decode_calls(text: str, prompt_format: str, allowed: Optional[Iterable[str]] = None) -> list[Call]:
    calls, _failures = extract_calls(text, allowed, last_block_only=(prompt_format == "toolrl"))
    return calls


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
