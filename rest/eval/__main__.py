"""`python -m rest.eval apibank|bfcl`: evaluate a model (or the oracle) and write score files."""

from __future__ import annotations

import argparse
import os
import sys
import time

from rest.eval import run_benchmark
from rest.eval.backends import make_backend
from rest.eval.bfcl_data import CATEGORIES
from rest.eval.report import markdown_table, write_scores


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rest.eval", description=__doc__)
    parser.add_argument("benchmark", choices=["apibank", "bfcl"])
    parser.add_argument("--backend", choices=["oracle", "hf", "vllm"], default="oracle")
    parser.add_argument("--model", help="built-in name (tiny-qwen3, smollm2-135m-instruct), local dir or hub id")
    parser.add_argument("--prompt-format", choices=["toolrl", "hermes"], default="toolrl",
                        help="how the evaluated model was trained to see tools and write calls")
    parser.add_argument("--limit", type=int, default=None, help="entries per category / level")
    parser.add_argument("--output-dir", default="eval_results")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--oracle-corruption", type=float, default=0.0,
                        help="oracle only: chance of answering without the gold calls (tests the harness)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get("REST_APIBANK_DIR"),
                        help="apibank: folder of ToolRL's level-{1,2,3}-api_processed.json")
    parser.add_argument("--version", choices=["v3", "v4"], default="v3", help="bfcl: v3 (nvidia-bfcl, the papers') or v4")
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, default=None, help="bfcl: default all")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    backend = make_backend(args.backend, args.model, args.prompt_format, args.oracle_corruption,
                           args.max_new_tokens, args.seed)
    start = time.time()
    scores = run_benchmark(args.benchmark, backend, args.limit, args.prompt_format, args.data_dir, args.version,
                           args.categories)
    label = args.model or args.backend
    name = args.benchmark if args.benchmark == "apibank" else f"bfcl_{args.version}"
    title = f"{name} · {label} · {args.prompt_format} format" + (f" · limit {args.limit}" if args.limit else "")
    meta = {"benchmark": args.benchmark, "version": args.version if args.benchmark == "bfcl" else None,
            "backend": args.backend, "model": args.model, "prompt_format": args.prompt_format, "limit": args.limit,
            "oracle_corruption": args.oracle_corruption, "seconds": round(time.time() - start, 1)}
    write_scores(args.output_dir, name, title, scores, meta)
    print(markdown_table(title, scores))
    print(f"wrote {args.output_dir}/{name}_score.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
