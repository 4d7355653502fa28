"""Environments for multi-turn rollouts: the interface, the task record and the registry.

An environment holds one sample's world (tool state) for one episode, gym-style as in SkyRL's `BaseTextEnv`:
- `reset(task) -> (messages, tools)`: load the task's initial state; the prompt's chat messages and the tool
  schemas (for the chat template; the ToolRL format lists them in the system message and returns them too);
- `step(calls) -> (observations, done)`: execute one model turn's decoded calls, in order, one observation
  each; a turn without calls asks the environment what comes next (another user message, or done);
- `score(trajectory) -> reward parts`: a dict with "reward" (what the trainer optimises) and named parts.

Environments never see model text, only calls that `rest.tooluse.calls` decoded; the agent loop
(`workers/agent_loop.py`) turns malformed calls into error observations before any environment is involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from rest.registry import Registry
from rest.tooluse.calls import Call

PROMPT_FORMATS = ("toolrl", "hermes")


@dataclass
class EnvTask:
    """One episode's task, as generated or read from a file (`rest.envs.task_file`); JSON-serialisable.

    `messages`: the prompt's chat messages before the environment renders them for a prompt format (usually one
    user message); `state`: the environment's initial state; `gold`: the reference solution, one list of calls
    per model turn (`{"name", "arguments"}`), used by `score` and by `reference_turns`; `info`: anything else the
    environment needs (an expected answer, a final reply)."""

    uid: str
    env: str
    messages: list[dict]
    state: dict = field(default_factory=dict)
    gold: list[list[dict]] = field(default_factory=list)
    info: dict = field(default_factory=dict)


@dataclass
class Observation:
    """What the environment answers: a tool result (role "tool") or the user's next message (role "user")."""

    content: str
    role: str = "tool"
    error: bool = False  # a call that failed: malformed, unknown, bad arguments, or raised in the tool


@dataclass
class Turn:
    """One model turn: its decoded text, the calls executed and the observations it got back."""

    text: str
    calls: list[Call] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)


@dataclass
class Trajectory:
    task: EnvTask
    turns: list[Turn] = field(default_factory=list)
    finish: str = ""  # see rest.workers.agent_loop.FINISH_REASONS

    @property
    def final_text(self) -> str:
        return self.turns[-1].text if self.turns else ""

    @property
    def observations(self) -> list[Observation]:
        return [o for t in self.turns for o in t.observations]


class Environment:
    """Base class; one instance per sample and episode. `prompt_format` decides how `reset` renders messages."""

    name = ""

    def __init__(self, prompt_format: str = "hermes"):
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
        self.prompt_format = prompt_format

    @property
    def tool_names(self) -> list[str]:
        """Names a model may call now; the decoder rejects others before `step` sees them."""
        raise NotImplementedError

    def reset(self, task: EnvTask) -> tuple[list[dict], list[dict]]:
        raise NotImplementedError

    def step(self, calls: list[Call]) -> tuple[list[Observation], bool]:
        raise NotImplementedError

    def score(self, trajectory: Trajectory) -> dict[str, float]:
        raise NotImplementedError

    def reference_turns(self, task: EnvTask) -> list[str]:
        """The assistant texts of the gold solution in this prompt format (the oracle and SFT data replay them)."""
        raise NotImplementedError


ENVIRONMENTS: Registry[type] = Registry("environment")


def register_env(name: str):
    """Class decorator: `@register_env("name")` makes `make_env("name")` build it."""

    def decorator(cls):
        cls.name = name
        return ENVIRONMENTS.register(name)(cls)

    return decorator


def make_env(name: str, prompt_format: str = "hermes", **kwargs: Any) -> Environment:
    import rest.envs  # noqa: F401  (registers the built-in environments)

    return ENVIRONMENTS.get(name)(prompt_format=prompt_format, **kwargs)


def gold_calls(steps: list[list[dict]]) -> list[list[Call]]:
    """`EnvTask.gold` as Calls (both "arguments" and "parameters" keys are read)."""
    return [[Call(c["name"], dict(c.get("arguments", c.get("parameters", {})))) for c in step] for step in steps]


def render_reply(calls: list[Call], response: Optional[str], prompt_format: str) -> str:
    """An assistant turn as a model writes it in `prompt_format` (the eval harness's renderer)."""
    from rest.eval.formats import render_answer

    return render_answer(calls, response, prompt_format)
