"""Peak extra memory and time of per-token entropy/log-prob: naive vs chunked vs fused-from-hidden.

Not a test. Each case runs in a fresh subprocess (with the allocator settings our Ray workers get,
common.MALLOC_ENV, and torch's default thread count); its peak extra memory is the process's RSS high-water
mark (VmHWM in /proc/self/status) after the first call minus the RSS once the inputs (hidden [N, H], lm_head
weight [V, H], labels) exist. (The high-water mark after the timed repeats is recorded too: under MALLOC_ENV,
which never trims the heap, fragmentation can raise it over repeated calls.) All three cases start from the same inputs:
  naive    logits = hidden @ W.T, then log_softmax over the whole [N, V] (`entropy_and_logprob_naive`)
  chunked  logits = hidden @ W.T (materialised, as after an HF forward), then `entropy_and_logprob`
  fused    `entropy_and_logprob_from_hidden` (what the FSDP actor runs): never more than one chunk of logits
Two tables: forward only (no grad, as in the old-log-prob pass) and forward + backward of sum(logprob) (as in
the actor update). Time is the median of --repeats runs after one warm-up run (a case whose warm-up takes
longer than --long-s is timed by that one run).

Naive full logits at 16k+ tokens needs more memory than this machine has (one fp32 [16384, 151936] tensor is
9.3 GiB and the naive path holds several). Before each case its need is estimated from the sizes already
measured (it is linear in N) and the case is skipped when that exceeds MemAvailable minus --margin-gib; the
child also caps its own data segment (RLIMIT_DATA) there, so an underestimate fails the case instead of
waking the OOM killer on a shared machine. Skipped naive/chunked sizes are extrapolated linearly from the
measured ones and marked as such.

Usage: python bench/entropy_memory.py [--tokens 1024 ...] [--modes forward backward] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MALLOC_ENV, ROOT, linear_fit, median, table, write_section  # noqa: E402
from bench.entropy_report import CASES, HEADERS, MIB, body, extrapolation_notes, logits_bytes, summarize  # noqa: E402

OUT = ROOT / "bench" / "out"
# Prior guesses of the number of fp32 [N, V] buffers alive at the peak, used until a size has been measured.
PRIOR_BUFFERS = {("naive", False): 4.0, ("naive", True): 5.0, ("chunked", False): 1.0, ("chunked", True): 2.0,
                 ("fused", False): 0.0, ("fused", True): 0.0}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


def run_case(case: str, n: int, vocab: int, hidden: int, chunk: int, backward: bool, repeats: int,
             long_s: float, allow_bytes: int) -> dict:
    import resource
    import time

    import torch

    from rest.algo.entropy import entropy_and_logprob, entropy_and_logprob_from_hidden, entropy_and_logprob_naive

    torch.manual_seed(0)
    h = torch.randn(n, hidden, requires_grad=backward)
    w = (torch.randn(vocab, hidden) * 0.05).requires_grad_(backward)
    labels = torch.randint(0, vocab, (n,))

    def step():
        with torch.set_grad_enabled(backward):
            if case == "fused":
                ent, lp = entropy_and_logprob_from_hidden(h, w, labels, chunk_size=chunk)
            elif case == "chunked":
                ent, lp = entropy_and_logprob(h @ w.t(), labels, chunk_size=chunk)
            else:
                ent, lp = entropy_and_logprob_naive(h @ w.t(), labels)
            if backward:
                lp.sum().backward()
                h.grad = w.grad = None
        return float(ent.sum()) + float(lp.sum())  # drop the outputs (and any graph) before the next run

    base = _status_kib("VmRSS")
    if allow_bytes > 0:  # fail this case (MemoryError/RuntimeError) rather than push the machine into the OOM killer
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (_status_kib("VmData") * 1024 + allow_bytes, hard))
    try:
        t0 = time.perf_counter()
        step()
        warm = time.perf_counter() - t0
    except (MemoryError, RuntimeError) as error:
        return {"case": case, "tokens": n, "backward": backward, "status": "out of memory (guard)",
                "error": str(error)[:200]}
    first_peak = _status_kib("VmHWM")
    times, stopped = [], None
    if warm > long_s:
        times, warmed = [warm], False
    else:
        warmed = True
        for _ in range(repeats):
            try:
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            except (MemoryError, RuntimeError) as error:  # fragmentation over repeated calls hit the guard
                stopped = str(error)[:200]
                break
        if not times:
            times, warmed = [warm], False
    peak = _status_kib("VmHWM")
    return {"case": case, "tokens": n, "backward": backward, "status": "measured",
            "extra_mib": (first_peak - base) / 1024, "extra_all_calls_mib": (peak - base) / 1024,
            "calls": 1 + (len(times) if warmed else 0), "repeats_stopped": stopped,
            "base_mib": base / 1024, "seconds": median(times), "times": times, "warmed_up": warmed,
            "threads": torch.get_num_threads()}


def estimate_bytes(case: str, backward: bool, n: int, vocab: int, chunk: int, measured: list[dict]) -> float:
    """Bytes this case will need: a linear fit in N over the measured sizes of the same case plus 15%, the
    measured per-token figure x N when only one size was measured (conservative: the fixed part is folded into
    the slope), else a prior guess of the [N, V] buffers plus a few chunk-sized ones."""
    same = [r for r in measured if r["case"] == case and r["backward"] == backward and r["status"] == "measured"]
    if len(same) >= 2:
        a, b = linear_fit([r["tokens"] for r in same], [r["extra_mib"] for r in same])
        return (max(a + b * n, max(r["extra_mib"] for r in same)) * 1.15 + 256) * MIB
    if same:
        return max(r["extra_mib"] * MIB / r["tokens"] for r in same) * n
    return PRIOR_BUFFERS[(case, backward)] * logits_bytes(n, vocab) + 6 * min(chunk, n) * vocab * 4


def run_mode(args, backward: bool, tokens: list[int], results: list[dict]) -> list[dict]:
    mode = "forward+backward" if backward else "forward"
    print(f"\n== {mode}: vocab {args.vocab}, hidden {args.hidden}, chunk {args.chunk}; extra = peak RSS - inputs")
    print(f"{'tokens':>7} {'case':>8} {'[N,V] MiB':>10} {'extra MiB':>10} {'all calls':>10} {'seconds':>8} "
          f"{'runs':>5} {'mem/naive':>10} {'time/naive':>10}", flush=True)
    rows = []
    for n in tokens:
        naive = None
        for case in CASES:
            need = estimate_bytes(case, backward, n, args.vocab, args.chunk, results)
            room = mem_available() - args.margin_gib * 2**30
            if args.mem_limit_gib:
                room = min(room, args.mem_limit_gib * 2**30)
            base = {"case": case, "tokens": n, "backward": backward, "logits_mib": logits_bytes(n, args.vocab) / MIB,
                    "estimate_mib": need / MIB, "room_mib": room / MIB}
            if need > room:
                res = {**base, "status": "skipped"}
                print(f"{n:>7} {case:>8} {base['logits_mib']:>10.0f}   skipped: needs ~{need / 2**30:.1f} GiB, "
                      f"{room / 2**30:.1f} GiB free above the margin", flush=True)
            else:
                cmd = [sys.executable, __file__, "--_case", case, str(n), "--vocab", str(args.vocab),
                       "--hidden", str(args.hidden), "--chunk", str(args.chunk), "--repeats", str(args.repeats),
                       "--long-s", str(args.long_s), "--_allow", str(int(room))]
                cmd += ["--backward"] if backward else []
                env = {**os.environ, **MALLOC_ENV, "PYTHONPATH": str(ROOT)}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
                lines = proc.stdout.strip().splitlines()
                if proc.returncode != 0 or not lines:
                    res = {**base, "status": f"failed (exit {proc.returncode})", "error": proc.stderr[-500:]}
                    print(f"{n:>7} {case:>8} failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}", flush=True)
                else:
                    res = {**base, **json.loads(lines[-1])}
                    if res["status"] != "measured":
                        print(f"{n:>7} {case:>8} {res['status']}", flush=True)
            results.append(res)
            if res["status"] == "measured":
                if case == "naive":
                    naive = res
                mem_ratio = f"{res['extra_mib'] / naive['extra_mib']:.3f}" if naive else "-"
                time_ratio = f"{res['seconds'] / naive['seconds']:.2f}" if naive else "-"
                runs = f"{len(res['times'])}{'' if res['warmed_up'] else '*'}"
                print(f"{n:>7} {case:>8} {res['logits_mib']:>10.0f} {res['extra_mib']:>10.0f} "
                      f"{res['extra_all_calls_mib']:>10.0f} {res['seconds']:>8.2f} {runs:>5} {mem_ratio:>10} "
                      f"{time_ratio:>10}", flush=True)
            rows.append(res)
    return rows


# Extra [N, V] fp32 buffers a chunked (materialised-logits) case holds per extra token: the logits, and with
# backward also their gradient.
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768])
    p.add_argument("--backward-tokens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384],
                   help="token counts of the forward+backward table")
    p.add_argument("--modes", nargs="+", choices=["forward", "backward"], default=["forward", "backward"])
    p.add_argument("--backward", action="store_true", help="only the forward+backward table (= --modes backward)")
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--chunk", type=int, default=1024, help="rows per chunk (actor.entropy_chunk_size)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up")
    p.add_argument("--long-s", type=float, default=8.0, help="a warm-up slower than this is the only timed run")
    p.add_argument("--margin-gib", type=float, default=4.0, help="memory left free for the rest of the machine")
    p.add_argument("--mem-limit-gib", type=float, default=0.0, help="also never plan a case above this (0: off)")
    p.add_argument("--quick", action="store_true", help="1k and 2k tokens, one timed run")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md and bench/out alone")
    p.add_argument("--from-json", metavar="PATH", help="re-render the tables and the section from a saved "
                   "bench/out/entropy_memory.json instead of measuring")
    p.add_argument("--_case", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--_allow", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._case:
        out = run_case(args._case[0], int(args._case[1]), args.vocab, args.hidden, args.chunk, args.backward,
                       args.repeats, args.long_s, args._allow)
        print(json.dumps(out))
        return
    if args.backward:
        args.modes = ["backward"]
    if args.quick:
        args.tokens, args.backward_tokens, args.repeats = [1024, 2048], [1024, 2048], 1

    results: list[dict] = []
    tables, summaries = {}, {}
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        for key in ("vocab", "hidden", "chunk", "repeats", "long_s", "margin_gib"):
            setattr(args, key, saved.get(key, getattr(args, key)))
        results = saved["results"]
    for mode in ("forward", "backward"):
        if mode not in args.modes:
            continue
        toks = args.tokens if mode == "forward" else args.backward_tokens
        if args.from_json:
            rows = [r for r in results if r["backward"] == (mode == "backward")]
            toks = sorted({r["tokens"] for r in rows})
            if not rows:
                continue
        else:
            rows = run_mode(args, mode == "backward", toks, results)
        tables[mode], summaries[mode] = summarize(rows, toks, args.vocab, mode == "backward")

    print()
    for mode, trows in tables.items():
        print(f"{mode}:")
        print(table(HEADERS, trows))
        for note in extrapolation_notes(summaries[mode]["extrapolation"]):
            print(f"  {note}")
    if args.no_write:
        return

    if args.from_json:  # the section's command line says it was re-rendered from the saved raw data
        write_section("entropy_memory", "Entropy and log-prob memory vs naive full logits", body(args, tables, summaries))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    raw = {"vocab": args.vocab, "hidden": args.hidden, "chunk": args.chunk, "repeats": args.repeats,
           "long_s": args.long_s, "margin_gib": args.margin_gib,
           "extra_mib": "peak RSS during the first call minus RSS with the inputs; extra_all_calls_mib: after all calls",
           "malloc_env": MALLOC_ENV, "results": results,
           "summary": {m: {"extrapolation": s["extrapolation"], "per_tokens": {str(k): v for k, v in s["per_tokens"].items()}}
                       for m, s in summaries.items()}}
    name = "entropy_memory-quick.json" if args.quick else "entropy_memory.json"
    (OUT / name).write_text(json.dumps(raw, indent=1))
    print(f"wrote {OUT / name}")
    write_section("entropy_memory", "Entropy and log-prob memory vs naive full logits", body(args, tables, summaries))


if __name__ == "__main__":
    main()
