"""The README's "adding a tool" example, verbatim in spirit: it registers, exposes its schema and runs through the
agent loop."""

from rest.envs import EnvTask, ToolEnv, function_tool, make_env, register_env
from rest.models.cache import load_tokenizer
from rest.workers.agent_loop import AgentLimits, ScriptedGenerate, run_agent_loop


@register_env("readme_calculator")
class Calculator(ToolEnv):
    @function_tool
    def add(self, a: int, b: int) -> dict:
        """Add two integers.

        Args:
            a: The first addend.
            b: The second addend.
        """
        return {"result": a + b}

    def score(self, trajectory):
        ok = str(trajectory.task.info["answer"]) in trajectory.final_text
        return {"reward": float(ok), "success": float(ok)}


def test_readme_tool_example_runs_through_the_loop():
    env = make_env("readme_calculator", prompt_format="toolrl")
    assert env.schemas() == [{"name": "add", "description": "Add two integers.", "parameters": {
        "type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "integer", "description": "The first addend."},
            "b": {"type": "integer", "description": "The second addend."}}}}]
    tok = load_tokenizer("qwen3-tokenizer")
    task = EnvTask("c-0", "readme_calculator", [{"role": "user", "content": "What is 20 plus 22?"}], info={"answer": 42})
    script = ['<tool_call>\n{"name": "add", "parameters": {"a": 20, "b": 22}}\n</tool_call>',
              "<response> 42 </response>"]
    [sample] = run_agent_loop([task], [env], tok, ScriptedGenerate(tok, [script], stop_at_call_close=True),
                              AgentLimits(), [0], "toolrl")
    assert sample.turns == 2 and sample.tool_errors == 0 and sample.reward == {"reward": 1.0, "success": 1.0}
    assert '{"result": 42}' in sample.trajectory.turns[0].observations[0].content
