"""The chat-template path of the evaluation CLI: tool schemas reach Qwen3's template wrapped exactly once."""

import json

import pytest

import rest.eval.__main__ as cli
from rest.data.prompts import chat_template_tools
from rest.eval import backends
from rest.eval.backends import OracleBackend


def test_chat_template_tools_is_idempotent():
    schema = {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}
    once = chat_template_tools([schema])
    assert once == [{"type": "function", "function": schema}]
    assert chat_template_tools(once) == once and chat_template_tools([]) is None


def test_bfcl_cli_renders_each_tool_once_in_the_qwen3_template(monkeypatch, tmp_path):
    pytest.importorskip("bfcl")
    tokenizer = pytest.importorskip("rest.models.cache").load_tokenizer("qwen3-tokenizer")
    rendered: list[str] = []

    class TemplateOracle(OracleBackend):  # what HF/vLLM backends feed the model, then the oracle's answer
        def generate(self, prompts, tools=None, references=None):
            rendered.extend(backends._chat_texts(tokenizer, prompts, tools))
            return super().generate(prompts, tools, references)

    monkeypatch.setattr(cli, "make_backend", lambda *args, **kwargs: TemplateOracle("hermes"))
    argv = ["bfcl", "--prompt-format", "hermes", "--limit", "2", "--output-dir", str(tmp_path),
            "--categories", "simple_python", "multi_turn_base"]
    assert cli.main(argv) == 0
    assert len(rendered) >= 4
    for text in rendered:
        section = text.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
        tools = [json.loads(line) for line in section.splitlines()]
        assert tools and all(set(t) == {"type", "function"} and t["type"] == "function" for t in tools)
        assert all("name" in t["function"] and t["function"]["parameters"]["type"] == "object" for t in tools)
    scores = json.loads((tmp_path / "bfcl_v3_score.json").read_text())
    assert "simple_python" in json.dumps(scores)
