"""Tables, extrapolation and prose of bench/entropy_memory.py's section, from its measured rows (also what
`--from-json` re-renders)."""

from __future__ import annotations

from bench.common import table

CASES = ("naive", "chunked", "fused")
MIB = 2**20


def logits_bytes(n: int, vocab: int) -> int:
    return n * vocab * 4


CHUNKED_SLOPE = {False: 1, True: 2}


def extrapolation(rows: list[dict], backward: bool) -> dict:
    """How sizes that were not run are extrapolated, from the largest measured size N_m of each case (its
    first-call peak, the figure least inflated by allocator fragmentation; a lower naive figure makes the ratios
    against it conservative):
      naive    extra(N) = k x N x V x 4 bytes, k = extra(N_m) / (N_m x V x 4) buffers (it is linear in N)
      chunked  extra(N) = extra(N_m) + s x (N - N_m) x V x 4 bytes, s = 1 forward, 2 with backward"""
    out = {}
    for case in ("naive", "chunked"):
        done = [r for r in rows if r["case"] == case and r["status"] == "measured"]
        if not done:
            continue
        ref = max(done, key=lambda r: r["tokens"])
        first = ref["extra_mib"]
        out[case] = {"measured_tokens": sorted(r["tokens"] for r in done), "ref_tokens": ref["tokens"],
                     "ref_first_call_mib": first, "ref_logits_mib": ref["logits_mib"],
                     "buffers": first / ref["logits_mib"], "slope_buffers": CHUNKED_SLOPE[backward]}
    return out


def extrapolate(case: str, ex: dict, logits_mib: float) -> float:
    e = ex[case]
    if case == "naive":
        return e["buffers"] * logits_mib
    return e["ref_first_call_mib"] + e["slope_buffers"] * (logits_mib - e["ref_logits_mib"])


def summarize(rows: list[dict], tokens: list[int], vocab: int, backward: bool) -> tuple[list[list], dict]:
    """One table row per token count; naive/chunked sizes that were not run are extrapolated (see
    `extrapolation`) and marked."""
    by = {(r["case"], r["tokens"]): r for r in rows}
    ex = extrapolation(rows, backward)
    out, summary = [], {}
    for n in tokens:
        lmib = logits_bytes(n, vocab) / MIB
        mem, label, secs = {}, {}, {}
        for case in CASES:
            r = by.get((case, n))
            if r and r["status"] == "measured":
                mem[case], label[case], secs[case] = r["extra_mib"], f"{r['extra_mib']:,.0f}", r["seconds"]
            elif case in ex:
                mem[case] = extrapolate(case, ex, lmib)
                label[case] = f"~{mem[case]:,.0f} (extrapolated)"
            else:
                label[case] = "-"
        ratio = {}
        for case in ("chunked", "fused"):
            if case in mem and "naive" in mem:
                extrap = any(c not in secs for c in (case, "naive"))
                ratio[case] = mem[case] / mem["naive"]
                label[case + "_ratio"] = f"{ratio[case]:.3f}" + (" (extrap.)" if extrap else "")
            else:
                label[case + "_ratio"] = "-"
        t_ratio = f"{secs['fused'] / secs['naive']:.2f}" if "fused" in secs and "naive" in secs else "-"
        out.append([n, f"{lmib:,.0f}", label["naive"], label["chunked"], label["fused"],
                    label["chunked_ratio"], label["fused_ratio"],
                    *(f"{secs[c]:.2f}" if c in secs else "-" for c in CASES), t_ratio])
        summary[n] = {"logits_mib": lmib, "naive_mib": mem.get("naive"), "chunked_mib": mem.get("chunked"),
                      "fused_mib": mem.get("fused"), "naive_measured": "naive" in secs,
                      "chunked_measured": "chunked" in secs, "chunked_over_naive": ratio.get("chunked"),
                      "fused_over_naive": ratio.get("fused"), "seconds": secs}
    return out, {"per_tokens": summary, "extrapolation": ex, "rows": rows}


HEADERS = ["tokens", "fp32 [N,V] MiB", "naive MiB", "chunked MiB", "fused MiB", "chunked/naive", "fused/naive",
           "naive s", "chunked s", "fused s", "fused s / naive s"]


def extrapolation_notes(ex: dict) -> list[str]:
    notes = []
    if "naive" in ex:
        e = ex["naive"]
        notes.append(f"naive measured at N = {', '.join(map(str, e['measured_tokens']))}; it holds "
                     f"{e['buffers']:.2f} fp32 [N, V] buffers at N = {e['ref_tokens']} (first call), and larger N are "
                     f"extrapolated as {e['buffers']:.2f} x N x V x 4 bytes")
    if "chunked" in ex:
        e = ex["chunked"]
        notes.append(f"chunked measured at N = {', '.join(map(str, e['measured_tokens']))}; larger N are "
                     f"extrapolated as its first-call peak at N = {e['ref_tokens']} + {e['slope_buffers']} x "
                     f"(N - {e['ref_tokens']}) x V x 4 bytes (the materialised logits"
                     + (" and their gradient)" if e["slope_buffers"] == 2 else ")"))
    return notes


