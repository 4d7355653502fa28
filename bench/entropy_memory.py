"""Peak extra memory and time of per-token entropy/log-prob: naive vs chunked vs fused-from-hidden.

Not a test. Each case runs in a fresh subprocess; its peak extra memory is the process's RSS high-water mark
(VmHWM in /proc/self/status) minus the RSS once the inputs (hidden [N, H], lm_head weight [V, H], labels)
exist. All three cases start from the same inputs:
  naive    logits = hidden @ W.T, then log_softmax over the whole [N, V]
  chunked  logits = hidden @ W.T (materialised, as after an HF forward), then `entropy_and_logprob`
  fused    `entropy_and_logprob_from_hidden`: never more than one chunk of logits
Usage: python bench/entropy_memory.py [--tokens 1024 2048 ...] [--vocab 151936] [--hidden 128] [--backward]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASES = ("naive", "chunked", "fused")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_case(case: str, n: int, vocab: int, hidden: int, chunk: int, backward: bool) -> dict:
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
        return ent, lp

    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    return {"case": case, "tokens": n, "extra_mib": (peak - base) / 1024, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--backward", action="store_true", help="time forward + backward of the log-prob")
    p.add_argument("--naive-limit-gib", type=float, default=16.0, help="skip naive when 3 N V 4 bytes exceeds it")
    p.add_argument("--_case", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._case:
        out = run_case(args._case[0], int(args._case[1]), args.vocab, args.hidden, args.chunk, args.backward)
        print(json.dumps(out))
        return

    mode = "forward+backward" if args.backward else "forward"
    print(f"vocab {args.vocab}, hidden {args.hidden}, chunk {args.chunk}, {mode}; extra = peak RSS - inputs")
    print(f"{'tokens':>7} {'case':>8} {'extra MiB':>10} {'seconds':>8} {'mem vs naive':>13} {'time vs naive':>14}")
    for n in args.tokens:
        naive = None
        for case in CASES:
            est_gib = (3 if case == "naive" else 1) * n * args.vocab * 4 / 2**30
            if case != "fused" and est_gib > args.naive_limit_gib:
                print(f"{n:>7} {case:>8} {'skipped (~%.0f GiB)' % est_gib:>24}")
                continue
            cmd = [sys.executable, __file__, "--_case", case, str(n), "--vocab", str(args.vocab),
                   "--hidden", str(args.hidden), "--chunk", str(args.chunk)] + (["--backward"] if args.backward else [])
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            if case == "naive":
                naive = res
            mem_ratio = f"{res['extra_mib'] / naive['extra_mib']:.3f}" if naive else "-"
            time_ratio = f"{res['seconds'] / naive['seconds']:.2f}" if naive else "-"
            print(f"{n:>7} {case:>8} {res['extra_mib']:>10.0f} {res['seconds']:>8.2f} {mem_ratio:>13} {time_ratio:>14}",
                  flush=True)


if __name__ == "__main__":
    main()
