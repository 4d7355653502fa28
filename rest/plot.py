"""The curves people read, from run folders' metrics.jsonl.

`python -m rest.plot RUN_DIR [RUN_DIR ...] [--out FILE] [--metrics KEY ...]` overlays runs (one line style
per run) on the default panels: training reward, response length, policy entropy, held-out exact match
(overall and per item kind), and the per-region mean entropy and mean token weight of ResT's reweighting.
With `--metrics`, one panel per given key instead. The trainer draws the same panels for its own run into
`curves.png` at the end (rest.trainer.tracking).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rest.algo.config import REGION_NAMES


@dataclass(frozen=True)
class Series:
    key: str
    label: str = ""
    present_if: Optional[str] = None  # plot a point only where this metric is > 0 (regions absent from a batch)


@dataclass(frozen=True)
class Panel:
    title: str
    series: tuple[Series, ...]
    ylim: Optional[tuple[float, float]] = None  # fixed axes for rates, so runs and steps read alike


PANELS = (
    Panel("training reward (step-scheduled ranges)", (Series("critic/reward_mean"),)),
    Panel("response length (tokens)", (Series("response_length/mean"),)),
    Panel("policy entropy (nats)", (Series("actor/entropy"),)),
    Panel("held-out exact match / multi-turn success (greedy)", (
        Series("val/task/exact_match", "all"), Series("val/task/exact_match/no_call", "no call"),
        Series("val/task/exact_match/one_call", "one call"), Series("val/task/exact_match/multi_call", "several calls"),
        Series("val/embedded_multiturn/success", "multi-turn success")),
        ylim=(-0.02, 1.02)),
    Panel("mean entropy per region (nats)",
          tuple(Series(f"rest/entropy/{r}", r, f"rest/share/{r}") for r in REGION_NAMES)),
    Panel("mean token weight per region",
          tuple(Series(f"rest/weight/{r}", r, f"rest/share/{r}") for r in REGION_NAMES)),
)
LINE_STYLES = ("-", "--", ":", "-.")


def read_history(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass run folders written by `python -m rest.main`")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def points(history: list[dict], series: Series) -> list[tuple[int, float]]:
    """(step, value) of every finite value of `series.key` (where `series.present_if` > 0, when set)."""
    out = []
    for row in history:
        value = row.get(series.key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if series.present_if is not None and not row.get(series.present_if, 0) > 0:
            continue
        out.append((row["step"], value))
    return out


def plot_runs(runs: dict[str, list[dict]], path: str | Path, panels: tuple[Panel, ...] = PANELS) -> Optional[Path]:
    """Draw `panels` for each run (label -> history) into `path`; None when no run has any row."""
    if not any(runs.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]  # color: the series; line style: the run
    for ax, panel in zip(axes.flat, panels):
        drawn = {}
        for r, history in enumerate(runs.values()):
            for s, series in enumerate(panel.series):
                xy = points(history, series)
                if xy:
                    ax.plot(*zip(*xy), marker="o", markersize=3, color=colors[s % len(colors)],
                            linestyle=LINE_STYLES[r % len(LINE_STYLES)])
                    drawn[s] = series.label
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")
        elif any(drawn.values()):
            ax.legend([Line2D([], [], color=colors[s % len(colors)]) for s in sorted(drawn)],
                      [drawn[s] for s in sorted(drawn)], fontsize=7)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        ax.set_title(panel.title, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if len(runs) > 1:  # which line style is which run, once for the figure
        fig.legend([Line2D([], [], color="black", linestyle=LINE_STYLES[r % len(LINE_STYLES)]) for r in range(len(runs))],
                   list(runs), loc="upper center", ncol=min(len(runs), 4), fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 0.94))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def run_labels(run_dirs: list[str]) -> list[str]:
    """Folder names, or paths when two runs share a name."""
    names = [Path(d).resolve().name for d in run_dirs]
    return names if len(set(names)) == len(names) else [str(Path(d)) for d in run_dirs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rest.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="folders holding metrics.jsonl")
    parser.add_argument("--out", default="curves_compare.png", help="PNG to write (default: curves_compare.png)")
    parser.add_argument("--metrics", nargs="+", metavar="KEY", help="plot these metrics, one panel each")
    args = parser.parse_args(argv)
    try:
        runs = {label: read_history(d) for label, d in zip(run_labels(args.run_dirs), args.run_dirs)}
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    panels = tuple(Panel(key, (Series(key),)) for key in args.metrics) if args.metrics else PANELS
    logged = {key for history in runs.values() for row in history for key in row}
    missing = [key for key in args.metrics or () if key not in logged]
    if missing:
        print(f"note: no run logged {missing}", file=sys.stderr)
    path = plot_runs(runs, args.out, panels)
    if path is None:
        print("error: the run folders' metrics.jsonl files are empty", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