def body(args, tables: dict, summaries: dict) -> str:
    parts = [
        f"Per-token entropy + log-prob of the taken token at vocab {args.vocab:,} (hidden {args.hidden}, chunk "
        f"{args.chunk} rows = `actor.entropy_chunk_size`), fp32, CPU, torch default threads, the workers' allocator "
        "settings (`MALLOC_*`, which never give freed heap back, so a pattern of fresh per-chunk allocations shows "
        "up as fragmentation). *Extra* = the process's peak RSS (VmHWM) during its first call minus its RSS once "
        "the inputs exist, each case in a fresh process. **naive**: `hidden @ W.T` then `log_softmax` over the whole [N, V]; **chunked**: the same "
        "logits materialised (as after an HF forward), then `entropy_and_logprob` chunk by chunk; **fused**: "
        "`entropy_and_logprob_from_hidden` (what the FSDP actor runs), one chunk of logits at a time. "
        f"Times: median of {args.repeats} timed run{'s' if args.repeats != 1 else ''} after a warm-up (a case "
        f"whose warm-up took over {args.long_s:g} s is timed by that single run); the machine is shared, so times "
        "are indicative. Measured sizes show their figures; sizes too big for this machine are extrapolated and "
        "marked.",
    ]
    chunk_mib = args.chunk * args.vocab * 4 / MIB
    verdicts = []
    for mode, title in (("forward", "Forward only (no grad, as the old-log-prob pass)"),
                        ("backward", "Forward + backward of sum(log-prob) (as the actor update)")):
        if mode not in tables:
            continue
        summ = summaries[mode]
        parts.append(f"### {title}\n\n" + table(HEADERS, tables[mode]))
        notes = extrapolation_notes(summ["extrapolation"])
        skipped = sorted(n for n, x in summ["per_tokens"].items() if not x["naive_measured"])
        if skipped:
            notes.append(f"naive at N = {', '.join(map(str, skipped))} was not run: it would not fit in the free "
                         "memory of this machine (each case is skipped when its estimated need exceeds MemAvailable "
                         f"minus {args.margin_gib:g} GiB); ratios against extrapolated figures are marked (extrap.)")
        fused = [x["fused_mib"] for x in summ["per_tokens"].values() if "fused" in x["seconds"]]
        if fused:
            notes.append(f"fused extra memory stays within {min(fused):,.0f}..{max(fused):,.0f} MiB over all measured N "
                         f"({min(fused) / chunk_mib:.1f}..{max(fused) / chunk_mib:.1f} x one fp32 chunk of logits, "
                         f"{chunk_mib:,.0f} MiB): it does not grow with N")
        grown = [(r["extra_all_calls_mib"] / r["extra_mib"], r) for r in summ["rows"]
                 if r["status"] == "measured" and r["extra_mib"] > 0]
        if grown:
            g, r = max(grown, key=lambda t: t[0])
            fused_g = max((t[0] for t in grown if t[1]["case"] == "fused"), default=float("nan"))
            notes.append(f"over the warm-up + timed calls the high-water mark grew by at most {g:.2f}x "
                         f"({r['case']} at N = {r['tokens']}: {r['extra_mib']:,.0f} -> {r['extra_all_calls_mib']:,.0f} "
                         f"MiB; heap fragmentation under the never-trim allocator settings); fused at most "
                         f"{fused_g:.2f}x (all figures in bench/out/entropy_memory.json)")
        parts.append("\n".join(f"- {n}." for n in notes))
        x16 = summ["per_tokens"].get(16384)
        if x16 and x16.get("fused_over_naive") is not None:
            how = "naive measured" if x16["naive_measured"] else "naive extrapolated, not measured"
            chunked = (f"{x16['chunked_over_naive']:.3f}" + ("" if x16["chunked_measured"] else " (chunked extrapolated)")
                       if x16.get("chunked_over_naive") is not None else "-")
            r = x16["fused_over_naive"]
            both = [(n, x) for n, x in summ["per_tokens"].items() if x["naive_measured"] and "fused" in x["seconds"]]
            measured = ""
            if both and not x16["naive_measured"]:
                n_m, x_m = max(both, key=lambda t: t[0])
                measured = (f"; largest size with both measured: N = {n_m}, fused / naive = "
                            f"{x_m['fused_over_naive']:.3f} = 1/{1 / x_m['fused_over_naive']:.0f}")
            verdicts.append(f"{mode}: fused / naive = {r:.3f} = 1/{1 / r:.0f} ({'meets' if r <= 1 / 8 else 'MISSES'} "
                            f"the target; {how}), chunked / naive = {chunked}{measured}")
    if verdicts:
        parts.append("**At 16k tokens** (target: peak extra memory <= 1/8 of the naive fp32 logits path):\n"
                     + "\n".join(f"- {v}." for v in verdicts))
    return "\n\n".join(parts)
