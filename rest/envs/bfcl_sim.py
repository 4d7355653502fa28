"""`bfcl_sim`: executable environments on BFCL's simulated classes (file system, math, Twitter, messaging, ...).

Tasks are ours (`rest.envs.bfcl_tasks` generates them; a task file can carry more): `state` holds
`involved_classes` and BFCL's `initial_config`; `gold` the reference calls per model turn. Calls run through
the evaluation's safe executor (`rest.eval.bfcl_multi_turn.run_call`: decoded calls on fresh instances, never
evaluated text), so training and evaluation execute tools the same way.

Reward, as BFCL's multi-turn checker judges a turn: `state` (1 when every instance's public attributes equal
those after the gold calls on a fresh copy: BFCL's own `state_checker`) and `results_seen` (the share of the
gold calls' results that appear among the observations: BFCL's response check, graded);
reward = (state + results_seen) / 2, success = both complete.
"""

from __future__ import annotations

import json
from functools import lru_cache
from rest.envs.base import Environment, EnvTask, Observation, Trajectory, gold_calls, register_env, render_reply
from rest.envs.tools import render_task_messages
from rest.tooluse.calls import Call

DONE_REPLY = "Done."


@lru_cache(maxsize=None)
def _bfcl(version: str):
    from rest.eval.bfcl_data import VERSIONS, checker_modules

    _, mt_mod, _, class_paths = checker_modules(VERSIONS[version])
    return VERSIONS[version], mt_mod, class_paths


@lru_cache(maxsize=None)
def _class_docs(version: str, cls: str) -> tuple[str, ...]:
    from rest.eval.bfcl_data import FUNC_DOC_FILES

    path = _bfcl(version)[0].data_dir / "multi_turn_func_doc" / FUNC_DOC_FILES[cls]
    text = path.read_text().strip()
    docs = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
    return tuple(json.dumps(d) for d in docs)


def function_docs(version: str, classes: list[str]) -> list[dict]:
    """BFCL's function docs of the classes as plain JSON schemas ("dict" -> "object", as the harness does)."""
    from rest.eval.bfcl_multi_turn import template_tools

    return template_tools([json.loads(d) for cls in classes for d in _class_docs(version, cls)]) or []


def instances_after(version: str, state: dict, calls: list[Call]) -> tuple[dict, list[str]]:
    """Fresh instances of the task's classes after `calls`, and each call's result text."""
    from rest.eval.bfcl_multi_turn import SafeExecutor, run_call

    executor = SafeExecutor(_bfcl(version)[2])
    instances, methods = executor.methods(state["involved_classes"], state["initial_config"], ("run",))
    return instances, [run_call(methods, c) for c in calls]


@register_env("bfcl_sim")
class BfclSimEnv(Environment):
    def __init__(self, prompt_format: str = "hermes", bfcl_version: str = "v3"):
        super().__init__(prompt_format)
        self.version = bfcl_version
        self.tools: list[dict] = []

    @property
    def tool_names(self) -> list[str]:
        return [t["name"] for t in self.tools]

    def reset(self, task: EnvTask) -> tuple[list[dict], list[dict]]:
        from rest.eval.bfcl_multi_turn import SafeExecutor

        self.task = task
        executor = SafeExecutor(_bfcl(self.version)[2])
        self.instances, self.methods = executor.methods(task.state["involved_classes"], task.state["initial_config"],
                                                        ("model",))
        self.tools = function_docs(self.version, task.state["involved_classes"])
        return render_task_messages(task.messages, self.tools, self.prompt_format), self.tools

    def step(self, calls: list[Call]) -> tuple[list[Observation], bool]:
        from rest.eval.bfcl_multi_turn import EXECUTION_ERROR, run_call

        if not calls:
            return [], True
        results = [run_call(self.methods, c) for c in calls]
        return [Observation(r, error=r.startswith(EXECUTION_ERROR)) for r in results], False

    def score(self, trajectory: Trajectory) -> dict[str, float]:
        task = trajectory.task
        gold, results = instances_after(self.version, task.state, [c for s in gold_calls(task.gold) for c in s])
        state = bool(_bfcl(self.version)[1].state_checker(self.instances, gold)["valid"])
        seen = [o.content for o in trajectory.observations]
        results_seen = sum(r in seen for r in results) / len(results) if results else 1.0
        return {"reward": (state + results_seen) / 2, "success": float(state and results_seen == 1.0),
                "state": float(state), "results_seen": results_seen}

    def reference_turns(self, task: EnvTask) -> list[str]:
        steps = [render_reply(step, None, self.prompt_format) for step in gold_calls(task.gold)]
        return steps + [render_reply([], task.info.get("reply", DONE_REPLY), self.prompt_format)]

