"""Checkpoints: everything needed to continue a run exactly, written so that a crash at any moment leaves the
previous complete checkpoint usable.

Layout: <run_dir>/checkpoints/global_step_<k>/ holds the actor's sharded model + optimizer (torch DCP), its
LR scheduler and per-rank RNG, driver.pt (step, prompt-sampler position, driver RNG) and metrics.json (the
step's metrics row, so a run killed between the save and the row's logging still logs it on resume).

A save writes into global_step_<k>.partial/, renames it to global_step_<k>/ and then rewrites the marker
`latest_checkpointed_iteration.txt` atomically: resume follows the marker only, so a run killed mid-save
resumes from the previous complete checkpoint, and the next start deletes the half-written folder. Every file
holds plain containers, numbers and tensors only, so everything loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from rest.config.validate import ConfigError

LATEST = "latest_checkpointed_iteration.txt"
PARTIAL = ".partial"
_STEP_DIR = re.compile(r"global_step_(\d+)")


def checkpoint_root(run_dir: str) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: str, step: int) -> Path:
    return checkpoint_root(run_dir) / f"global_step_{step}"


# ---------------------------------------------------------------- driver state
def save_driver_state(path: Path, step: int, sampler_state: dict, step_metrics: dict | None = None) -> None:
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    torch.save(
        {"step": step, "sampler": sampler_state, "python_rng": random.getstate(),
         "numpy_rng": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
         "torch_rng": torch.get_rng_state()},
        path / "driver.pt",
    )
    if step_metrics is not None:
        (path / "metrics.json").write_text(json.dumps(step_metrics))


def load_driver_state(path: Path) -> dict:
    """The driver state of checkpoint `path`, after restoring the driver's RNGs from it."""
    state = torch.load(path / "driver.pt", weights_only=True)
    random.setstate(state["python_rng"])
    rng = state["numpy_rng"]
    np.random.set_state((rng["name"], rng["keys"].numpy().astype(np.uint32), rng["position"], rng["has_gauss"],
                         rng["cached_gaussian"]))
    torch.set_rng_state(state["torch_rng"])
    return state


def load_step_metrics(path: Path) -> dict | None:
    file = Path(path) / "metrics.json"
    return json.loads(file.read_text()) if file.exists() else None


# ---------------------------------------------------------------- the save protocol
def begin_save(run_dir: str, step: int) -> Path:
    """An empty folder for step `step`'s checkpoint, under a name resume never reads."""
    path = checkpoint_root(run_dir) / f"global_step_{step}{PARTIAL}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def commit_save(run_dir: str, step: int, keep: int | None = None) -> Path:
    """Publish the finished partial folder of `step`: rename it into place, then point the marker at it (the
    commit point), then prune to the newest `keep`. Killed between any two of these, resume still finds a
    complete checkpoint: the previous one until the marker moves."""
    partial = checkpoint_root(run_dir) / f"global_step_{step}{PARTIAL}"
    final = step_dir(run_dir, step)
    if final.exists():  # left by a run killed after its rename but before its marker: never marked, never read
        shutil.rmtree(final)
    os.replace(partial, final)
    mark_complete(run_dir, step)
    if keep:
        prune(run_dir, keep)
    return final


def mark_complete(run_dir: str, step: int) -> None:
    root = checkpoint_root(run_dir)
    tmp = root / (LATEST + ".tmp")
    tmp.write_text(str(step))
    os.replace(tmp, root / LATEST)


def latest_step(run_dir: str) -> int | None:
    marker = checkpoint_root(run_dir) / LATEST
    return int(marker.read_text().strip()) if marker.exists() else None


def discard_partial(run_dir: str) -> list[Path]:
    """Delete the half-written folders of saves that were killed; returns what was deleted."""
    root = checkpoint_root(run_dir)
    stale = sorted(root.glob(f"global_step_*{PARTIAL}")) if root.exists() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def find_resume_dir(run_dir: str, resume: str) -> Path | None:
    """`auto`: the latest complete checkpoint of this run dir, if any; `disable`: none; else that path."""
    if resume == "disable":
        return None
    if resume != "auto":
        return Path(resume)
    step = latest_step(run_dir)
    if step is None:
        return None
    path = step_dir(run_dir, step)
    if not path.is_dir():
        raise FileNotFoundError(f"{checkpoint_root(run_dir) / LATEST} names step {step} but {path} is missing; "
                                f"pass trainer.resume=<a checkpoint dir> or trainer.resume=disable")
    return path


def complete_steps(run_dir: str) -> list[int]:
    """Steps of the published checkpoint folders (not the partial ones), oldest first."""
    root = checkpoint_root(run_dir)
    if not root.exists():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.fullmatch(p.name)))


def prune(run_dir: str, keep: int) -> None:
    """Keep the newest `keep` published checkpoints, and always the one the marker names."""
    latest = latest_step(run_dir)
    for old in complete_steps(run_dir)[:-keep]:
        if old != latest:
            shutil.rmtree(step_dir(run_dir, old), ignore_errors=True)


def check_writable(run_dir: str) -> None:
    """Fail now, before any worker starts, if the run folder cannot hold metrics and checkpoints."""
    root = checkpoint_root(run_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"trainer.run_dir={run_dir!r} is not writable ({error.strerror or error}): "
                              f"metrics and checkpoints go there; pick another trainer.run_dir") from None
