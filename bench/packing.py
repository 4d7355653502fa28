"""Padding removal and rank-0 loading on CPU: update step time and tokens/s padded vs packed, and host RAM at
actor init with and without rank-0 loading.

Not a test. Two measurements, side by side in one run:

1. Step time. One actor update over --sequences sequences of a ToolRL-like length mix (prompt lengths uniform
   in [200, 1500], response lengths uniform in [20, 600], random token ids, one fixed draw), run the way
   `FSDPActorWorker.update_policy` runs a mini-batch on one rank (`rest.workers.fsdp_engine.PolicyScorer` forward,
   `rest.algo.objective.policy_loss` over the global denominator, backward per micro-batch, then AdamW),
   without FSDP (one process):
     padded  today's path: --micro-batch consecutive sequences per micro-batch, padded to their longest prompt
             and longest response (sdpa with the padding mask);
     packed  actor.use_remove_padding=true with actor.max_tokens_per_micro_batch=--max-tokens: token-budget
             micro-batches, each packed into one row (per-sequence causal SDPA, `rest.workers.packing`).
   tokens/s counts real tokens (prompt + response, no padding); (--warmup 1: one untimed step per path, then) --repeats
   alternating timed steps, median.
   The log-probs of the two paths are compared too (max |diff| over response tokens).

2. Init RAM. Two processes in a gloo group build the FSDP2-sharded model the way `init_model` does (per-layer
   `fully_shard` plus the root), either every rank from the checkpoint, or with rank-0 loading
   (`rest.workers.model_loading`); each rank reports its peak RSS (VmHWM) and its RSS before the build (after
   importing torch/transformers and joining the group). Model: --model (fp32).

Usage: python bench/packing.py [--model smollm2-135m-instruct] [--sequences 8] [--micro-batch 4]
                               [--max-tokens 4096] [--repeats 2] [--threads 2] [--no-gradient-checkpointing]
                               [--skip-init] [--quick]
       python bench/packing.py --precision [--precision-sequences 4]   # section "packing-precision"
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, median, reexec_with_allocator_env, table, write_section  # noqa: E402

if __name__ == "__main__":
    reexec_with_allocator_env()

OUT = ROOT / "bench" / "out"
PROMPT_RANGE, RESPONSE_RANGE = (200, 1500), (20, 600)


# ------------------------------------------------------------------ 1. update step, padded vs packed
def length_mix(sequences: int, seed: int, prompt_range=PROMPT_RANGE, response_range=RESPONSE_RANGE):
    import random

    rng = random.Random(seed)
    return [(rng.randint(*prompt_range), rng.randint(*response_range)) for _ in range(sequences)]


def make_batch(lengths, vocab: int, seed: int):
    import torch

    from rest.trainer.batch import build_batch

    g = torch.Generator().manual_seed(seed)
    ids = lambda n: torch.randint(5, vocab, (n,), generator=g).tolist()  # noqa: E731
    batch = build_batch([ids(p) for p, _ in lengths], [ids(r) for _, r in lengths],
                        [[0.0] * r for _, r in lengths], pad_id=0)
    mask = batch["response_mask"]
    batch["advantages"] = torch.randn(mask.shape[0], 1, generator=g) * mask
    batch["old_log_prob"] = -torch.rand(mask.shape, generator=g) * mask
    return batch


def update_step(scorer, optimizer, batch, parts, algo) -> tuple[float, "torch.Tensor"]:
    import torch

    from rest.algo import objective

    start = time.perf_counter()
    denominator = objective.loss_denominator(batch["response_mask"], None, algo)
    optimizer.zero_grad(set_to_none=True)
    logprobs = torch.zeros(batch["response_mask"].shape)
    for index in parts:
        index = torch.tensor(index)
        micro = batch[index]
        logprob, _ = scorer(micro["input_ids"], micro["attention_mask"], micro["position_ids"], micro["responses"],
                            micro["response_mask"], 1.0)
        loss, _ = objective.policy_loss(logprob, micro["old_log_prob"], micro["advantages"], micro["response_mask"],
                                        None, algo, denominator=denominator)
        loss.backward()
        logprobs[index] = logprob.detach()
    optimizer.step()
    return time.perf_counter() - start, logprobs


def measure_step(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from rest.algo.config import AlgorithmConfig
    from rest.models.cache import resolve_model_path
    from rest.workers.fsdp_engine import PolicyScorer
    from rest.workers.packing import fixed_size_partition, micro_batch_indices, packed_attn_implementation

    torch.set_num_threads(args.threads)
    path = resolve_model_path(args.model)
    ranges = ((20, 150), (5, 60)) if args.quick else (PROMPT_RANGE, RESPONSE_RANGE)
    lengths = length_mix(args.sequences, args.seed, *ranges)
    algo = AlgorithmConfig()
    paths = {}
    for name, remove_padding in (("padded", False), ("packed", True)):
        attn = packed_attn_implementation("sdpa") if remove_padding else "sdpa"
        torch.manual_seed(0)
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn)
        if args.gradient_checkpointing:  # model.gradient_checkpointing=true (HF applies it in train mode only)
            lm.gradient_checkpointing_enable()
        scorer = PolicyScorer(lm, chunk_size=1024, remove_padding=remove_padding).train()
        # lr 0: every step runs the same weights, so the two paths' log-probs stay comparable
        optimizer = torch.optim.AdamW(scorer.parameters(), lr=0.0)
        paths[name] = (scorer, optimizer)
    batch = make_batch(lengths, paths["padded"][0].lm.config.vocab_size, args.seed)
    parts = {"padded": fixed_size_partition(len(lengths), args.micro_batch),
             "packed": micro_batch_indices(batch, args.max_tokens, args.micro_batch)}
    times = {"padded": [], "packed": []}
    logprobs = {}
    for name in ("padded", "packed")[: 2 if args.warmup else 0]:  # untimed: first-touch of buffers, AdamW state
        seconds, _ = update_step(*paths[name], batch, parts[name], algo)
        print(f"{name} (warm-up): {seconds:.1f} s", flush=True)
    for repeat in range(args.repeats):
        for name in (("padded", "packed") if repeat % 2 == 0 else ("packed", "padded")):
            seconds, logprobs[name] = update_step(*paths[name], batch, parts[name], algo)
            times[name].append(seconds)
            print(f"{name}: {seconds:.1f} s", flush=True)
    mask = batch["response_mask"].bool()
    tokens = int(batch["attention_mask"].sum())
    padded_cells = sum(len(p) * (max(lengths[i][0] for i in p) + max(lengths[i][1] for i in p))
                       for p in parts["padded"])
    return {
        "lengths": lengths, "tokens": tokens, "padded_cells": padded_cells,
        "micro_batches": {k: len(v) for k, v in parts.items()}, "times": times,
        "logprob_diff_max": float((logprobs["padded"] - logprobs["packed"]).abs()[mask].max()),
    }


# ------------------------------------------------------------------ 1b. where the fp32 packed/padded difference comes from
def score_paths(scorers, batch, groupings: dict) -> dict:
    """Log-probs [b, R] of `batch` scored micro-batch by micro-batch under each named grouping of its rows."""
    import torch

    out = {}
    for name, (scorer_key, parts) in groupings.items():
        logprobs = torch.zeros(batch["response_mask"].shape, dtype=torch.float64)
        for index in parts:
            micro = batch[torch.tensor(index)]
            with torch.no_grad():
                logprob, _ = scorers[scorer_key](micro["input_ids"], micro["attention_mask"], micro["position_ids"],
                                                 micro["responses"], micro["response_mask"], 1.0)
            logprobs[torch.tensor(index)] = logprob.double()
        out[name] = logprobs
    return out


def measure_precision(args) -> dict:
    """The same sequences scored in fp32 and fp64 along four paths: padded with 4 and with 2 sequences per
    micro-batch (more or less left padding), one sequence at a time (no padding at all), and packed into one row.
    The fp64 scores are the truth each fp32 path is measured against; in fp64 all paths must agree (the packing
    logic), and in fp32 the padded paths disagree with *each other* as much as with the packed one if the
    difference is reduction order, not packing."""
    import torch
    from transformers import AutoModelForCausalLM

    from rest.models.cache import resolve_model_path
    from rest.workers.fsdp_engine import PolicyScorer
    from rest.workers.packing import fixed_size_partition, packed_attn_implementation

    torch.set_num_threads(args.threads)
    path = resolve_model_path(args.model)
    ranges = ((20, 150), (5, 60)) if args.quick else (PROMPT_RANGE, RESPONSE_RANGE)
    lengths = length_mix(args.sequences, args.seed, *ranges)[: args.precision_sequences]
    rows = len(lengths)
    groupings = {"padded x4": ("padded", fixed_size_partition(rows, 4)),
                 "padded x2": ("padded", fixed_size_partition(rows, 2)),
                 "one at a time": ("padded", fixed_size_partition(rows, 1)),
                 "packed": ("packed", [list(range(rows))])}
    scores, batch = {}, None
    for dtype in (torch.float64, torch.float32):
        scorers = {}
        for key, attn in (("padded", "sdpa"), ("packed", packed_attn_implementation("sdpa"))):
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
            scorers[key] = PolicyScorer(lm, chunk_size=1024, remove_padding=key == "packed").eval()
        if batch is None:
            batch = make_batch(lengths, scorers["padded"].lm.config.vocab_size, args.seed)
        start = time.perf_counter()
        scores[str(dtype).removeprefix("torch.")] = score_paths(scorers, batch, groupings)
        print(f"{dtype}: {time.perf_counter() - start:.0f} s", flush=True)
        del scorers
    mask = batch["response_mask"].bool()
    truth = scores["float64"]["one at a time"]
    fp64 = {name: float((lp - truth).abs()[mask].max()) for name, lp in scores["float64"].items()}
    fp32 = scores["float32"]
    vs_truth = {name: float((lp - truth).abs()[mask].max()) for name, lp in fp32.items()}
    mean_vs_truth = {name: float((lp - truth).abs()[mask].mean()) for name, lp in fp32.items()}
    names = list(groupings)
    pairwise = {f"{a} vs {b}": float((fp32[a] - fp32[b]).abs()[mask].max())
                for i, a in enumerate(names) for b in names[i + 1:]}
    localized = localize_difference(args, lengths[:2])
    return {"lengths": lengths, "localized": localized, "tokens": int(batch["attention_mask"].sum()), "fp64_vs_truth": fp64,
            "fp32_vs_truth": vs_truth, "fp32_mean_vs_truth": mean_vs_truth, "fp32_pairwise": pairwise,
            "logprob_abs_mean": float(truth[mask].abs().mean())}


def localize_difference(args, lengths) -> list[list]:
    """Where the fp32 packed and padded forwards first differ: the outputs of layer 0's modules and of the last
    layer, per real token, max |diff| (padded rows mapped onto the packed row)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rest.models.cache import resolve_model_path
    from rest.workers.packing import pack_micro_batch, register_varlen_attention

    path = resolve_model_path(args.model)
    probes = {"rotary cos/sin": ("rotary_emb", "out0"), "layer 0 q_proj": ("layers.0.self_attn.q_proj", "out"),
              "layer 0 k_proj": ("layers.0.self_attn.k_proj", "out"), "layer 0 v_proj": ("layers.0.self_attn.v_proj", "out"),
              "layer 0 attention output (o_proj input)": ("layers.0.self_attn.o_proj", "in"),
              "layer 0 o_proj": ("layers.0.self_attn.o_proj", "out"), "layer 0 mlp": ("layers.0.mlp", "out"),
              "last layer input (residual stream)": (f"layers.{{last}}", "in"), "final hidden state": ("norm", "out")}

    def capture(attn, kwargs_of):
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn).eval()
        last = len(lm.model.layers) - 1
        seen = {}
        for label, (where, what) in probes.items():
            module = lm.model.get_submodule(where.format(last=last))

            def hook(module, inputs, output, label=label, what=what):
                value = inputs[0] if what == "in" else output[0] if what == "out0" else output
                seen[label] = value.detach()
            module.register_forward_hook(hook)
        with torch.no_grad():
            lm.model(**kwargs_of(lm))
        return seen

    batch = None

    def padded_kwargs(lm):
        nonlocal batch
        batch = make_batch(lengths, lm.config.vocab_size, args.seed)
        return dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"])

    padded = capture("sdpa", padded_kwargs)
    packed_batch = pack_micro_batch(batch["input_ids"], batch["attention_mask"], batch["position_ids"], batch["response_mask"])
    packed = capture(register_varlen_attention(), lambda lm: dict(
        input_ids=packed_batch.input_ids, position_ids=packed_batch.position_ids, **packed_batch.attention_kwargs()))
    valid = batch["attention_mask"].bool()
    rows = []
    for label in probes:
        a, b = padded[label], packed[label]
        a = a[valid] if a.dim() == 3 and a.shape[:2] == valid.shape else a[0][valid[0]] if a.shape[0] == 1 else a
        b = b[0]
        if a.shape != b.shape:  # rotary tables are per position: compare the positions of the packed row
            a = padded[label][valid]
        rows.append([label, float((a - b).abs().max()), float(a.abs().max())])
    return rows


