"""Where metrics go: console, a JSONL file in the run folder, wandb (offline unless configured), and a PNG
plot of the curves people look at first (rest.plot's panels: reward, response length, entropy, held-out exact
match, per-region entropy and weight) at the end of the run.

On the console every validation also gets one line with the held-out task metrics split by item kind, and the
end of the run prints the held-out exact match before and after training."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from tqdm import tqdm
from rest.eval.multiturn import summary_line as env_summary_line
from rest.eval.task import paired_bootstrap_ci, summary_line
from rest.plot import plot_runs
from rest.trainer.validation import ITEM_SCORES_FILE

CONSOLE_KEYS = (
    "critic/reward_mean", "response_length/mean", "actor/entropy", "actor/pg_loss", "actor/grad_norm",
    "rollout/logprob_diff_max", "rollout/turns_mean", "val/task/exact_match", "timing_s/step", "perf/tokens_per_s",
)


class Tracker:
    def __init__(self, loggers: list[str], run_dir: str, project: str, experiment: str, config: dict,
                 wandb_mode: str = "offline", resume_step: int = 0):
        self.loggers = set(loggers)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        if resume_step:
            self._truncate_after(resume_step)
        else:  # a fresh run: no lines from an earlier run in the same folder
            for path in (self.jsonl_path, self.run_dir / ITEM_SCORES_FILE):
                path.unlink(missing_ok=True)
        self.wandb = None
        if "wandb" in self.loggers:
            import wandb

            mode = os.environ.get("WANDB_MODE", wandb_mode)
            self.wandb = wandb.init(project=project, name=experiment, config=config, mode=mode,
                                    dir=str(self.run_dir), resume="allow")

    def _truncate_after(self, step: int) -> None:
        """A resumed run repeats nothing: drop lines the interrupted run wrote after its checkpoint."""
        if not self.jsonl_path.exists():
            return
        kept = [line for line in self.jsonl_path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        self.jsonl_path.write_text("".join(line + "\n" for line in kept))

    def log(self, metrics: dict[str, float], step: int) -> None:
        if "jsonl" in self.loggers:
            with self.jsonl_path.open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
        if "console" in self.loggers:
            shown = " | ".join(f"{k}={_fmt(metrics[k])}" for k in CONSOLE_KEYS if k in metrics)
            step_line = f"step {step}: {shown}" if shown else None  # a validation-only row has its own line
            for line in (step_line, summary_line(metrics, step), env_summary_line(metrics, step)):
                if line:
                    tqdm.write(line, file=sys.stdout)  # above the progress bar, which is redrawn
            sys.stdout.flush()
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def history(self) -> list[dict]:
        if not self.jsonl_path.exists():
            return []
        return [json.loads(line) for line in self.jsonl_path.read_text().splitlines() if line.strip()]

    def finish(self) -> Path | None:
        history = self.history()
        if "console" in self.loggers:
            for key in held_out_keys(history):
                line = held_out_change(history, self.run_dir / ITEM_SCORES_FILE, key)
                if line:
                    print(line, flush=True)
        plot = plot_runs({"": history}, self.run_dir / "curves.png")
        if self.wandb is not None:
            self.wandb.finish()
        return plot


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


TASK_KEY = "val/task/exact_match"
ENV_SUCCESS = re.compile(r"^val/[^/]+/success$")  # a multi-turn environment's greedy success (rest.eval.multiturn)


def held_out_keys(history: list[dict]) -> list[str]:
    """The held-out metrics whose change the run ends with: the task's exact match, each environment's success."""
    keys = {key for row in history for key in row if key == TASK_KEY or ENV_SUCCESS.match(key)}
    return sorted(keys, key=lambda key: (key != TASK_KEY, key))


def held_out_change(history: list[dict], item_scores: Path | None = None, key: str = TASK_KEY) -> str | None:
    """`held-out exact_match: step 0 0.312 -> step 30 0.455 (n=256); gain +0.143, 95% CI [+0.105, +0.180]`
    (`held-out embedded_multiturn/success: ...` for an environment): the first and last validation, and (when
    the per-item scores were recorded) the paired bootstrap interval of the gain over the same items."""
    rows = [row for row in history if key in row]
    if not rows:
        return None
    first, last = rows[0], rows[-1]
    prefix, metric = key.rsplit("/", 1)
    n = first.get(f"{prefix}/n")
    size = f" (n={int(n)})" if n is not None else ""
    change = f"step {first['step']} {first[key]:.3f}"
    if last is not first:
        change += f" -> step {last['step']} {last[key]:.3f}"
    name = metric if key == TASK_KEY else key[len("val/"):]
    line = f"held-out {name}: {change}{size}"
    by_step = _item_scores(item_scores) if last is not first else {}
    before, after = by_step.get(first["step"]), by_step.get(last["step"])
    if before and after and before["uid"] == after["uid"] and metric in before and metric in after:
        gain, low, high = paired_bootstrap_ci(before[metric], after[metric])
        line += f"; gain {gain:+.3f}, 95% paired bootstrap CI [{low:+.3f}, {high:+.3f}]"
    return line


def _item_scores(path: Path | None) -> dict[int, dict]:
    """step -> that validation's per-item record (the last one written for a step wins, as after a resume)."""
    if path is None or not Path(path).exists():
        return {}
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return {record["step"]: record for record in records}
