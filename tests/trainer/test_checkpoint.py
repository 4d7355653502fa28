"""Checkpoints survive crashes: the save protocol, retention, the resume target, and the driver loop's order
(save, then validate) with fake worker groups (no Ray)."""

import json
import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import ray
import torch

from rest.config.load import load_config
from rest.config.validate import ConfigError
from rest.main import main
from rest.trainer import checkpoint as ckpt
from rest.trainer.loop import Trainer


def save(run_dir, step, keep=None):
    path = ckpt.begin_save(str(run_dir), step)
    (path / "actor.bin").write_text(f"weights of step {step}")
    ckpt.save_driver_state(path, step, {"epoch": 0, "offset": step}, {"critic/reward_mean": 0.5})
    return ckpt.commit_save(str(run_dir), step, keep)


def test_a_save_killed_before_its_commit_resumes_from_the_previous_checkpoint(tmp_path):
    save(tmp_path, 2)
    killed = ckpt.begin_save(str(tmp_path), 4)  # died here: files written, never published
    (killed / "actor.bin").write_text("half")
    assert ckpt.find_resume_dir(str(tmp_path), "auto") == ckpt.step_dir(str(tmp_path), 2)
    assert ckpt.complete_steps(str(tmp_path)) == [2]
    assert ckpt.discard_partial(str(tmp_path)) == [killed] and not killed.exists()
    # killed between the rename and the marker: the folder exists but is not the resume target, and the next
    # save of that step replaces it
    ckpt.step_dir(str(tmp_path), 4).mkdir()
    assert ckpt.find_resume_dir(str(tmp_path), "auto") == ckpt.step_dir(str(tmp_path), 2)
    save(tmp_path, 4)
    assert ckpt.find_resume_dir(str(tmp_path), "auto") == ckpt.step_dir(str(tmp_path), 4)
    assert (ckpt.step_dir(str(tmp_path), 4) / "actor.bin").read_text() == "weights of step 4"


def test_retention_keeps_the_newest_checkpoints(tmp_path):
    for step in (1, 2, 3, 4):
        save(tmp_path, step, keep=2)
    assert ckpt.complete_steps(str(tmp_path)) == [3, 4]
    assert ckpt.latest_step(str(tmp_path)) == 4


def test_a_marker_naming_a_missing_folder_is_an_error_naming_both(tmp_path):
    save(tmp_path, 3)
    ckpt.mark_complete(str(tmp_path), 5)
    with pytest.raises(FileNotFoundError, match="global_step_5"):
        ckpt.find_resume_dir(str(tmp_path), "auto")


def test_driver_state_loads_with_weights_only_and_restores_every_rng(tmp_path):
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's legacy state
    ckpt.save_driver_state(tmp_path, 7, {"epoch": 1, "offset": 2}, {"critic/reward_mean": float("nan")})
    expected = (random.random(), np.random.standard_normal(), torch.rand(()).item())
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    state = ckpt.load_driver_state(tmp_path)  # torch.load(weights_only=True) inside
    assert state["step"] == 7 and state["sampler"] == {"epoch": 1, "offset": 2}
    assert (random.random(), np.random.standard_normal(), torch.rand(()).item()) == expected
    assert math.isnan(ckpt.load_step_metrics(tmp_path)["critic/reward_mean"])


def test_a_run_dir_that_cannot_be_written_fails_before_ray_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("rest.main.configure_logging", lambda cfg: None)  # process-wide; not under test here
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="trainer.run_dir"):
        ckpt.check_writable(str(blocker / "run"))
    assert main(["+recipe=tiny_cpu", f"trainer.run_dir={blocker / 'run'}"]) == 2
    assert not ray.is_initialized()
    assert "config error: trainer.run_dir=" in capsys.readouterr().err


# ---------------------------------------------------------------- the driver loop, with fake worker groups
class FakeActor:
    def __init__(self):
        self.saved, self.loaded = [], []

    def save_checkpoint(self, path):
        self.saved.append(path)
        open(f"{path}/actor.bin", "w").write("weights")

    def load_checkpoint(self, path):
        self.loaded.append(path)

    def export_weights(self, dtype):
        return []


class FailingValidator:
    def __init__(self):
        self.calls = []

    def run(self, step):
        self.calls.append(step)
        raise RuntimeError("benchmark data missing")


def make_trainer(tmp_path, *overrides, validator=None, total_steps=4):
    cfg = load_config(["+recipe=tiny_cpu", f"trainer.run_dir={tmp_path}", "trainer.progress_bar=false",
                       "trainer.loggers=[jsonl]", "trainer.export_hf=false",
                       "trainer.val_before_train=false", *overrides])
    groups = SimpleNamespace(actor=FakeActor(), rollout=SimpleNamespace(load_weights=lambda refs: None))
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=0)
    trainer = Trainer(cfg, groups, tokenizer, list(range(16)), validator or FailingValidator(), total_steps)
    trainer.train_step = lambda: {"critic/reward_mean": float(trainer.step)}
    return trainer


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_validation_that_fails_at_a_save_step_keeps_the_checkpoint_and_the_run_going(tmp_path, caplog):
    trainer = make_trainer(tmp_path, "trainer.save_freq=2", "trainer.test_freq=2", "trainer.save_final=false")
    trainer.fit()
    assert trainer.validator.calls == [2, 4]
    assert ckpt.complete_steps(str(tmp_path)) == [2, 4]
    assert [r["step"] for r in rows(tmp_path)] == [1, 2, 3, 4]
    assert rows(tmp_path)[1]["val/failed"] == 1
    assert "step 2: validation failed" in caplog.text and "benchmark data missing" in caplog.text


def test_with_on_error_error_the_run_stops_after_saving_and_resumes_with_that_steps_row(tmp_path):
    trainer = make_trainer(tmp_path, "trainer.save_freq=2", "trainer.test_freq=2", "validation.on_error=error")
    with pytest.raises(RuntimeError, match="benchmark data missing"):
        trainer.fit()
    assert ckpt.latest_step(str(tmp_path)) == 2  # saved before the validation that raised
    assert [r["step"] for r in rows(tmp_path)] == [1]  # step 2's row was never logged...
    again = make_trainer(tmp_path, "trainer.save_freq=2", validator=SimpleNamespace(run=lambda step: {}))
    again.fit()
    assert again.groups.actor.loaded == [str(ckpt.step_dir(str(tmp_path), 2))]
    assert [r["step"] for r in rows(tmp_path)] == [1, 2, 3, 4]  # ...the resumed run logs it from the checkpoint
    assert rows(tmp_path)[1]["critic/reward_mean"] == 2.0