# what the figures of `precision_report` showed on SmolLM2 (2026-12-01); rerun and reread if they change
PRECISION_READING = (
    '\nReading: everything before the first attention call is bitwise equal in the two paths (rotary tables, '
    'q/k/v projections: the GEMMs here give each row the same bits whatever the batch shape); the attention '
    'output differs in its last bits (one SDPA call over the left-padded batch with a padding mask vs one '
    'causal call per packed sequence: the kernel sums over the keys in another order). The MLP amplifies '
    'that, and the residual stream, up to ~1e4 in magnitude where one fp32 ulp is ~1e-3, carries it through '
    'the 30 layers to ~2e-5 in the log-probs. Neither path is the more exact one (the same max and mean '
    'distance to fp64), and no padding is lost or misplaced (fp64 agrees). Variants of the packed call that '
    'did not remove it (tried by hand): key/value heads expanded instead of enable_gqa, contiguous slices, '
    "an explicit causal mask instead of is_causal, the math SDPA kernel. So 1e-5 holds on the tests' short "
    "sequences and not on 1-2k-token ones in fp32: it is below this model's fp32 rounding noise there; "
    'nothing to fix in the packing.'
)


def precision_report(args, result: dict) -> str:
    lengths = result["lengths"]
    rows = [[name, result["fp64_vs_truth"][name], result["fp32_vs_truth"][name], result["fp32_mean_vs_truth"][name]]
            for name in result["fp32_vs_truth"]]
    pairs = [[pair, value] for pair, value in result["fp32_pairwise"].items()]
    return "\n".join([
        f"{args.model}, {len(lengths)} sequences of the mix above ({result['tokens']} tokens; prompts "
        f"{min(p for p, _ in lengths)}-{max(p for p, _ in lengths)}, responses {min(r for _, r in lengths)}-"
        f"{max(r for _, r in lengths)}), no grad, {args.threads} threads. Truth: the fp64 forward, one sequence at a "
        f"time. Mean |log-prob| of the response tokens: {result['logprob_abs_mean']:.1f} nats.\n",
        table(["path", "fp64: max diff to truth", "fp32: max diff to truth", "fp32: mean diff to truth"], rows),
        "\nfp32 paths against each other (max |diff| over the response tokens):\n",
        table(["pair", "max diff"], pairs),
        f"\nWhere the two fp32 forwards first differ (the first two sequences, padded batch vs packed row, max |diff| "
        f"over their real tokens):\n",
        table(["module output", "max diff", "max |value|"], result["localized"]),
        "\nThe scorer returns fp32, so the fp64 columns compare to within fp32 output rounding (~1e-6 at 13 nats).",
        PRECISION_READING,
    ])


