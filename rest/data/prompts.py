"""Prompt rendering in the two formats a tool-use model is trained and evaluated with.

- "toolrl": ToolRL's rlla prompt (METHOD.md section 5). The system message is ToolRL's instruction with the
  numbered tool list; the user message is "**Dialogue Records History**" followed by `<user>`, the assistant's
  past `<think>`/`<tool_call>`/`<response>` text and tool results as `<obs>`. Byte-compatible with the
  released rlla data, so the embedded task and the real data look alike to the model.
- "hermes": Qwen3's chat template. Messages are ordinary chat turns (assistant calls as `tool_calls`, results
  as `tool` messages) and the tools go to `apply_chat_template(tools=...)`, which lists them in `<tools>`.
  The model then answers `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`; ground truths stay in
  ToolRL's text format; the harness reads "arguments" as well as "parameters", the reward does with
  `algorithm.reward.accept_arguments_key=true` (required for this format).

A tool is a function schema `{"name", "description", "parameters": {"type", "properties", "required"}}`
(OpenAI/BFCL shape); `chat_template_tools` wraps them for chat templates.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Optional

PROMPT_FORMATS = ("toolrl", "hermes")

TOOLRL_SYSTEM_HEAD = (
    "You are a helpful multi-turn dialogue assistant capable of leveraging tool calls to solve user tasks and "
    "provide structured chat responses.\n\n**Available Tools**\nIn your response, you can use the following tools:\n"
)
TOOLRL_SYSTEM_TAIL = """

**Steps for Each Turn**
1. **Think:** Recall relevant context and analyze the current user goal.
2. **Decide on Tool Usage:** If a tool is needed, specify the tool and its parameters.
3. **Respond Appropriately:** If a response is needed, generate one while maintaining consistency across user queries.

**Output Format**
```plaintext
<think> Your thoughts and reasoning </think>
<tool_call>
{"name": "Tool name", "parameters": {"Parameter name": "Parameter content", "... ...": "... ..."}}
{"name": "... ...", "parameters": {"... ...": "... ...", "... ...": "... ..."}}
...
</tool_call>
<response> AI's final response </response>
```

**Important Notes**
1. You must always include the `<think>` field to outline your reasoning. Provide at least one of `<tool_call>` or `<response>`. Decide whether to use `<tool_call>` (possibly multiple times), `<response>`, or both.
2. You can invoke multiple tool calls simultaneously in the `<tool_call>` fields. Each tool call should be a JSON object with a "name" field and an "parameters" field containing a dictionary of parameters. If no parameters are needed, leave the "parameters" field an empty dictionary.
3. Refer to the previous dialogue records in the history, including the user's queries, previous `<tool_call>`, `<response>`, and any tool feedback noted as `<obs>` (if exists)."""
HISTORY_HEAD = "**Dialogue Records History**"

_TOOL_ENTRY = re.compile(r"^\d+\. Name: (.*)\nDescription: (.*?)\nParameters: (.*)$", re.MULTILINE)
_RECORD = re.compile(r"<(user|tool_call|obs|response)>(.*?)</\1>", re.DOTALL)


def render_toolrl_tool_list(tools: list[dict]) -> str:
    lines = []
    for i, tool in enumerate(tools, 1):
        props = tool.get("parameters", {}).get("properties", {})
        lines.append(
            f"{i}. Name: {tool['name']}\nDescription: {tool.get('description', '')}\nParameters: {json.dumps(props)}"
        )
    return "\n".join(lines)


def toolrl_system_prompt(tools: list[dict]) -> str:
    return TOOLRL_SYSTEM_HEAD + render_toolrl_tool_list(tools) + TOOLRL_SYSTEM_TAIL


def parse_toolrl_tools(system_prompt: str) -> list[dict]:
    """Tool schemas back from a rendered ToolRL system prompt; raises ValueError when a line is unreadable."""
    start = system_prompt.find("**Available Tools**")
    end = system_prompt.find("**Steps for Each Turn**")
    if start < 0 or end < 0:
        raise ValueError("system prompt has no ToolRL tool list")
    tools = []
    for name, description, params in _TOOL_ENTRY.findall(system_prompt[start:end]):
        try:
            props = json.loads(params)
        except ValueError:
            try:  # API-Bank's processed files print the parameters as a Python dict
                props = ast.literal_eval(params)
            except (ValueError, SyntaxError) as e:
                raise ValueError(f"tool {name!r}: unreadable parameters") from e
        if not isinstance(props, dict):
            raise ValueError(f"tool {name!r}: parameters are not an object")
        tools.append({"name": name, "description": description, "parameters": {"type": "object", "properties": props}})
    return tools


