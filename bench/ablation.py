"""The ablation: ResT's weight forms against its baselines, several seeds each, on held-out exact match.

Not a test. Every (preset, seed) is one `python -m rest.main` run (bench.common.run_rest) from the default
config's start model and task, with the same sizes for all: P prompts x n samples per step, the same
max_response_length, the same number of steps, so the same sampled-token budget per step (DAPO's dynamic
sampling draws extra batches: those are counted and reported, and capped by --dapo-max-tries). Validation is
greedy on the same held-out items at step 0 and every --test-freq steps; the metric is `val/task/exact_match`
(per kind `val/task/exact_match/<kind>`), read from each run's metrics.jsonl. Only trainer.seed changes between
seeds (prompt order and sampling), never the data or the start model.

Presets (name -> overrides) are in PRESETS: the `rest` preset with each entropy-based weight form
(entropy: c_r / Hbar_r; variance_bound: c_r / mean(1 - exp(-H_t))), `rest_static` (official code's constants),
`grpo`, `drgrpo`, `dapo`. Each run's directory is bench/out/ablation/<preset>/seed<k>; a run whose metrics are
complete for the same overrides is skipped, so an interrupted ablation continues where it stopped.

Writes bench/ABLATION.md (per preset: exact match at step 0 and at the end, their gain, area under the
validation curve, steps to a threshold, seconds per step, DAPO's extra samples, the per-region weights and
entropies; a ranking) and bench/plots/ablation.png. With 3 seeds the 95% intervals are Student-t intervals over
seeds (t_{0.975, n-1} s / sqrt(n)); the per-seed values are printed beside them. A hand-written block between
`<!-- begin:notes -->` and `<!-- end:notes -->` in ABLATION.md survives a re-render.

Sizing (2 cores): a run is a fresh Ray cluster, vLLM engine and FSDP ranks plus its steps. Measured here (a
shared machine) at P 4 x n 8 = 32 sequences, 4 steps, validation of 256 items at 0 and 4: GRPO 80 s a run at
6.1 s a step, DAPO 86 s at 6.8 s (one batch a step: no group had all-equal rewards); so about 55 s of start-up
and validation. bench/RESULTS.md's scaling has 5.6 s per ResT step at 32 sequences (the entropy forms add the
old-policy forward, ~1 s). The defaults (12 steps, validation at 0, 4, 8, 12) give about 2.5 min a run,
6 presets x 3 seeds in about 45 min; DAPO's retries (at most --dapo-max-tries batches a step) can lengthen its
runs.

Usage: python bench/ablation.py [--presets ...] [--seeds 1 2 3] [--prompts 4] [--n 8] [--steps 12]
           [--test-freq 4] [--val-size 256] [--report-only] [--quick] [extra hydra overrides after --]
--quick: one preset, one seed, one step, 16 validation items; writes under bench/out/ (not the quoted report).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PLOTS, ROOT, machine_line, median, run_rest, table  # noqa: E402

REGIONS = ("format", "name", "params", "cot", "other")  # rest.algo.config.REGION_NAMES, report order
PRESETS: dict[str, list[str]] = {
    "rest_entropy": ["algorithm=rest", "algorithm.region_weights.mode=entropy"],
    "rest_variance_bound": ["algorithm=rest", "algorithm.region_weights.mode=variance_bound"],
    "rest_static": ["algorithm=rest_static"],
    "grpo": ["algorithm=grpo"],
    "drgrpo": ["algorithm=drgrpo"],
    "dapo": ["algorithm=dapo"],
}
EM_KEY = "val/task/exact_match"
KINDS = ("no_call", "one_call", "multi_call")
OUT = ROOT / "bench" / "out"
REPORT = ROOT / "bench" / "ABLATION.md"
PLOT = PLOTS / "ablation.png"
RUN_RECORD = "ablation_run.json"  # in each run dir: its overrides and wall time, written when it completed
NOTES = re.compile(r"<!-- begin:notes -->.*?<!-- end:notes -->", re.S)

# two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30; beyond that the normal 1.96
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


class MissingMetricError(RuntimeError):
    """A run's metrics.jsonl has no held-out exact match."""