# ------------------------------------------------------------------ 2. init RAM per rank
def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _init_rank(rank: int, world: int, port: int, model_path: str, from_rank0: bool, results) -> None:
    import torch
    import torch.distributed as dist
    import transformers  # noqa: F401  (imported before the baseline, as in the worker)
    from torch.distributed.fsdp import fully_shard

    from rest.workers.model_loading import build_causal_lm, full_state_for_broadcast, load_sharded_from_rank0

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    baseline = _rss_kib("VmRSS")
    start = time.perf_counter()
    lm = build_causal_lm(model_path, torch.float32, "sdpa", on_meta=from_rank0 and rank != 0)
    full = full_state_for_broadcast(lm) if from_rank0 and rank == 0 else None
    for layer in lm.model.layers:
        fully_shard(layer)
    fully_shard(lm)
    if from_rank0:
        load_sharded_from_rank0(lm, full, torch.device("cpu"))
        del full
    dist.barrier()
    seconds = time.perf_counter() - start
    shard_bytes = sum(p.to_local().numel() * p.element_size() for p in lm.parameters())
    results.put({"rank": rank, "baseline_kib": baseline, "peak_kib": _rss_kib("VmHWM"),
                 "shard_bytes": shard_bytes, "seconds": seconds})
    dist.destroy_process_group()