def render_toolrl_history(records: list[tuple[str, str]]) -> str:
    """records: ("user", text) or ("assistant", raw assistant text) or ("obs", text), oldest first.

    An assistant step and its `<obs>` share one record (joined by a newline), as in ToolRL's data.
    """
    parts: list[str] = []
    for role, text in records:
        if role == "user":
            parts.append(f"<user> {text} </user>")
        elif role == "assistant":
            parts.append(text.strip())
        elif role == "obs" and parts:
            parts[-1] += f"\n<obs> {text} </obs>"
        else:
            raise ValueError(f"unknown history record role {role!r}")
    return HISTORY_HEAD + "\n" + "\n\n".join(parts)


def toolrl_messages(tools: list[dict], records: list[tuple[str, str]]) -> list[dict]:
    return [
        {"role": "system", "content": toolrl_system_prompt(tools)},
        {"role": "user", "content": render_toolrl_history(records)},
    ]


def history_to_chat(history: str) -> list[dict]:
    """ToolRL's "**Dialogue Records History**" text as chat messages (for the Hermes format)."""
    messages: list[dict] = []
    for tag, body in _RECORD.findall(history):
        body = body.strip()
        if tag == "user":
            messages.append({"role": "user", "content": body})
        elif tag == "response":
            messages.append({"role": "assistant", "content": body})
        elif tag == "obs":
            messages.append({"role": "tool", "content": body})
        else:
            calls = [json.loads(line) for line in body.splitlines() if line.strip()]
            messages.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"type": "function", "function": {"name": c["name"], "arguments": c.get("parameters", c.get("arguments", {}))}}
                        for c in calls
                    ],
                }
            )
    return messages


def chat_template_tools(tools: Optional[list[dict]]) -> Optional[list[dict]]:
    """Tools as chat templates (Qwen3's included) expect them: `{"type": "function", "function": schema}`.
    Idempotent: a tool already in that shape is kept as it is, so wrapping twice cannot nest it."""
    if not tools:
        return None
    wrapped = [t.get("type") == "function" and isinstance(t.get("function"), dict) for t in tools]
    return [t if done else {"type": "function", "function": t} for t, done in zip(tools, wrapped)]


def render_messages(prompt_format: str, tools: list[dict], records: list[tuple[str, str]]) -> list[dict]:
    """Chat messages of a prompt in `prompt_format` from tools and a ToolRL-style record list."""
    if prompt_format == "toolrl":
        return toolrl_messages(tools, records)
    if prompt_format == "hermes":
        return history_to_chat(render_toolrl_history(records))
    raise ValueError(f"unknown prompt format {prompt_format!r}; expected one of {PROMPT_FORMATS}")


def assistant_hermes_text(calls: list[dict[str, Any]], response: Optional[str] = None) -> str:
    """What a Qwen3 (Hermes) model writes: one `<tool_call>` block per call, then any plain text."""
    blocks = [
        "<tool_call>\n" + json.dumps({"name": c["name"], "arguments": c["arguments"]}, ensure_ascii=False) + "\n</tool_call>"
        for c in calls
    ]
    if response:
        blocks.append(response)
    return "\n".join(blocks)


def render_prompt(tokenizer, messages: list[dict], tools: list[dict] | None, prompt_format: str) -> str:
    """The prompt text the model sees. ToolRL prompts carry the tool list in their system message already;
    Hermes passes the tools to the chat template (wrapped once, `chat_template_tools`), which lists them in
    <tools>."""
    return tokenizer.apply_chat_template(
        messages, tools=chat_template_tools(tools) if prompt_format == "hermes" else None,
        add_generation_prompt=True, tokenize=False,
    )


def encode_prompt(tokenizer, messages: list[dict], tools: list[dict] | None, prompt_format: str) -> list[int]:
    return tokenizer(render_prompt(tokenizer, messages, tools, prompt_format), add_special_tokens=False)["input_ids"]
