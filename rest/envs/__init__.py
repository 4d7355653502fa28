"""Environments for multi-turn agentic rollouts: a registry of tool worlds the agent loop runs samples in.

`rest.envs.base` defines the interface (reset / step / score) and the task record; `rest.envs.tools` the
`@function_tool` decorator and `ToolEnv`. Built in: `embedded_multiturn` (offline demo task), `bfcl_sim`
(BFCL's simulated classes with tasks we generate), `bfcl_eval` (BFCL's multi-turn entries, for evaluation on
the same loop). Task files (`rest.envs.task_file`) feed any of them from parquet.
"""

from __future__ import annotations

from rest.envs.base import (ENVIRONMENTS, Environment, EnvTask, Observation, Trajectory, Turn, make_env,
                            register_env)
from rest.envs.tools import FunctionTool, ToolEnv, function_tool

# built-in environments register themselves on import
from rest.envs import bfcl_eval, bfcl_sim, embedded  # noqa: E402,F401  isort: skip


def load_env_tasks(name: str, n_train: int, n_val: int, seed: int, path: str | None = None,
                   bfcl_category: str = "multi_turn_base", bfcl_version: str = "v3"):
    """(train, val) tasks of an environment: a task file when `path` is given, else its generator. `bfcl_eval`
    has no training split: its val tasks are the first `n_val` entries of BFCL's `bfcl_category`."""
    if path:
        from rest.envs.task_file import load_tasks

        tasks = [t for t in load_tasks(path) if t.env == name]
        n_val = min(n_val, len(tasks) // 2)
        return tasks[n_val:], tasks[:n_val]
    if name == "embedded_multiturn":
        return embedded.generate_split(n_train, n_val, seed)
    if name == "bfcl_sim":
        from rest.envs.bfcl_tasks import generate_tasks

        return generate_tasks(n_train, n_val, seed)
    if name == "bfcl_eval":  # BFCL's own entries: evaluation only, never a training split
        from rest.envs.bfcl_eval import entry_task
        from rest.eval.bfcl_data import MULTI_TURN, VERSIONS, load_category

        if bfcl_category not in MULTI_TURN:
            raise ValueError(f"bfcl_eval runs BFCL's multi-turn categories {MULTI_TURN}, got {bfcl_category!r}")
        return [], [entry_task(e, a) for e, a in load_category(VERSIONS[bfcl_version], bfcl_category, n_val)]
    raise ValueError(f"environment {name!r} has no task generator: give a task file (data.env_tasks_path)")


__all__ = ["ENVIRONMENTS", "EnvTask", "Environment", "FunctionTool", "Observation", "ToolEnv", "Trajectory", "Turn",
           "function_tool", "load_env_tasks", "make_env", "register_env"]
