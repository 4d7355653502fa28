"""Scaling: step time and tokens/s as prompts per step (P) and rollouts per prompt (n) grow.

Not a test. Each point is one `python -m rest.main` run of the default config (ResT, tiny-qwen3-toolsft,
2 FSDP2 ranks + 1 vLLM rollout actor) with data.train_batch_size = P, rollout.n = n, actor.ppo_mini_batch_size = P
(one optimizer step per batch) and fixed micro-batch sizes, for --steps steps; the first step is dropped as
warm-up (vLLM and the allocator warm up there) and the rest are summarised by their medians. Two sweeps:
P over --prompts at n = --fixed-n, and n over --rollouts at P = --fixed-prompts (a point both sweeps share is
run once). Each run starts its own Ray cluster, which is not in the step times.

Reports per point: sequences per step (P x n), median step time and its phases (generation, old log-prob,
actor update, weight sync), total tokens/s (perf/tokens_per_s: prompt + response tokens of the batch over the
step time), generated tokens/s (response tokens / step time) and step time per sequence; fits
step_s = a + b x sequences over all points; plots bench/plots/scaling.png.

Usage: python bench/scaling.py [--prompts 4 8 16] [--rollouts 2 4 8] [--steps 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from functools import reduce
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PLOTS, ROOT, linear_fit, median, run_rest, table, write_section  # noqa: E402

OUT = ROOT / "bench" / "out"
PHASES = [("gen", "timing_s/gen"), ("old_log_prob", "timing_s/old_log_prob"),
          ("update", "timing_s/update_actor"), ("sync", "timing_s/sync")]
NUM_RANKS = 2  # actor.num_workers of the default config


def micro_batch(points: list[tuple[int, int]], cap: int) -> int:
    """The largest micro-batch <= cap that divides every point's per-rank mini-batch (P x n / ranks), so the
    same micro-batch size is used across the whole grid."""
    per_rank = [p * n // NUM_RANKS for p, n in points]
    g = reduce(math.gcd, per_rank)
    return max(d for d in range(1, min(cap, g) + 1) if g % d == 0)


def run_point(p: int, n: int, steps: int, micro: int, run_root: Path, extra: list[str]) -> dict:
    overrides = [f"data.train_batch_size={p}", f"rollout.n={n}", f"actor.ppo_mini_batch_size={p}",
                 f"actor.ppo_micro_batch_size={micro}", f"actor.logprob_micro_batch_size={micro}",
                 f"trainer.total_steps={steps}", f"trainer.experiment_name=scaling_P{p}_n{n}", *extra]
    t0 = time.perf_counter()
    rows = run_rest(overrides, run_root / f"P{p}_n{n}")
    wall = time.perf_counter() - t0
    kept = rows[1:] if len(rows) > 1 else rows  # step 1 is warm-up
    seqs = p * n
    step = median(r["timing_s/step"] for r in kept)
    gen_tokens = median(r["response_length/mean"] * seqs for r in kept)
    point = {
        "P": p, "n": n, "sequences": seqs, "steps_logged": len(rows), "steps_used": len(kept),
        "step_s": step, **{name: median(r.get(key, float("nan")) for r in kept) for name, key in PHASES},
        "tokens": median(r["perf/tokens"] for r in kept), "tokens_per_s": median(r["perf/tokens_per_s"] for r in kept),
        "response_tokens": gen_tokens,
        "gen_tokens_per_s": median(r["response_length/mean"] * seqs / r["timing_s/step"] for r in kept),
        "response_length_mean": median(r["response_length/mean"] for r in kept),
        "s_per_sequence": step / seqs, "run_wall_s": wall, "overrides": overrides,
        "raw_steps": [{k: v for k, v in r.items() if k.startswith(("timing_s/", "perf/", "response_length/")) or k == "step"}
                      for r in rows],
    }
    point["other"] = point["step_s"] - sum(point[name] for name, _ in PHASES)
    return point


def plot(points: list[dict], sweeps: dict, fit: tuple[float, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax_t, ax_r, ax_b = axes
    styles = {"P": ("tab:blue", "o"), "n": ("tab:orange", "s")}
    for key, (label, members) in sweeps.items():
        color, marker = styles[key]
        pts = sorted((pt for pt in points if (pt["P"], pt["n"]) in members), key=lambda pt: pt["sequences"])
        xs = [pt["sequences"] for pt in pts]
        ax_t.plot(xs, [pt["step_s"] for pt in pts], marker=marker, color=color, label=label)
        ax_r.plot(xs, [pt["tokens_per_s"] for pt in pts], marker=marker, color=color, label=f"{label}: all tokens")
        ax_r.plot(xs, [pt["gen_tokens_per_s"] for pt in pts], marker=marker, color=color, linestyle="--",
                  label=f"{label}: generated tokens")
    a, b = fit
    xmax = max(pt["sequences"] for pt in points)
    ax_t.plot([0, xmax], [a, a + b * xmax], color="grey", linestyle=":", label=f"fit {a:.2f} s + {b * 1000:.1f} ms x seq")
    ax_t.set(xlabel="sequences per step (P x n)", ylabel="median step time (s)", title="Step time", xlim=(0, None),
             ylim=(0, None))
    ax_r.set(xlabel="sequences per step (P x n)", ylabel="tokens / s", title="Throughput", xlim=(0, None), ylim=(0, None))
    for ax in (ax_t, ax_r):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    order = sorted(points, key=lambda pt: (pt["sequences"], pt["P"]))
    labels = [f"P{pt['P']} n{pt['n']}\n{pt['sequences']} seq" for pt in order]
    bottom = [0.0] * len(order)
    for name in [name for name, _ in PHASES] + ["other"]:
        vals = [max(pt[name], 0.0) if not math.isnan(pt[name]) else 0.0 for pt in order]
        ax_b.bar(range(len(order)), vals, bottom=bottom, label=name)
        bottom = [x + v for x, v in zip(bottom, vals)]
    ax_b.set_xticks(range(len(order)), labels, fontsize=8)
    ax_b.set(ylabel="median seconds", title="Phases of a step")
    ax_b.legend(fontsize=8)
    ax_b.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


HEADERS = ["P", "n", "seq/step", "step s", "gen s", "old_log_prob s", "update s", "sync s", "other s",
           "tokens/s (all)", "gen tokens/s", "resp len", "ms/seq"]


def row(pt: dict) -> list:
    return [pt["P"], pt["n"], pt["sequences"], pt["step_s"], pt["gen"], pt["old_log_prob"], pt["update"], pt["sync"],
            pt["other"], pt["tokens_per_s"], pt["gen_tokens_per_s"], pt["response_length_mean"],
            pt["s_per_sequence"] * 1000]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, nargs="+", default=[4, 8, 16], help="P values of the prompt sweep")
    ap.add_argument("--fixed-n", type=int, default=4, help="rollouts per prompt during the prompt sweep")
    ap.add_argument("--rollouts", type=int, nargs="+", default=[2, 4, 8], help="n values of the rollout sweep")
    ap.add_argument("--fixed-prompts", type=int, default=8, help="prompts per step during the rollout sweep")
    ap.add_argument("--steps", type=int, default=4, help="steps per run; the first is dropped as warm-up")
    ap.add_argument("--micro", type=int, default=8, help="cap on the (fixed) micro-batch size per rank")
    ap.add_argument("--quick", action="store_true", help="P in {2, 4} at n = 2, n in {2, 4} at P = 2, 2 steps")
    ap.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.fixed_n, args.rollouts, args.fixed_prompts, args.steps = [2, 4], 2, [2, 4], 2, 2

    sweeps = {"P": (f"prompts P (n = {args.fixed_n})", [(p, args.fixed_n) for p in args.prompts]),
              "n": (f"rollouts n (P = {args.fixed_prompts})", [(args.fixed_prompts, n) for n in args.rollouts])}
    grid = list(dict.fromkeys(sweeps["P"][1] + sweeps["n"][1]))
    micro = micro_batch(grid, args.micro)
    suffix = "-quick" if args.quick else ""
    run_root = ROOT / "runs" / f"bench_scaling{suffix}"
    print(f"{len(grid)} runs: {grid}; {args.steps} steps each (step 1 dropped); micro-batch {micro} per rank")
    print(" ".join(f"{h:>8}" for h in ["P", "n", "seq", "step s", "gen s", "logp s", "update s", "sync s",
                                        "tok/s", "gen tok/s", "ms/seq", "run s"]), flush=True)
    points, failed = [], []
    for p, n in grid:
        try:
            pt = run_point(p, n, args.steps, micro, run_root, args.override)
        except Exception as error:  # noqa: BLE001 - one failed point should not lose the others
            print(f"P={p} n={n} failed: {str(error)[-1500:]}", flush=True)
            failed.append({"P": p, "n": n, "error": str(error)[-3000:]})
            continue
        points.append(pt)
        print(" ".join(f"{v:>8.3g}" if isinstance(v, float) else f"{v:>8}" for v in
                       [p, n, pt["sequences"], pt["step_s"], pt["gen"], pt["old_log_prob"], pt["update"], pt["sync"],
                        pt["tokens_per_s"], pt["gen_tokens_per_s"], pt["s_per_sequence"] * 1000, pt["run_wall_s"]]),
              flush=True)
    if len(points) < 2:
        raise SystemExit(f"only {len(points)} point(s) ran; nothing to fit")

    fit = linear_fit([pt["sequences"] for pt in points], [pt["step_s"] for pt in points])
    phase_fits = {name: linear_fit([pt["sequences"] for pt in points], [pt[name] for pt in points])
                  for name in [name for name, _ in PHASES] + ["other"]}
    a, b = fit
    print(f"\nfit over {len(points)} points: step_s = {a:.3f} s + {b * 1000:.2f} ms x sequences")
    for name, (pa, pb) in phase_fits.items():
        print(f"  {name:>12}: {pa:.3f} s + {pb * 1000:.2f} ms x sequences")
    tables = {}
    for key, (label, members) in sweeps.items():
        pts = [pt for pt in points if (pt["P"], pt["n"]) in members]
        tables[key] = table(HEADERS, [row(pt) for pt in pts])
        print(f"\n{label}\n{tables[key]}")

    OUT.mkdir(parents=True, exist_ok=True)
    raw = {"grid": grid, "steps": args.steps, "micro_batch": micro, "fit": {"a_s": a, "b_s_per_sequence": b},
           "phase_fits": {k: {"a_s": v[0], "b_s_per_sequence": v[1]} for k, v in phase_fits.items()},
           "points": points, "failed": failed}
    (OUT / f"scaling{suffix}.json").write_text(json.dumps(raw, indent=1))
    print(f"wrote {OUT / f'scaling{suffix}.json'}")
    plot_dir = PLOTS if not args.quick else OUT / "plots"  # the section's link `plots/scaling.png` is relative
    plot(points, sweeps, fit, plot_dir / "scaling.png")

    biggest = max(points, key=lambda pt: pt["sequences"])
    smallest = min(points, key=lambda pt: pt["sequences"])
    fixed_share = a / biggest["step_s"] if biggest["step_s"] else float("nan")
    ys = [pt["step_s"] for pt in points]
    pred = [a + b * pt["sequences"] for pt in points]
    ss_tot = sum((y - sum(ys) / len(ys)) ** 2 for y in ys)
    r2 = 1 - sum((y - q) ** 2 for y, q in zip(ys, pred)) / ss_tot if ss_tot else float("nan")
    sweep_fits = {}
    for key, (label, members) in sweeps.items():
        pts = [pt for pt in points if (pt["P"], pt["n"]) in members]
        if len(pts) >= 2:
            sweep_fits[key] = (label, linear_fit([pt["sequences"] for pt in pts], [pt["step_s"] for pt in pts]))
    for key, (label, (sa, sb)) in sweep_fits.items():
        print(f"  sweep {label}: step_s = {sa:.3f} s + {sb * 1000:.2f} ms x sequences")
    print(f"  R^2 of the all-points fit: {r2:.3f}")
    growth = ", ".join(f"{name} {pb * 1000:.1f}" for name, (pa, pb) in phase_fits.items())
    per_sweep = "; ".join(f"{label}: {sa:.2f} s + {sb * 1000:.1f} ms x sequences" for label, (sa, sb) in sweep_fits.values())
    trend = ("rises with the batch as the fixed part is amortised" if biggest["tokens_per_s"] > smallest["tokens_per_s"]
             else "does not rise with the batch")
    body = "\n\n".join([
        "Default config (ResT, `tiny-qwen3-toolsft`, 2 FSDP2 ranks over gloo + 1 vLLM rollout actor, max response "
        f"64 tokens), `actor.ppo_mini_batch_size` = P (one optimizer step per batch), micro-batch {micro} sequences "
        f"per rank for the forward/backward and the log-prob pass at every point. {args.steps} steps per run, step 1 "
        "dropped as warm-up, medians of the rest; each point is a separate run with its own Ray cluster (start-up "
        "not included). *tokens/s (all)* = prompt + response tokens of the batch over the step time "
        "(`perf/tokens_per_s`); *gen tokens/s* = generated (response) tokens over the step time; *other* = step "
        "time not in the four phases (reward, advantages, bookkeeping; a difference of medians, so it can dip "
        "below 0). Response lengths are sampled, so they differ a little between points.",
        f"### Prompts per step P (n = {args.fixed_n})\n\n" + tables["P"],
        f"### Rollouts per prompt n (P = {args.fixed_prompts})\n\n" + tables["n"],
        "![scaling](plots/scaling.png)",
        f"**How cost grows.** Over all {len(points)} points a least-squares line gives step_s = {a:.2f} s + "
        f"{b * 1000:.1f} ms x sequences (R^2 = {r2:.2f}): a fixed cost per step of about {a:.1f} s "
        f"({fixed_share:.0%} of the {biggest['sequences']}-sequence step) plus a cost per sequence. Per sweep: "
        f"{per_sweep}. Throughput {trend} "
        f"({smallest['tokens_per_s']:,.0f} tokens/s at {smallest['sequences']} sequences, "
        f"{biggest['tokens_per_s']:,.0f} at {biggest['sequences']}). Per-phase slopes (ms per sequence): {growth}.",
    ] + ([f"Failed points: {', '.join('P=%d n=%d' % (f['P'], f['n']) for f in failed)} "
          f"(see bench/out/scaling{suffix}.json)."] if failed else []))
    write_section("scaling", "Scaling with prompts per step and rollouts per prompt", body)


if __name__ == "__main__":
    main()
