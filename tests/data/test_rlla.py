import json

import pytest

from rest.data import BadRowError, DataConfig, load_examples, load_rlla, toolrl_split, write_verl_parquet
from rest.data.prompts import parse_toolrl_tools, toolrl_system_prompt

GOOD = {
    "instruction": toolrl_system_prompt([{"name": "f", "description": "d", "parameters": {"properties": {"x": {"type": "int"}}}}]),
    "input": "**Dialogue Records History**\n<user> hi </user>",
    "output": '<think> ok </think>\n<tool_call>\n{"name": "f", "parameters": {"x": 1}}\n</tool_call>',
}


@pytest.mark.parametrize(
    "field,value",
    [("source", "x"), ("prompt_format", "chatml"), ("val_fraction", 1.5), ("on_bad_row", "ignore"), ("max_examples", 0)],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"data.{field}"):
        DataConfig(**{field: value}).validate()
    with pytest.raises(ValueError, match="data.path"):
        DataConfig(source="rlla").validate()


def test_toolrl_system_prompt_reproduces_the_released_records(shared_data):
    records = json.loads((shared_data / "toolrl/rlla_sft.json").read_text())
    for r in records:
        assert toolrl_system_prompt(parse_toolrl_tools(r["instruction"])) == r["instruction"]


def test_load_rlla_json_and_parquet(shared_data):
    train, val, stats = load_examples(DataConfig(source="rlla", path=str(shared_data / "toolrl/rlla_sft.json")))
    assert (stats.rows_read, stats.train, stats.val, stats.skipped) == (400, 392, 8, 0)
    again, _, _ = load_rlla(str(shared_data / "toolrl/rlla_sft.json"), "toolrl")
    assert [e.uid for e in again] == [e.uid for e in train]
    assert all(e.ground_truth.startswith(("<tool_call>", "<response>")) and e.tools for e in train)
    assert train[0].messages[0]["role"] == "system" and "**Dialogue Records History**" in train[0].messages[1]["content"]
    train, val, stats = load_examples(DataConfig(source="rlla", path=str(shared_data / "toolrl/test.parquet"), prompt_format="hermes"))
    assert stats.rows_read == 80 and stats.skipped == 0
    assert all(m["role"] != "system" for e in train for m in e.messages)


def test_split_is_a_seeded_permutation_with_the_last_two_percent_held_out():
    train, test = toolrl_split(list(range(4000)))
    assert len(test) == 80 and sorted(train + test) == list(range(4000))
    assert toolrl_split(list(range(4000))) == (train, test)


def test_bad_rows_error_with_file_and_row_or_are_skipped_and_counted(tmp_path):
    bad_output = dict(GOOD, output="<tool_call>\nnot json\n</tool_call>")
    missing = {k: v for k, v in GOOD.items() if k != "output"}
    path = tmp_path / "data.json"
    path.write_text(json.dumps([GOOD, bad_output, GOOD, missing]))
    with pytest.raises(BadRowError, match=r"data\.json:1: .*not valid JSON"):
        load_rlla(str(path), "toolrl", test_fraction=0.0)
    train, val, stats = load_rlla(str(path), "toolrl", on_bad_row="skip", test_fraction=0.0)
    assert len(train) == 2 and stats.skipped == 2
    assert any("data.json:3: missing field 'output'" in s for s in stats.skipped_rows)


@pytest.mark.parametrize("fmt", ["toolrl", "hermes"])
def test_parquet_round_trip(tmp_path, fmt):
    rows = [GOOD, dict(GOOD, input=GOOD["input"] + '\n\n<tool_call>\n{"name": "f", "parameters": {"x": 2}}\n</tool_call>\n<obs> 3 </obs>')]
    (tmp_path / "raw.json").write_text(json.dumps(rows))
    train, _, _ = load_rlla(str(tmp_path / "raw.json"), fmt, test_fraction=0.0)
    write_verl_parquet(train, str(tmp_path / "out/train.parquet"))
    write_verl_parquet(train[:1], str(tmp_path / "out/test.parquet"), split="test")
    back, val, stats = load_rlla(str(tmp_path / "out"), fmt)
    assert len(back) == 2 and len(val) == 1
    assert sorted(e.ground_truth for e in back) == sorted(e.ground_truth for e in train)
    assert sorted(e.tools == train[0].tools for e in back) == [True, True]


def test_hub_id_offline_gives_a_clear_error(monkeypatch):
    import huggingface_hub

    def offline(**kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(RuntimeError, match="could not download hub dataset 'owner/rlla'.*data.path"):
        load_rlla("owner/rlla", "toolrl")
    with pytest.raises(FileNotFoundError):
        load_rlla("/no/such/file.json", "toolrl")
