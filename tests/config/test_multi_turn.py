"""The multi-turn keys (rollout.multi_turn.*, data.source=env) validate before anything starts."""

import pytest

from rest.config.load import load_config
from rest.config.validate import ConfigError
from rest.data import load_examples


def error_of(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(overrides)
    return str(error.value)


def test_the_draft_recipe_loads():
    cfg = load_config(["+recipe=multiturn_cpu"])
    assert (cfg.data.source, cfg.data.env_name, cfg.rollout.multi_turn.enable) == ("env", "embedded_multiturn", True)
    assert cfg.rollout.multi_turn.max_turns == 3 and cfg.rollout.multi_turn.stop_at_tool_call_close
    with pytest.raises(NotImplementedError, match="multi-turn agent loop"):
        load_examples(cfg.data)  # until the driver runs the agent loop (phase 2)


def test_bad_multi_turn_settings_name_the_key():
    assert "data.env_name" in error_of(["+recipe=multiturn_cpu", "data.env_name=nope"])
    assert "go together" in error_of(["+recipe=multiturn_cpu", "rollout.multi_turn.enable=false"])
    assert "go together" in error_of(["+recipe=tiny_cpu", "rollout.multi_turn.enable=true"])
    assert "rollout.multi_turn.max_turns" in error_of(["+recipe=multiturn_cpu", "rollout.multi_turn.max_turns=0"])
    message = error_of(["+recipe=multiturn_cpu", "rollout.multi_turn.max_obs_tokens=192"])
    assert "rollout.multi_turn.max_obs_tokens" in message and "data.max_response_length" in message
    assert "rollout.backend=vllm" in error_of(["+recipe=multiturn_cpu", "rollout.backend=hf"])
