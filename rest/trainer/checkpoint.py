"""Checkpoints: everything needed to continue a run exactly.

Layout: <run_dir>/checkpoints/global_step_<k>/ holds the actor's sharded model + optimizer (torch DCP), its
LR scheduler and per-rank RNG, and driver.pt (step, prompt-sampler position, driver RNG). The file
`latest_checkpointed_iteration.txt` is written last, atomically, so a run killed mid-save resumes from the
previous complete checkpoint and never from a half-written one.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

LATEST = "latest_checkpointed_iteration.txt"


def checkpoint_root(run_dir: str) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: str, step: int) -> Path:
    return checkpoint_root(run_dir) / f"global_step_{step}"


def save_driver_state(path: Path, step: int, sampler_state: dict) -> None:
    torch.save(
        {"step": step, "sampler": sampler_state, "python_rng": random.getstate(),
         "numpy_rng": np.random.get_state(), "torch_rng": torch.get_rng_state()},
        path / "driver.pt",
    )


def load_driver_state(path: Path) -> dict:
    state = torch.load(path / "driver.pt", weights_only=False)
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state


def mark_complete(run_dir: str, step: int) -> None:
    root = checkpoint_root(run_dir)
    tmp = root / (LATEST + ".tmp")
    tmp.write_text(str(step))
    os.replace(tmp, root / LATEST)


def find_resume_dir(run_dir: str, resume: str) -> Path | None:
    """`auto`: the latest complete checkpoint of this run dir, if any; `disable`: none; else that path."""
    if resume == "disable":
        return None
    if resume != "auto":
        return Path(resume)
    marker = checkpoint_root(run_dir) / LATEST
    if not marker.exists():
        return None
    return step_dir(run_dir, int(marker.read_text().strip()))


def prune(run_dir: str, keep: int) -> None:
    """Keep the newest `keep` complete checkpoints."""
    root = checkpoint_root(run_dir)
    steps = sorted(int(p.name.rsplit("_", 1)[1]) for p in root.glob("global_step_*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(step_dir(run_dir, old), ignore_errors=True)
