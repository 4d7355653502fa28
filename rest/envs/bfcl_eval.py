"""`bfcl_eval`: BFCL's multi-turn evaluation entries as an environment, so evaluation can run on the training
agent loop (`workers/agent_loop.py`) instead of a loop of its own.

The dialogue follows `rest.eval.bfcl_multi_turn.run_entry`: calls go through the same `SafeExecutor` as call
strings; a model turn without calls closes the user turn and the next user message comes back as an
observation (role "user"); more than MAX_STEPS_PER_TURN steps in one user turn ends the entry
(force-terminated). Scored by BFCL's `multi_turn_checker` with the safe executor. One difference, forced by
token-in/token-out: a miss_func turn's added functions cannot enter the system prompt already generated from,
so their docs are appended to that turn's user message.
"""

from __future__ import annotations

import json

from rest.envs.base import Environment, EnvTask, Observation, Trajectory, register_env, render_reply
from rest.envs.bfcl_sim import _bfcl
from rest.envs.tools import render_task_messages
from rest.tooluse.calls import Call, format_call


def entry_task(entry: dict, answer: dict) -> EnvTask:
    """A BFCL entry (with its function docs, `rest.eval.bfcl_data.load_category`) and possible answer."""
    return EnvTask(entry["id"], "bfcl_eval", [dict(m) for m in entry["question"][0]],
                   state={"involved_classes": entry["involved_classes"], "initial_config": entry["initial_config"]},
                   info={"entry": entry, "ground_truth": answer["ground_truth"]})


@register_env("bfcl_eval")
class BfclEvalEnv(Environment):
    def __init__(self, prompt_format: str = "hermes", bfcl_version: str = "v3", model_name: str = "rest_agent_loop"):
        super().__init__(prompt_format)
        self.version, self.model_name = bfcl_version, model_name

    @property
    def tool_names(self) -> list[str]:
        return [t["name"] for t in self.tools]

    def reset(self, task: EnvTask) -> tuple[list[dict], list[dict]]:
        from rest.eval.bfcl_multi_turn import SafeExecutor, template_tools

        self.task, self.entry = task, task.info["entry"]
        self.executor = SafeExecutor(_bfcl(self.version)[2])
        self.turn, self.steps, self.model_calls, self.force_terminated = 0, [], [], False
        self.tools = template_tools(self.entry["function"]) or []
        _, self.methods = self.executor.methods(self.entry["involved_classes"], self.entry["initial_config"],
                                                ("names", self.entry["id"]))
        return render_task_messages(task.messages, self.tools, self.prompt_format), self.tools

    def step(self, calls: list[Call]) -> tuple[list[Observation], bool]:
        from rest.eval.bfcl_multi_turn import ADDED_FUNCTIONS_PROMPT, EXECUTION_ERROR, MAX_STEPS_PER_TURN, \
            template_tools

        entry = self.entry
        if calls:
            strings = [format_call(c.name, c.kwargs) for c in calls]
            self.steps.append(strings)
            results, _ = self.executor(strings, entry["initial_config"], entry["involved_classes"], self.model_name,
                                       entry["id"], long_context="long_context" in entry["id"])
            if len(self.steps) > MAX_STEPS_PER_TURN:
                self.force_terminated = True
                self.model_calls.append(self.steps)
                return [], True
            return [Observation(r, error=r.startswith(EXECUTION_ERROR)) for r in results], False
        self.model_calls.append(self.steps)
        self.steps, self.turn = [], self.turn + 1
        if self.turn >= len(entry["question"]):
            return [], True
        held_out = {int(k): v for k, v in entry.get("held_out_functions", {}).items()}
        if self.turn in held_out:
            added = template_tools(held_out[self.turn]) or []
            self.tools = self.tools + added
            text = ADDED_FUNCTIONS_PROMPT + "\n" + "\n".join(json.dumps(t) for t in added)
            return [Observation(text, role="user")], False
        return [Observation(m["content"], role="user") for m in entry["question"][self.turn]], False

    def score(self, trajectory: Trajectory) -> dict[str, float]:
        from rest.eval.bfcl_multi_turn import SafeExecutor, safe_checker

        if self.force_terminated or len(self.model_calls) < len(self.entry["question"]):
            return {"reward": 0.0, "success": 0.0}
        _, mt_mod, class_paths = _bfcl(self.version)
        with safe_checker(mt_mod, SafeExecutor(class_paths)) as checker:
            result = checker(self.model_calls, self.task.info["ground_truth"], self.entry,
                             self.entry["id"].rsplit("_", 1)[0], self.model_name)
        return {"reward": float(result["valid"]), "success": float(result["valid"])}

    def reference_turns(self, task: EnvTask) -> list[str]:
        """Per user turn: the gold calls in one turn (when there are any), then a reply without calls."""
        from rest.eval.bfcl_multi_turn import SafeExecutor, ground_truth_as_json_calls

        entry = task.info["entry"]
        _, methods = SafeExecutor(_bfcl(self.version)[2]).methods(
            entry["involved_classes"], entry["initial_config"], ("names", entry["id"]))
        out = []
        for strings in task.info["ground_truth"]:
            calls, _ = ground_truth_as_json_calls(strings, methods)
            if calls:
                out.append(render_reply(calls, None, self.prompt_format))
            out.append(render_reply([], "Done.", self.prompt_format))
        return out