# ---------------------------------------------------------------------------------------------- statistics
@dataclass
class Interval:
    mean: float
    low: float  # nan with fewer than 2 values
    high: float
    values: list[float]

    def cell(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "-"
        if math.isnan(self.low):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def seeds_cell(self, digits: int = 3) -> str:
        return " / ".join(f"{v:.{digits}f}" for v in self.values)


def t_interval(values: list[float]) -> Interval:
    """Mean and two-sided 95% Student-t interval mean +- t_{0.975, n-1} s / sqrt(n), s the sample std (n - 1)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), [])
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, float("nan"), float("nan"), values)
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = (T975[n - 2] if n - 1 <= len(T975) else 1.96) * s / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, values)


def curve_area(steps: list[int], values: list[float]) -> float:
    """Area under the validation curve by the trapezoid rule, over the step range: the curve's mean level
    (same units as the metric, comparable across run lengths); the one value for a one-point curve."""
    if len(steps) == 1:
        return float(values[0])
    area = sum((s1 - s0) * (v0 + v1) / 2 for s0, s1, v0, v1 in zip(steps, steps[1:], values, values[1:]))
    return area / (steps[-1] - steps[0])


def steps_to_threshold(steps: list[int], values: list[float], threshold: float) -> int | None:
    """The first validated step whose value is >= threshold; None if none is."""
    return next((s for s, v in zip(steps, values) if v >= threshold), None)


# ---------------------------------------------------------------------------------------------- one run
@dataclass
class RunResult:
    preset: str
    seed: int
    val_steps: list[int]
    exact_match: list[float]
    final_by_kind: dict[str, float]
    step_seconds: list[float]  # timing_s/step of each training step
    sampled_sequences: int  # generated responses over the run (DAPO: every try)
    planned_sequences: int  # steps x P x n
    sampled_tokens: float  # generated response tokens (DAPO's dropped batches estimated at the kept mean length)
    region_weight: dict[str, list[float]] = field(default_factory=dict)  # region -> per step
    region_entropy: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float = float("nan")


def read_run(run_dir: Path, preset: str, seed: int, prompts: int, n: int) -> RunResult:
    """Parse one run's metrics.jsonl. Raises MissingMetricError if exact match was never logged."""
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    val = [r for r in rows if EM_KEY in r]
    if not val:
        raise MissingMetricError(
            f"{path}: no '{EM_KEY}' in any row: run with a rest version that logs {EM_KEY} "
            f"(validation.benchmarks must include task and trainer.test_freq / val_before_train be set)")
    train = [r for r in rows if r.get("step", 0) >= 1 and "timing_s/step" in r]
    tries = [int(r.get("dapo/tries", 1)) for r in train]
    record = run_dir / RUN_RECORD
    wall = json.loads(record.read_text()).get("wall_s", float("nan")) if record.exists() else float("nan")
    last = val[-1]
    return RunResult(
        preset=preset, seed=seed, val_steps=[int(r["step"]) for r in val],
        exact_match=[float(r[EM_KEY]) for r in val],
        final_by_kind={k: float(last[f"{EM_KEY}/{k}"]) for k in KINDS if f"{EM_KEY}/{k}" in last},
        step_seconds=[float(r["timing_s/step"]) for r in train],
        sampled_sequences=sum(tries) * prompts * n, planned_sequences=len(train) * prompts * n,
        sampled_tokens=sum(t * prompts * n * float(r["response_length/mean"]) for t, r in zip(tries, train)),
        region_weight={g: [float(r.get(f"rest/weight/{g}", float("nan"))) for r in train] for g in REGIONS},
        region_entropy={g: [float(r.get(f"rest/entropy/{g}", float("nan"))) for r in train] for g in REGIONS},
        wall_s=wall,
    )


# ---------------------------------------------------------------------------------------------- summary
@dataclass
class PresetSummary:
    preset: str
    seeds: list[int]
    start: Interval
    end: Interval
    gain: Interval
    area: Interval
    threshold_steps: list[int | None]
    seconds_per_step: Interval
    extra_samples: float  # sampled sequences over the planned budget, minus 1 (DAPO's extra batches)
    tokens_per_step: Interval  # generated response tokens per training step
    wall_s: Interval  # whole run, start-up and validation included
    final_by_kind: dict[str, Interval]
    weight_first: dict[str, float]  # mean over seeds of rest/weight/<region> at step 1 / the last step
    weight_last: dict[str, float]
    entropy_first: dict[str, float]
    entropy_last: dict[str, float]
    curve_steps: list[int]
    curve: list[Interval]


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def summarise(runs: list[RunResult], threshold: float) -> PresetSummary:
    """Across seeds of one preset. Seconds per step: each run's median over its steps after the first (warm-up;
    all steps for a one-step run), then the interval over seeds."""
    steps = runs[0].val_steps
    if any(r.val_steps != steps for r in runs):
        raise ValueError(f"{runs[0].preset}: seeds validated at different steps: {[r.val_steps for r in runs]}")
    ems = [r.exact_match for r in runs]
    kinds = [k for k in KINDS if all(k in r.final_by_kind for r in runs)]
    return PresetSummary(
        preset=runs[0].preset, seeds=[r.seed for r in runs],
        start=t_interval([e[0] for e in ems]), end=t_interval([e[-1] for e in ems]),
        gain=t_interval([e[-1] - e[0] for e in ems]),
        area=t_interval([curve_area(steps, e) for e in ems]),
        threshold_steps=[steps_to_threshold(steps, e, threshold) for e in ems],
        seconds_per_step=t_interval([median(r.step_seconds[1:] or r.step_seconds) for r in runs]),
        extra_samples=sum(r.sampled_sequences for r in runs) / max(1, sum(r.planned_sequences for r in runs)) - 1,
        tokens_per_step=t_interval([r.sampled_tokens / max(1, len(r.step_seconds)) for r in runs]),
        wall_s=t_interval([r.wall_s for r in runs if not math.isnan(r.wall_s)]),
        final_by_kind={k: t_interval([r.final_by_kind[k] for r in runs]) for k in kinds},
        weight_first={g: _nanmean(r.region_weight[g][0] for r in runs) for g in REGIONS},
        weight_last={g: _nanmean(r.region_weight[g][-1] for r in runs) for g in REGIONS},
        entropy_first={g: _nanmean(r.region_entropy[g][0] for r in runs) for g in REGIONS},
        entropy_last={g: _nanmean(r.region_entropy[g][-1] for r in runs) for g in REGIONS},
        curve_steps=steps, curve=[t_interval([e[i] for e in ems]) for i in range(len(steps))],
    )


def ranking(summaries: list[PresetSummary]) -> list[PresetSummary]:
    """Best first by mean final exact match, ties broken by the area under the curve."""
    return sorted(summaries, key=lambda s: (-s.end.mean, -s.area.mean))


# ---------------------------------------------------------------------------------------------- report
def _threshold_cell(steps: list[int | None]) -> str:
    reached = [s for s in steps if s is not None]
    if not reached:
        return f"0/{len(steps)}"
    return f"{len(reached)}/{len(steps)}, median {median(reached):g}"


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def interpretation(ranked: list[PresetSummary]) -> str:
    """Plain statements read off the numbers: the ranking, whether a ResT form wins, where its weights went."""
    lines = ["Ranking by mean final exact match (ties by area under the curve): "
             + ", ".join(f"{i + 1}. {s.preset} {s.end.mean:.3f}" for i, s in enumerate(ranked)) + "."]
    best = ranked[0]
    rest = [s for s in ranked if s.preset.startswith("rest")]
    if rest:
        top_rest = rest[0]
        if top_rest is best:
            runner = ranked[1] if len(ranked) > 1 else None
            text = f"A ResT form ({best.preset}) ranks first"
            if runner is not None and not math.isnan(best.end.low):
                text += (f"; its 95% interval overlaps {runner.preset}'s: this size does not separate them"
                         if runner.end.high >= best.end.low else f"; its 95% interval lies above {runner.preset}'s")
            lines.append(text + ".")
        else:
            overlap = not math.isnan(best.end.low) and top_rest.end.high >= best.end.low
            lines.append(f"ResT does not win: its best form, {top_rest.preset}, ranks "
                         f"{ranked.index(top_rest) + 1} of {len(ranked)}, {best.end.mean - top_rest.end.mean:.3f} "
                         f"below {best.preset}" + (" (95% intervals overlap)." if overlap else "."))
    for s in rest:
        if all(math.isnan(v) for v in s.weight_first.values()):
            continue
        w = {g: v for g, v in s.weight_first.items() if not math.isnan(v) and v > 0}
        if not w:
            continue
        hi, lo = max(w, key=w.get), min(w, key=w.get)
        ent = s.entropy_first
        lines.append(
            f"{s.preset} at step 1: most weight on {hi} ({w[hi]:.2f}, old entropy {_fmt(ent[hi])} nats), least on "
            f"{lo} ({w[lo]:.2f}, entropy {_fmt(ent[lo])}); params {_fmt(s.weight_first['params'])} -> "
            f"{_fmt(s.weight_last['params'])} by the last step.")
    return "\n".join(f"- {line}" for line in lines)


def render_report(summaries: list[PresetSummary], sizes: dict, threshold: float, command: str,
                  plot_ref: str | None = None, notes: str | None = None, failed: list[str] = ()) -> str:
    ranked = ranking(summaries)
    n_seeds = max(len(s.seeds) for s in summaries)
    ci = (f"95% Student-t interval over {n_seeds} seeds (t_0.975,{n_seeds - 1} = {T975[n_seeds - 2]:.3f})"
          if n_seeds >= 2 else "one seed: no interval")
    main = table(
        ["preset", "EM step 0", "EM end", "gain (end - 0)", "area under curve", f"steps to EM >= {threshold:.3f}",
         "s / step", "tokens / step", "extra samples"],
        [[s.preset, s.start.cell(), s.end.cell(), s.gain.cell(), s.area.cell(), _threshold_cell(s.threshold_steps),
          s.seconds_per_step.cell(1), f"{s.tokens_per_step.mean:,.0f}", f"{100 * s.extra_samples:+.0f}%"]
         for s in ranked])
    seeds = table(["preset", "seeds", "EM step 0", "EM end", "gain", "area", "run wall s"],
                  [[s.preset, " ".join(map(str, s.seeds)), s.start.seeds_cell(), s.end.seeds_cell(),
                    s.gain.seeds_cell(), s.area.seeds_cell(), s.wall_s.seeds_cell(0)] for s in ranked])
    kinds = [k for k in KINDS if any(k in s.final_by_kind for s in summaries)]
    by_kind = table(["preset", *[f"EM end, {k}" for k in kinds]],
                    [[s.preset, *[s.final_by_kind[k].cell() if k in s.final_by_kind else "-" for k in kinds]]
                     for s in ranked]) if kinds else "_(no per-kind keys logged)_"
    regions = table(
        ["preset", *[f"w {g} (1 -> end)" for g in REGIONS[:4]], *[f"H {g} (1 -> end)" for g in REGIONS[:4]]],
        [[s.preset, *[f"{_fmt(s.weight_first[g])} -> {_fmt(s.weight_last[g])}" for g in REGIONS[:4]],
          *[f"{_fmt(s.entropy_first[g])} -> {_fmt(s.entropy_last[g])}" for g in REGIONS[:4]]] for s in ranked])
    size_line = ", ".join(f"{k} {v}" for k, v in sizes.items())
    parts = [
        "# Ablation: ResT's weight forms against GRPO, Dr.GRPO and DAPO",
        "",
        f"_{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; {machine_line()}._",
        f"_Command: `{command}`._",
        "",
        f"Sizes (the same for every preset): {size_line}. Greedy validation on the same held-out items; metric "
        f"`{EM_KEY}`. Cells: mean [{ci}]; per-seed values in the second table. Area under the curve: trapezoid "
        f"over the validated steps divided by the step range (the curve's mean level). Threshold: step-0 mean "
        f"exact match + the --threshold-gain; 'k/N' runs reached it. s / step: median `timing_s/step` after "
        f"the warm-up step (validation not included). Tokens / step: generated response tokens per training "
        f"step (mean over seeds; DAPO's dropped batches counted at the kept batch's mean length, an estimate). "
        f"Extra samples: responses generated beyond steps x P x n (DAPO's dynamic-sampling retries).",
        "",
        "## Results",
        "",
        *([f"**Failed runs (left out):** {', '.join(failed)}.", ""] if failed else []),
        main,
        "",
        "### Per seed",
        "",
        seeds,
        "",
        "### Final exact match by item kind",
        "",
        by_kind,
        "",
        "### What the weights did (mean over seeds of `rest/weight/<region>` and `rest/entropy/<region>`)",
        "",
        "Step 1 and the last step. Unweighted presets report weight 1; entropy is logged only where the "
        "old-policy forward runs before the update (the entropy forms; a baseline with a fused old log-prob "
        "reports none).",
        "",
        regions,
        "",
        "## Reading",
        "",
        interpretation(ranked),
    ]
    if plot_ref is not None:
        parts += ["", f"![exact match over steps, and the region weights at step 1]({plot_ref})"]
    parts += ["", notes or "<!-- begin:notes -->\n<!-- end:notes -->"]
    return "\n".join(parts) + "\n"


def plot(summaries: list[PresetSummary], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {p: f"C{i}" for i, p in enumerate(PRESETS)}
    fig, (ax, ax_w) = plt.subplots(1, 2, figsize=(14, 4.8))
    for s in ranking(summaries):
        ax.plot(s.curve_steps, [c.mean for c in s.curve], marker="o", color=colors[s.preset],
                label=f"{s.preset} (n={len(s.seeds)})")
        if len(s.seeds) > 1:
            ax.fill_between(s.curve_steps, [c.low for c in s.curve], [c.high for c in s.curve],
                            color=colors[s.preset], alpha=0.15)
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out exact match")
    ax.set_title("exact match: mean over seeds, 95% t-interval bands")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    weighted = [s for s in summaries  # unweighted presets log weight 1 everywhere: not drawn
                if any(not math.isnan(v) and abs(v - 1.0) > 1e-6 for v in s.weight_first.values())]
    width = 0.8 / max(1, len(weighted))
    for i, s in enumerate(weighted):
        xs = [j + i * width for j in range(4)]
        ax_w.bar(xs, [s.weight_first[g] for g in REGIONS[:4]], width, label=s.preset, color=colors[s.preset])
    ax_w.set_xticks([j + 0.4 - width / 2 for j in range(4)], REGIONS[:4])
    ax_w.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax_w.set_ylabel("mean token weight at step 1")
    ax_w.set_title("region weights at step 1 (1 = unweighted)")
    if weighted:
        ax_w.legend(fontsize=8)
    else:
        ax_w.text(0.5, 0.5, "no weighted preset", ha="center", transform=ax_w.transAxes)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- running
@dataclass
class Sizes:
    prompts: int = 4
    n: int = 8
    steps: int = 12
    test_freq: int = 4
    val_size: int = 256
    dapo_max_tries: int = 3


@dataclass
class Defaults:
    """What the runs take from the default config (with the user's extra overrides)."""

    embedded: bool  # data.source is the embedded task (its held-out split is sized by data.embedded_val_size)
    num_workers: int  # actor ranks
    micro_batch: int  # actor.ppo_micro_batch_size


def default_config(extra: list[str]) -> Defaults:
    from rest.config.load import load_config

    cfg = load_config(extra)
    return Defaults(cfg.data.source == "embedded", cfg.actor.num_workers, cfg.actor.ppo_micro_batch_size)


def run_overrides(preset: str, seed: int, sizes: Sizes, defaults: Defaults, extra: list[str]) -> list[str]:
    """The overrides of one run: the preset's, then the shared sizes (one optimizer step per training step,
    so every preset updates exactly on-policy; the micro-batch shrunk to divide a rank's share if needed),
    then the seed, then the user's extras."""
    micro = math.gcd(sizes.prompts * sizes.n // defaults.num_workers, defaults.micro_batch)
    out = [*PRESETS[preset],
           f"data.train_batch_size={sizes.prompts}", f"rollout.n={sizes.n}",
           f"actor.ppo_mini_batch_size={sizes.prompts}", f"actor.ppo_micro_batch_size={micro}",
           f"actor.logprob_micro_batch_size={micro}", f"trainer.total_steps={sizes.steps}",
           f"trainer.test_freq={sizes.test_freq}", "trainer.val_before_train=true",
           "validation.benchmarks=[task]", f"validation.limit={sizes.val_size}",
           f"trainer.seed={seed}", f"trainer.experiment_name=ablation_{preset}_seed{seed}"]
    if defaults.embedded:
        out.append(f"data.embedded_val_size={sizes.val_size}")
    if preset == "dapo":
        out.append(f"algorithm.dynamic_sampling.max_tries={sizes.dapo_max_tries}")
    return out + extra


def run_is_complete(run_dir: Path, overrides: list[str], steps: int) -> bool:
    """The run finished with these same overrides (its record is written only after a successful run)."""
    record, metrics = run_dir / RUN_RECORD, run_dir / "metrics.jsonl"
    if not (record.exists() and metrics.exists()):
        return False
    if json.loads(record.read_text()).get("overrides") != overrides:
        return False
    logged = {json.loads(line)["step"] for line in metrics.read_text().splitlines() if line.strip()}
    return steps in logged


def run_all(presets: list[str], seeds: list[int], sizes: Sizes, root: Path, extra: list[str]) -> list[str]:
    """Run every (preset, seed) not yet complete, one after the other; -> the runs that failed (a failed run
    is reported and the others go on)."""
    defaults = default_config(extra)
    jobs = [(p, s) for p in presets for s in seeds]
    failed = []
    for i, (preset, seed) in enumerate(jobs, 1):
        run_dir = root / preset / f"seed{seed}"
        overrides = run_overrides(preset, seed, sizes, defaults, extra)
        head = f"[{i}/{len(jobs)}] {preset} seed {seed}:"
        if run_is_complete(run_dir, overrides, sizes.steps):
            print(f"{head} complete, skipped", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            run_rest(overrides, run_dir)
        except (RuntimeError, OSError) as error:
            print(f"{head} FAILED after {time.perf_counter() - t0:.0f} s: {error}", flush=True)
            failed.append(f"{preset} seed {seed}")
            continue
        wall = time.perf_counter() - t0
        (run_dir / RUN_RECORD).write_text(json.dumps({"overrides": overrides, "wall_s": wall}, indent=1))
        result = read_run(run_dir, preset, seed, sizes.prompts, sizes.n)
        print(f"{head} {wall:.0f} s, exact match {result.exact_match[0]:.3f} -> {result.exact_match[-1]:.3f} "
              f"(steps {result.val_steps}), {median(result.step_seconds):.1f} s/step", flush=True)
    return failed


def collect(presets: list[str], seeds: list[int], sizes: Sizes, root: Path, extra: list[str]
            ) -> dict[str, list[RunResult]]:
    """The complete runs of these sizes (a partial or differently sized run in the same dir is left out)."""
    defaults = default_config(extra)
    out: dict[str, list[RunResult]] = {}
    for preset in presets:
        runs = [read_run(root / preset / f"seed{s}", preset, s, sizes.prompts, sizes.n) for s in seeds
                if run_is_complete(root / preset / f"seed{s}", run_overrides(preset, s, sizes, defaults, extra),
                                   sizes.steps)]
        if runs:
            out[preset] = runs
    return out


def write_report(results: dict[str, list[RunResult]], sizes: Sizes, threshold_gain: float, command: str,
                 report_path: Path, plot_path: Path, failed: list[str] | None = None) -> list[PresetSummary]:
    """Summaries, the markdown report (keeping an existing notes block) and the plot."""
    if not results:
        raise RuntimeError("no finished runs to report")
    start = [r.exact_match[0] for runs in results.values() for r in runs]
    threshold = sum(start) / len(start) + threshold_gain
    summaries = [summarise(runs, threshold) for runs in results.values()]
    plot(summaries, plot_path)
    old = report_path.read_text() if report_path.exists() else ""
    notes = NOTES.search(old)
    plot_ref = os.path.relpath(plot_path.resolve(), report_path.resolve().parent)
    text = render_report(summaries, {**asdict(sizes), "seeds": max(len(r) for r in results.values())}, threshold,
                         command, plot_ref, notes.group(0) if notes else None, failed or [])
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(text)
    print(text)
    print(f"wrote {report_path} and {plot_path}")
    return summaries


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    d = Sizes()
    p.add_argument("--prompts", type=int, default=d.prompts, help="prompts per step (P)")
    p.add_argument("--n", type=int, default=d.n, help="samples per prompt")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--test-freq", type=int, default=d.test_freq, help="validate every k steps (and at 0, end)")
    p.add_argument("--val-size", type=int, default=d.val_size, help="held-out items, greedy")
    p.add_argument("--dapo-max-tries", type=int, default=d.dapo_max_tries,
                   help="cap on DAPO's dynamic-sampling batches per step (its extra samples are reported)")
    p.add_argument("--threshold-gain", type=float, default=0.05,
                   help="steps-to-threshold: threshold = mean step-0 exact match + this")
    p.add_argument("--out", type=Path, default=None, help="run root (default bench/out/ablation[-quick])")
    p.add_argument("--report", type=Path, default=None, help="default bench/ABLATION.md (quick: bench/out/)")
    p.add_argument("--plot", type=Path, default=None, help="default bench/plots/ablation.png (quick: bench/out/)")
    p.add_argument("--report-only", action="store_true", help="re-render from the run dirs, run nothing")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 preset x 1 seed x 1 step, 16 val items")
    args = p.parse_args(argv)
    if args.quick:
        if "--presets" not in argv:
            args.presets = ["rest_entropy"]
        if "--seeds" not in argv:
            args.seeds = [1]
        args.prompts, args.n, args.steps, args.test_freq, args.val_size = 2, 4, 1, 1, 16
    args.out = args.out or OUT / ("ablation-quick" if args.quick else "ablation")
    args.report = args.report or (OUT / "ABLATION-quick.md" if args.quick else REPORT)
    args.plot = args.plot or (OUT / "plots" / "ablation-quick.png" if args.quick else PLOT)
    return args, extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    sizes = Sizes(args.prompts, args.n, args.steps, args.test_freq, args.val_size, args.dapo_max_tries)
    failed = [] if args.report_only else run_all(args.presets, args.seeds, sizes, args.out, extra)
    command = "python bench/ablation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        results = collect(args.presets, args.seeds, sizes, args.out, extra)
        write_report(results, sizes, args.threshold_gain, command.strip(), args.report, args.plot, failed)
    except (MissingMetricError, RuntimeError) as error:
        print(f"ablation: {error}", file=sys.stderr)
        return 2
    if failed:
        print(f"failed runs: {', '.join(failed)} (see their .log beside the run dirs)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
