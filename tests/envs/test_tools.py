from typing import Optional

import pytest

from rest.envs import ENVIRONMENTS, EnvTask, ToolEnv, function_tool, make_env, register_env
from rest.envs.tools import check_arguments, run_tool
from rest.tooluse.calls import Call


@function_tool
def convert(value: float, unit: str, precise: bool = False, tags: Optional[list[str]] = None) -> dict:
    """Convert a value.

    Args:
        value: The number to convert.
        unit: The target unit,
            e.g. "km".
        precise: Keep all digits.
        tags: Labels.

    Returns:
        The converted value.
    """
    return {"value": value * 2, "unit": unit}


def test_schema_from_hints_and_docstring():
    assert convert.schema == {
        "name": "convert", "description": "Convert a value.",
        "parameters": {"type": "object", "required": ["value", "unit"], "properties": {
            "value": {"type": "number", "description": "The number to convert."},
            "unit": {"type": "string", "description": 'The target unit, e.g. "km".'},
            "precise": {"type": "boolean", "description": "Keep all digits."},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "Labels."}}}}


def test_arguments_are_checked_before_the_tool_runs():
    assert check_arguments(convert.schema, {"value": 3, "unit": "km"}) == ""
    assert "missing" in check_arguments(convert.schema, {"value": 3})
    assert "unknown" in check_arguments(convert.schema, {"value": 3, "unit": "km", "x": 1})
    assert "must be number" in check_arguments(convert.schema, {"value": "3", "unit": "km"})
    assert "must be number" in check_arguments(convert.schema, {"value": True, "unit": "km"})
    assert "must be array" in check_arguments(convert.schema, {"value": 1, "unit": "km", "tags": ["a", 2]})
    assert run_tool(convert, Call("convert", {"value": 2, "unit": "m"})).content == '{"unit": "m", "value": 4}'
    assert run_tool(convert, Call("convert", {"value": "2", "unit": "m"})).error


def test_a_method_tool_env_is_a_few_lines_and_registers():
    @register_env("test_counter")
    class Counter(ToolEnv):
        def load_state(self, state):
            self.count = state.get("start", 0)

        @function_tool
        def bump(self, by: int) -> int:
            """Increase the counter.

            Args:
                by: How much.
            """
            if by < 0:
                raise ValueError("negative")
            self.count += by
            return self.count

        def score(self, trajectory):
            return {"reward": float(self.count == 5)}

    try:
        env = make_env("test_counter", "hermes")
        messages, tools = env.reset(EnvTask("u", "test_counter", [{"role": "user", "content": "to 5"}], {"start": 2}))
        assert tools == [Counter.bump.schema] and env.tool_names == ["bump"]
        observations, done = env.step([Call("bump", {"by": 3}), Call("bump", {"by": -1})])
        assert [o.content for o in observations] == ["5", "Error: ValueError: negative"] and not done
        assert [o.error for o in observations] == [False, True]
        assert env.step([]) == ([], True)
        toolrl = make_env("test_counter", "toolrl")
        messages, _ = toolrl.reset(EnvTask("u", "test_counter", [{"role": "user", "content": "to 5"}]))
        assert messages[0]["role"] == "system" and "Name: bump" in messages[0]["content"]
    finally:
        ENVIRONMENTS._entries.pop("test_counter")


def test_untyped_parameters_are_refused():
    with pytest.raises(TypeError, match="type hint"):
        @function_tool
        def bad(x):
            """No hints."""
