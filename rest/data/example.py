"""One tool-use training/evaluation example and its ground truth in ToolRL's text format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rest.tooluse.calls import Call, parse_json_call, tool_call_blocks

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
    """Calls of a ground truth (last `<tool_call>` block); raises ValueError on an unparsable line."""
    blocks = tool_call_blocks(ground_truth)
    if not blocks:
        return []
    calls = []
    for line in blocks[-1].strip().splitlines():
        if not line.strip():
            continue
        parsed = parse_json_call(line.strip())
        if not parsed.ok:
            raise ValueError(f"ground truth call {line.strip()[:80]!r}: {parsed.error}")
        calls.append(parsed.call)
    return calls


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
    blocks = tool_call_blocks(output)
    if blocks:
        ground_truth_calls(output)  # validates
        parts.append("<tool_call>\n" + blocks[-1].strip() + "\n</tool_call>")
    responses = _RESPONSE.findall(output)
    if responses:
        parts.append(f"<response> {responses[-1].strip()} </response>")
    if not parts:
        raise ValueError("ground truth has neither <tool_call> nor <response>")
    return "\n".join(parts)
