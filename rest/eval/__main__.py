"""`python -m rest.eval apibank|bfcl|task`: evaluate a model (or the oracle) and write score files.

`task` scores the training task's held-out split (the one `rest.main` validates on with the same data
settings) with the trainer's metrics (rest.eval.task), so a checkpoint's numbers compare with the curves:
`python -m rest.eval task --model runs/demo/hf --limit 64`. Greedy only (the backends are greedy); pass@k
needs sampling and is measured in training (validation.pass_k)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from rest.eval import run_benchmark
from rest.eval.backends import make_backend
from rest.eval.bfcl_data import CATEGORIES
from rest.eval.report import markdown_table, write_scores
from rest.eval.task import evaluate_task, summary_line


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rest.eval", description=__doc__)
    parser.add_argument("benchmark", choices=["apibank", "bfcl", "task"])
    parser.add_argument("--backend", choices=["oracle", "hf", "vllm"], default=None,
                        help="default: hf with --model, else the oracle")
    parser.add_argument("--model", help="built-in name (tiny-qwen3, smollm2-135m-instruct), local dir or hub id")
    parser.add_argument("--prompt-format", choices=["toolrl", "hermes"], default="toolrl",
                        help="how the evaluated model was trained to see tools and write calls")
    parser.add_argument("--limit", type=int, default=None, help="entries per category / level (task: items)")
    parser.add_argument("--output-dir", default="eval_results")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="default 512; task: data.max_response_length of the default config, as in training")
    parser.add_argument("--oracle-corruption", type=float, default=0.0,
                        help="oracle only: chance of answering without the gold calls (tests the harness)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get("REST_APIBANK_DIR"),
                        help="apibank: folder of ToolRL's level-{1,2,3}-api_processed.json")
    parser.add_argument("--version", choices=["v3", "v4"], default="v3", help="bfcl: v3 (nvidia-bfcl, the papers') or v4")
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, default=None, help="bfcl: default all")
    parser.add_argument("--data-source", choices=["embedded", "rlla"], default=None,
                        help="task: the training data (default: the default config's, the embedded task)")
    parser.add_argument("--data-path", default=None, help="task: data.path for --data-source rlla")
    args = parser.parse_args(argv)
    if args.backend is None:
        args.backend = "hf" if args.model else "oracle"
    return args


def task_data(args):
    """The data settings of the default training config, with the source, path and format given here."""
    from rest.config.schema import BatchDataConfig

    data = BatchDataConfig(prompt_format=args.prompt_format)
    if args.data_source:
        data.source = args.data_source
    if args.data_path:
        data.path = args.data_path
    return data


def main_task(args) -> int:
    data = task_data(args)
    max_new_tokens = args.max_new_tokens or data.max_response_length
    backend = make_backend(args.backend, args.model, args.prompt_format, args.oracle_corruption, max_new_tokens,
                           args.seed)
    start = time.time()
    metrics, scores = evaluate_task(backend, data, args.limit)
    label = args.model or args.backend
    title = f"task exact match · {label} · {data.source} held-out split · {args.prompt_format} format"
    meta = {"benchmark": "task", "backend": args.backend, "model": args.model, "prompt_format": args.prompt_format,
            "data_source": data.source, "data_path": data.path, "limit": args.limit, "max_new_tokens": max_new_tokens,
            "oracle_corruption": args.oracle_corruption, "seconds": round(time.time() - start, 1), "metrics": metrics}
    write_scores(args.output_dir, "task", title, scores, meta)
    print(markdown_table(title, scores))
    print(summary_line(metrics) or "no held-out items")
    print(f"wrote {args.output_dir}/task_score.json and .md ({meta['seconds']} s)")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.benchmark == "task":
        return main_task(args)
    backend = make_backend(args.backend, args.model, args.prompt_format, args.oracle_corruption,
                           args.max_new_tokens or 512, args.seed)
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
