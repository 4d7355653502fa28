"""`tiny-qwen3-toolsft`: the tiny random Qwen3 after a supervised warm start on the embedded tool-use task.

Why: RL from a random model never sees the tool-call format, so every response in a GRPO group scores the same,
advantages are zero and nothing learns. The standard fix is SFT first. The demo also needs a start whose greedy
answers RL can improve on held-out items within minutes, and a clean SFT did not give one: the tiny model either
has not learned the arguments yet (then RL cannot find them either: 250 steps gave greedy exact match 0.281,
pass@8 0.426, and 10 RL steps +0.0 to +0.03) or has learned what it can (600 steps: 0.559, with little left).

So the demonstrator is imitated with its typical slip (`slip`, at rate `slip_rate`; the registered build uses
"no_call" at 0.6): 60% of the demonstrations of a request that needs a tool answer directly instead
(`rest.data.embedded_task.uncalled_reply`), the under-calling that tool-use RL papers report in SFT models. The
greedy start then answers every such request without calling (held-out exact match 0.250: the no-tool items
only), while 40% of its samples call the tools, mostly correctly: the reward can teach it when to call.
"lookalike" is the other slip we tried (a look-alike tool, a parallel request answered by its first call):
measured at 0.6 with 600 steps, those slips showed up in samples but never became the greedy choice.

Training uses `TOOL_SFT_POOL` problems drawn fresh from the embedded generator, none of them one of the first
`TOOL_SFT_HELD_OUT` validation items of the default data config (so validation stays unseen), prompts tokenized
exactly as the trainer does (`encode_prompt(..., "toolrl")`), next-token loss on response tokens only, with the
151,936-way LM head computed only at those positions (sampled softmax). A pool this size is drawn about once
per example: on the 512-problem train split the same schedule memorises (more epochs, worse held-out
arguments). Fixed seed, 2 torch threads, deterministic data order: same inputs, same weights (up to CPU kernel
nondeterminism, which we do not rely on).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from rest.models.qwen_tokenizer import QWEN3_TOKENIZER_FILES

TOOL_SFT_SEED = 0
TOOL_SFT_STEPS = 1200
TOOL_SFT_BATCH_SIZE = 8
TOOL_SFT_LR = 1e-2
TOOL_SFT_THREADS = 2
TOOL_SFT_POOL = 8192  # distinct demonstrations (1,200 steps x 8 draw each about once: no memorising a small set)
TOOL_SFT_POOL_SEED = 271_828
TOOL_SFT_HELD_OUT = 2048  # the demonstrations avoid the embedded task's first this-many validation items
TOOL_SFT_SLIP = "no_call"  # the demonstrator's slip (SLIPS; module docstring)
TOOL_SFT_SLIP_RATE = 0.6  # how often the demonstrator makes its slip where it has one (0: never)
TOOL_SFT_NEGATIVES = 4096  # sampled-softmax negatives per step (0: the full 151,936-way LM head)


@dataclass
class SFTResult:
    out_dir: Path
    losses: list[float]  # per step, mean response-token cross entropy
    seconds: float


def sft_response(ground_truth: str) -> str:
    """The assistant text trained on: a short thought naming what to do, then the ground truth (ToolRL format).

    The `<|im_end|>` EOS is appended as a token id by `build_tool_sft`, not as text."""
    from rest.data import ground_truth_calls

    names = [call.name for call in ground_truth_calls(ground_truth)]
    if names:
        thought = "I should call " + " and ".join(names) + "."
    else:
        thought = "No tool is needed, I can reply directly."
    return f"<think> {thought} </think>\n{ground_truth}"


SLIPS = ("no_call", "lookalike")


def slipped_ground_truth(ground_truth: str, slip: str) -> str | None:
    """The demonstrator's `slip` on `ground_truth` (rest.data.embedded_task), None where it has none.

    "no_call": a direct reply where calls are needed (`uncalled_reply`); "lookalike": `slipped_calls`."""
    from rest.data import ground_truth_calls
    from rest.data.embedded_task import render_ground_truth, slipped_calls, uncalled_reply

    if slip not in SLIPS:
        raise ValueError(f"slip must be one of {SLIPS}, got {slip!r}")
    calls = [{"name": c.name, "parameters": c.kwargs} for c in ground_truth_calls(ground_truth)]
    if slip == "no_call":
        return uncalled_reply(calls)
    slipped = slipped_calls(calls)
    return None if slipped is None else render_ground_truth(slipped, None)


def _encode_examples(examples, tokenizer, eos_id: int, slip: str) -> list[tuple[list[int], list[int], list[int] | None]]:
    """(prompt ids, correct response ids, slipped response ids or None) per example."""
    from rest.data.prompts import encode_prompt

    def encode_response(ground_truth: str) -> list[int]:
        return tokenizer(sft_response(ground_truth), add_special_tokens=False)["input_ids"] + [eos_id]

    encoded = []
    for example in examples:
        prompt = encode_prompt(tokenizer, example.messages, example.tools, "toolrl")
        slipped = slipped_ground_truth(example.ground_truth, slip)
        encoded.append((prompt, encode_response(example.ground_truth),
                        None if slipped is None else encode_response(slipped)))
    return encoded


def _batch(pairs, pad_id: int):
    """Right-padded input ids, attention mask, and (row, position) of every trained response-token prediction.

    A pair is (prompt, response) or (prompt, response, loss_mask): tokens with loss mask 0 (a multi-turn
    response's observations) are context only."""
    lengths = [len(p[0]) + len(p[1]) for p in pairs]
    width = max(lengths)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for i, (prompt, response, *loss_mask) in enumerate(pairs):
        seq = prompt + response
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        trained = loss_mask[0] if loss_mask else [1] * len(response)
        # hidden state at position t predicts token t+1: response token j sits at len(prompt)+j
        for j, (token, keep) in enumerate(zip(response, trained)):
            if keep:
                rows.append(i)
                cols.append(len(prompt) + j - 1)
                targets.append(token)
    return ids, mask, torch.tensor(rows), torch.tensor(cols), torch.tensor(targets)


def _response_loss(model, ids, mask, rows, cols, targets, negatives: int = 0, generator=None) -> torch.Tensor:
    """Mean cross entropy of the response tokens; the LM head runs only at response positions.

    `negatives` > 0: sampled softmax. The logits are computed for the batch's target tokens plus `negatives`
    ids drawn uniformly from the rest of the vocabulary, each sampled logit raised by log(rest / negatives) so
    the sample stands in for the whole rest in the partition function. About 30x cheaper than the full
    151,936-way head on CPU, and it still pushes the untrained rows of the tied embedding down."""
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[rows, cols]  # (N, H)
    weight = model.lm_head.weight
    if not negatives:
        return torch.nn.functional.cross_entropy(model.lm_head(hidden).float(), targets)
    vocab = weight.shape[0]
    positives, target_index = torch.unique(targets, return_inverse=True)
    is_positive = torch.zeros(vocab, dtype=torch.bool)
    is_positive[positives] = True
    rest = (~is_positive).nonzero().squeeze(1)
    count = min(negatives, rest.numel())
    sampled = rest[torch.randperm(rest.numel(), generator=generator)[:count]]
    logits = hidden @ weight[torch.cat([positives, sampled])].T
    correction = torch.cat([torch.zeros(positives.numel()), torch.full((count,), math.log(rest.numel() / count))])
    return torch.nn.functional.cross_entropy(logits + correction, target_index)


def train_sft(
    out_dir: Path,
    base_dir: Path,
    n_examples: int,
    draw: Callable[[int], tuple],
    steps: int,
    seed: int = TOOL_SFT_SEED,
    batch_size: int = TOOL_SFT_BATCH_SIZE,
    lr: float = TOOL_SFT_LR,
    negatives: int = TOOL_SFT_NEGATIVES,
    log_every: int = 0,
) -> SFTResult:
    """SFT the model in `base_dir` on `n_examples` demonstrations; write it to `out_dir`.

    `draw(i)` gives example i as a `_batch` pair: (prompt ids, response ids[, loss mask]); it is called once
    per use, in batch order, so it may draw a variant (the noisy demonstrator). AdamW, linear warmup (10% of
    steps) then cosine decay to 10% of `lr`; batches of `batch_size` examples in a seeded, epoch-wise shuffled
    order; sampled-softmax loss (`_response_loss`). Writes safetensors (fp32), the generation config and the
    base's tokenizer files. Returns the per-step losses and the wall time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    out_dir, base_dir = Path(out_dir), Path(base_dir)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(TOOL_SFT_THREADS)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
            model.train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
            warmup = max(1, steps // 10)

            def lr_at(step: int) -> float:  # step counts from 0
                if step < warmup:
                    return lr * (step + 1) / warmup
                progress = (step - warmup) / max(1, steps - warmup)
                return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))

            order_rng = random.Random(seed)
            negative_rng = torch.Generator().manual_seed(seed)
            order: list[int] = []
            losses: list[float] = []
            for step in range(steps):
                if len(order) < batch_size:
                    epoch = list(range(n_examples))
                    order_rng.shuffle(epoch)
                    order.extend(epoch)
                chosen, order = order[:batch_size], order[batch_size:]
                batch = _batch([draw(i) for i in chosen], pad_id)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                loss = _response_loss(model, *batch, negatives=negatives, generator=negative_rng)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                losses.append(loss.item())
                if log_every and (step % log_every == 0 or step == steps - 1):
                    print(f"step {step:4d} loss {losses[-1]:.4f} ({time.perf_counter() - start:.1f}s)", flush=True)

        model.eval()
        model.generation_config = _generation_config(base_dir)
        model.save_pretrained(out_dir, safe_serialization=True)
        for name in QWEN3_TOKENIZER_FILES:
            shutil.copy2(base_dir / name, out_dir / name)
    finally:
        torch.set_num_threads(previous_threads)
    return SFTResult(out_dir=out_dir, losses=losses, seconds=time.perf_counter() - start)


def build_tool_sft(
    out_dir: Path,
    base_dir: Path,
    steps: int = TOOL_SFT_STEPS,
    seed: int = TOOL_SFT_SEED,
    batch_size: int = TOOL_SFT_BATCH_SIZE,
    lr: float = TOOL_SFT_LR,
    negatives: int = TOOL_SFT_NEGATIVES,
    slip_rate: float = TOOL_SFT_SLIP_RATE,
    slip: str = TOOL_SFT_SLIP,
    pool: int = TOOL_SFT_POOL,
    log_every: int = 0,
) -> SFTResult:
    """SFT the model in `base_dir` (the tiny Qwen3) on `pool` fresh embedded problems, none held out
    (`train_sft`); with `slip_rate` > 0 some draws are the demonstrator's `slip` (module docstring)."""
    from transformers import AutoTokenizer

    from rest.data import DataConfig, load_examples
    from rest.data.embedded_task import generate_demonstrations

    if not 0.0 <= slip_rate <= 1.0:
        raise ValueError(f"slip_rate must be in [0, 1], got {slip_rate}")
    if slip not in SLIPS:
        raise ValueError(f"slip must be one of {SLIPS}, got {slip!r}")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    # The validation split follows from the data config (seed, train size); hold out its first
    # TOOL_SFT_HELD_OUT items, so any embedded_val_size up to that stays unseen by the warm start.
    _train, held_out, _stats = load_examples(DataConfig(embedded_val_size=TOOL_SFT_HELD_OUT))
    train = generate_demonstrations(pool, TOOL_SFT_POOL_SEED, held_out)
    pairs = _encode_examples(train, tokenizer, tokenizer.convert_tokens_to_ids("<|im_end|>"), slip)
    slip_rng = random.Random(seed + 1)

    def draw(i: int) -> tuple[list[int], list[int]]:
        prompt, correct, slipped = pairs[i]
        return prompt, slipped if slipped is not None and slip_rng.random() < slip_rate else correct

    return train_sft(out_dir, base_dir, len(pairs), draw, steps, seed, batch_size, lr, negatives, log_every)


def _generation_config(base_dir: Path):
    from transformers import GenerationConfig

    return GenerationConfig.from_pretrained(base_dir)


def evaluate_tool_sft(
    model_dir: Path, n_prompts: int = 32, samples: int = 4, max_new_tokens: int = 64, seed: int = 0, step: int = 1,
    schedule: bool = True, batch_prompts: int = 8,
) -> dict:
    """How RL-ready a model is on the embedded task's first `n_prompts` validation prompts (HF generate, CPU).

    Samples `samples` responses per prompt at temperature 1.0 and one greedy response, scores them with the
    ToolRL reward at `step`, and returns mean format / correctness / total, the fraction of groups whose
    sampled rewards are not all equal (GRPO has signal there), the greedy exact-match rate (the text after
    `</think>` equals the ground truth) and the greedy format rate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rest.data import DataConfig, load_examples
    from rest.tooluse.reward import compute_score, extract_answer
    from rest.data.prompts import encode_prompt

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(TOOL_SFT_THREADS)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        _train, val, _stats = load_examples(DataConfig())
        val = val[:n_prompts]
        pad_id = tokenizer.pad_token_id

        def generate(prompts: list[list[int]], do_sample: bool, num: int) -> list[str]:
            width = max(len(p) for p in prompts)
            ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=do_sample,
                    temperature=1.0 if do_sample else None, top_p=1.0 if do_sample else None, top_k=0 if do_sample else None,
                    num_return_sequences=num, pad_token_id=pad_id,
                )
            return tokenizer.batch_decode(out[:, width:], skip_special_tokens=False)

        scores, groups_varied, greedy_exact, greedy_format, examples_out = [], 0, 0, 0, []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for start in range(0, len(val), batch_prompts):
                chunk = val[start : start + batch_prompts]
                prompts = [encode_prompt(tokenizer, ex.messages, ex.tools, "toolrl") for ex in chunk]
                sampled = generate(prompts, True, samples)
                greedy = generate(prompts, False, 1)
                for k, ex in enumerate(chunk):
                    group = [compute_score(text, ex.ground_truth, step, schedule=schedule)
                             for text in sampled[k * samples : (k + 1) * samples]]
                    scores.extend(group)
                    groups_varied += len({round(s["total"], 6) for s in group}) > 1
                    g = compute_score(greedy[k], ex.ground_truth, step, schedule=schedule)
                    answer = extract_answer(greedy[k])
                    greedy_exact += answer.split("</think>", 1)[-1].strip() == ex.ground_truth.strip()
                    greedy_format += g["format"] > 0
                    examples_out.append({"ground_truth": ex.ground_truth, "greedy": greedy[k], "sample": sampled[k * samples]})
    finally:
        torch.set_num_threads(previous_threads)
    n = len(val)
    mean = lambda key: sum(s[key] for s in scores) / len(scores)  # noqa: E731
    return {
        "prompts": n, "samples": samples, "step": step, "schedule": schedule,
        "mean_format": mean("format"), "mean_correctness": mean("correctness"), "mean_total": mean("total"),
        "format_rate": sum(s["format"] > 0 for s in scores) / len(scores),
        "groups_with_variance": groups_varied / n, "greedy_exact_match": greedy_exact / n,
        "greedy_format_rate": greedy_format / n, "examples": examples_out,
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m rest.models.tool_sft OUT_DIR BASE_DIR [--steps N] [--slip KIND] [--slip-rate R] [--no-eval]`:
    build a variant of the warm start (BASE_DIR: a tiny-qwen3 directory, `python -m rest.models build tiny-qwen3`
    prints it) and print a short HF-generate report of it."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rest.models.tool_sft")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("base_dir", type=Path)
    parser.add_argument("--steps", type=int, default=TOOL_SFT_STEPS)
    parser.add_argument("--slip", choices=SLIPS, default=TOOL_SFT_SLIP)
    parser.add_argument("--slip-rate", type=float, default=TOOL_SFT_SLIP_RATE)
    parser.add_argument("--no-eval", action="store_true")
    args = parser.parse_args(argv)
    result = build_tool_sft(args.out_dir, args.base_dir, steps=args.steps, slip=args.slip, slip_rate=args.slip_rate,
                            log_every=50)
    print(f"built in {result.seconds:.1f}s, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    if args.no_eval:
        return
    report = evaluate_tool_sft(args.out_dir)
    for ex in report.pop("examples")[:6]:
        print(json.dumps(ex))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
