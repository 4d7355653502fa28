"""One tool-use training/evaluation example and its ground truth in ToolRL's text format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rest.tooluse.calls import Call, decode, scan_blocks

_RESPONSE = re.compile(r"<response>(.*?)</response>", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


@dataclass
class ToolUseExample:
    uid: str
    messages: list[dict]  # chat messages of the prompt, already in the configured prompt format
    ground_truth: str  # `<tool_call>\n{json per line}\n</tool_call>` and/or `<response> ... </response>`
    tools: list[dict] = field(default_factory=list)  # function schemas; for Hermes, pass to the chat template
    source: str = ""


def ground_truth_calls(ground_truth: str) -> list[Call]:
    """Calls of a ground truth's last `<tool_call>` block, read as the reward reads them (every line a
    `{"name", "parameters"}` object, no blank line); raises ValueError naming the first bad line."""
    decoded = decode(ground_truth, blocks="last", skip_blank_lines=False, argument_keys=("parameters",))
    if decoded.errors:
        raise ValueError(f"ground truth calls: {decoded.errors[0]}")
    return decoded.calls


def _last_tool_call_block(text: str) -> str | None:
    closed = [b for b in scan_blocks(text) if b.kind == "tool_call" and b.close is not None]
    return text[closed[-1].content.start : closed[-1].content.end] if closed else None


def normalize_ground_truth(output: str) -> str:
    """Keep only what the reward scores: the last `<tool_call>` block and/or the last `<response>` block.

    ToolRL's records carry a `<think>` too (long ones in the SFT file, a stock sentence in the RL parquet);
    the reward never reads it, so dropping it makes both sources produce the same ground truth.
    Raises ValueError when there is neither block or a call line is not a JSON call.
    """
    if not isinstance(output, str):
        raise ValueError("ground truth is not a string")
    output = _THINK.sub("", output)  # thoughts may mention the tags themselves
    parts = []
    block = _last_tool_call_block(output)
    if block is not None:
        ground_truth_calls(output)  # validates
        parts.append("<tool_call>\n" + block.strip() + "\n</tool_call>")
    responses = _RESPONSE.findall(output)
    if responses:
        parts.append(f"<response> {responses[-1].strip()} </response>")
    if not parts:
        raise ValueError("ground truth has neither <tool_call> nor <response>")
    return "\n".join(parts)
