"""Where metrics go: console, a JSONL file in the run folder, wandb (offline unless configured), and a PNG
plot of the curves people look at first (reward, response length, entropy) at the end of the run."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from tqdm import tqdm

CONSOLE_KEYS = (
    "critic/reward_mean", "response_length/mean", "actor/entropy", "actor/pg_loss", "actor/grad_norm",
    "rollout/logprob_diff_max", "val/task/reward_mean", "timing_s/step", "perf/tokens_per_s",
)
PLOT_KEYS = (("critic/reward_mean", "mean reward"), ("response_length/mean", "response length (tokens)"),
             ("actor/entropy", "policy entropy (nats)"))


class Tracker:
    def __init__(self, loggers: list[str], run_dir: str, project: str, experiment: str, config: dict,
                 wandb_mode: str = "offline", resume_step: int = 0):
        self.loggers = set(loggers)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        if resume_step:
            self._truncate_after(resume_step)
        elif self.jsonl_path.exists():
            self.jsonl_path.unlink()
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
            tqdm.write(f"step {step}: {shown}", file=sys.stdout)  # above the progress bar, which is redrawn
            sys.stdout.flush()
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def history(self) -> list[dict]:
        if not self.jsonl_path.exists():
            return []
        return [json.loads(line) for line in self.jsonl_path.read_text().splitlines() if line.strip()]

    def finish(self) -> Path | None:
        plot = plot_curves(self.history(), self.run_dir / "curves.png")
        if self.wandb is not None:
            self.wandb.finish()
        return plot


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_curves(history: list[dict], path: Path) -> Path | None:
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOT_KEYS), figsize=(5 * len(PLOT_KEYS), 3.6))
    for ax, (key, label) in zip(axes, PLOT_KEYS):
        points = [(h["step"], h[key]) for h in history if key in h and math.isfinite(h[key])]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