def measure_init(model: str, world: int) -> list[dict]:
    import torch.multiprocessing as mp

    from rest.models.cache import resolve_model_path

    path = str(resolve_model_path(model))
    ctx = mp.get_context("spawn")
    rows = []
    for from_rank0 in (False, True):
        results = ctx.Queue()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [ctx.Process(target=_init_rank, args=(rank, world, port, path, from_rank0, results))
                 for rank in range(world)]
        for p in procs:
            p.start()
        answers = [results.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        for answer in sorted(answers, key=lambda a: a["rank"]):
            rows.append({"load_on_rank0": from_rank0, **answer})
    return rows


# ------------------------------------------------------------------ report
def model_bytes(model: str) -> tuple[int, int]:
    """(all parameters, the largest single tensor) in bytes, in fp32 as loaded."""
    from safetensors import safe_open

    from rest.models.cache import resolve_model_path

    total = largest = 0
    for file in Path(resolve_model_path(model)).glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                sl = f.get_slice(key)
                n = 1
                for d in sl.get_shape():
                    n *= d
                total += n * 4  # fp32, as loaded
                largest = max(largest, n * 4)
    return total, largest


def report(args, step: dict, init: list[dict], full_bytes: int, largest_bytes: int) -> str:
    mib = lambda b: b / 2**20  # noqa: E731
    t_pad, t_pack = median(step["times"]["padded"]), median(step["times"]["packed"])
    tokens = step["tokens"]
    rows = [["padded (today)", f"{args.micro_batch} sequences", step["micro_batches"]["padded"],
             step["padded_cells"], t_pad, tokens / t_pad],
            ["packed", f"<= {args.max_tokens} tokens", step["micro_batches"]["packed"], tokens, t_pack,
             tokens / t_pack]]
    lengths = step["lengths"]
    body = [
        f"**Update step** ({args.model}, fp32, {args.threads} torch threads, one process, gradient checkpointing "
        f"{'on' if args.gradient_checkpointing else 'off'}): {len(lengths)} sequences, "
        f"{tokens} real tokens (prompts {min(p for p, _ in lengths)}-{max(p for p, _ in lengths)}, responses "
        f"{min(r for _, r in lengths)}-{max(r for _, r in lengths)} tokens), forward + backward per micro-batch + "
        f"AdamW; median of {args.repeats} alternating steps{' after an untimed one per path' if args.warmup else ''}. "
        f"Every timed step: "
        f"padded {', '.join(f'{t:.0f}' for t in step['times']['padded'])} s, packed "
        f"{', '.join(f'{t:.0f}' for t in step['times']['packed'])} s.\n",
        table(["path", "micro-batch", "micro-batches", "token cells computed", "step s", "tokens/s"], rows),
        f"\nPadding removal: **{t_pad / t_pack:.2f}x** tokens/s. Max |log-prob difference| between the two paths "
        f"over the response tokens: {step['logprob_diff_max']:.2e}.\n",
        f"**Init host RAM per rank** (2 gloo ranks, {args.model} fp32 = {mib(full_bytes):.0f} MiB of parameters, "
        f"model/world = {mib(full_bytes) / 2:.0f} MiB; baseline = RSS after importing torch/transformers and joining "
        f"the group; peak = VmHWM after the sharded model is ready).\n",
        table(["actor.load_on_rank0", "rank", "baseline MiB", "peak MiB", "peak - baseline MiB", "own shard MiB",
               "init s"],
              [[str(r["load_on_rank0"]).lower(), r["rank"], mib(r["baseline_kib"] * 1024), mib(r["peak_kib"] * 1024),
                mib((r["peak_kib"] - r["baseline_kib"]) * 1024), mib(r["shard_bytes"]), r["seconds"]] for r in init]),
    ]
    others = [r for r in init if r["load_on_rank0"] and r["rank"] != 0]
    if others:
        growth = max(r["peak_kib"] - r["baseline_kib"] for r in others) * 1024
        budget = full_bytes / 2 + largest_bytes
        body.append(
            f"\nWith rank-0 loading a non-zero rank grows by {mib(growth):.0f} MiB: its shard ({mib(full_bytes / 2):.0f} "
            f"MiB = model/world) plus {mib(growth - full_bytes / 2):.0f} MiB of overhead, against the expected "
            f"overhead of one full tensor in flight during the broadcast (the largest, {mib(largest_bytes):.0f} MiB; "
            f"shard + it = {mib(budget):.0f} MiB): **{growth / budget:.2f}x** that bound. Without it every rank "
            f"grows by the whole model first.")
    return "\n".join(body)
    return "\n".join(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, choices=(0, 1), default=0,
                        help="1: one untimed step per path first (the figures in RESULTS.md were taken without)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                        help="recompute each decoder layer in the backward (model.gradient_checkpointing), as one "
                             "would for 2k-token sequences: without it the padded path's attention weights for 4 "
                             "sequences of ~2k tokens keep ~19 GB alive (SmolLM2's 30 layers)")
    parser.add_argument("--skip-init", action="store_true", help="only the step-time measurement")
    parser.add_argument("--precision", action="store_true",
                        help="only the fp32/fp64 comparison of padded, one-at-a-time and packed scoring")
    parser.add_argument("--precision-sequences", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="short lengths; writes bench/out/RESULTS-quick.md")
    args = parser.parse_args()
    if args.precision:
        result = measure_precision(args)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "packing_precision.json").write_text(json.dumps({"args": vars(args), **result}, indent=1))
        body = precision_report(args, result)
        print(body)
        write_section("packing-precision", "Packed vs padded log-probs in fp32: reduction order (CPU)", body)
        return
    step = measure_step(args)
    init = [] if args.skip_init else measure_init(args.model, world=2)
    full_bytes, largest_bytes = model_bytes(args.model)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "packing.json").write_text(json.dumps({"args": vars(args), "step": step, "init": init}, indent=1))
    body = report(args, step, init, full_bytes, largest_bytes)
    print(body)
    write_section("packing", "Padding removal and rank-0 loading (CPU)", body)


if __name__ == "__main__":
    main()
