"""The TRL side of bench/rl_step_vs_trl.py: K steps of TRL's GRPOTrainer on the work a `rest` run does.

Runs in TRL's own virtual environment (made by rl_step_vs_trl.py; it sees our venv's packages, so torch,
transformers and accelerate are the identical builds). Not meant to be run by hand:

    python bench/_trl_grpo.py SPEC.json

SPEC.json: {"overrides": [rest Hydra overrides], "steps": K, "threads": T, "out": PATH, "compact": bool}.

Everything TRL needs is derived from the same `rest` config the rest runs get (the overrides): the model
directory and tokenizer, the training prompts in the order rest's PromptSampler draws them (P per step),
rendered with the chat template into plain strings (checked to tokenise to exactly rest's prompt ids), the
reward function (rest.tooluse.reward.build_reward_fn), group size, response length, optimizer and loss.

Per step it records (TrainerCallback on_step_begin .. on_step_end, i.e. generation + reward + forward/backward
of every micro-batch + clip + optimizer step): the wall time, the time in `_generate` (tokenise prompts +
`model.generate` + decode), in `_generate_and_score_completions` (generation + reward + advantages: "prep"),
in the reward function, the completion tokens generated, and the padded widths the training forwards see.

`compact` (the `trl-compact` system): TRL 1.16's fused LM head scores only the completion positions on
CUDA/XPU (Triton), but on CPU it scores every position of the padded prompt+completion (its `compact` flag is
`_use_triton(device)`). With compact=True that one flag is forced on (trl.trainer.utils._use_triton), so the
CPU torch fold is run on the completion rows only, which is the LM-head work rest does; nothing else changes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    import torch

    torch.set_num_threads(int(spec["threads"]))

    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rest.config.load import load_config
    from rest.data import load_examples
    from rest.models.cache import load_tokenizer, resolve_model_path
    from rest.trainer.sampler import PromptSampler
    from rest.data.prompt_set import PromptSet
    from rest.data.prompts import render_prompt
    from rest.tooluse.reward import build_reward_fn

    if spec.get("compact"):
        import trl.trainer.utils as trl_utils

        trl_utils._use_triton = lambda device: True  # only the fused head's `compact` choice; folds stay torch

    cfg = load_config(list(spec["overrides"]))
    steps = int(spec["steps"])
    P, G, L = cfg.data.train_batch_size, cfg.rollout.n, cfg.data.max_response_length
    model_path = str(resolve_model_path(cfg.model.path))
    tokenizer = load_tokenizer(model_path)

    # --- the prompts rest trains on, in rest's order
    train_examples, _, _ = load_examples(cfg.data)
    prompts = PromptSet(train_examples, tokenizer, cfg.data.prompt_format, cfg.data.max_prompt_length)
    by_uid = {ex.uid: ex for ex in train_examples}
    sampler = PromptSampler(len(prompts), P, cfg.trainer.seed, cfg.data.shuffle)
    rows = []
    for _ in range(steps):
        for index in sampler.next_indices():
            item = prompts[index]
            example = by_uid[item.uid]
            text = render_prompt(tokenizer, example.messages, example.tools, cfg.data.prompt_format)
            # TRL tokenises a plain-string prompt with processing_class(text=prompts) (special tokens on)
            ids = tokenizer(text=[text])["input_ids"][0]
            if list(ids) != list(item.prompt_ids):
                raise SystemExit(f"prompt {item.uid}: TRL's tokenisation differs from rest's prompt ids")
            rows.append({"prompt": text, "ground_truth": item.ground_truth, "uid": item.uid})
    dataset = Dataset.from_list(rows)

    # --- the reward rest computes: fn(decoded response, ground truth, step (from 1), progress)
    reward_fn = build_reward_fn(cfg.algorithm.reward)
    total_steps = cfg.trainer.total_steps or steps
    timings = {"reward": 0.0}

    def toolrl_reward(prompts, completions, completion_ids, ground_truth, trainer_state, **_):
        t0 = time.perf_counter()
        step = trainer_state.global_step + 1
        progress = (step - 1) / max(1, total_steps - 1)
        out = [float(reward_fn(c, gt, step, progress)["total"]) for c, gt in zip(completions, ground_truth)]
        timings["reward"] += time.perf_counter() - t0
        return out

    # --- the config: the rest run's, field by field
    actor, algo = cfg.actor, cfg.algorithm
    micro = actor.ppo_micro_batch_size  # sequences per forward/backward (per rank in rest)
    per_step = P * G
    if per_step % micro:
        raise SystemExit(f"prompts x n = {per_step} is not a multiple of the micro-batch {micro}")
    if actor.ppo_mini_batch_size != P or actor.ppo_epochs != 1:
        raise SystemExit("the comparison needs one mini-batch = the whole batch and one PPO epoch")
    out_dir = Path(spec["out"]).with_suffix("")
    args = GRPOConfig(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=per_step // micro,  # steps_per_generation defaults to this: one generation
        num_generations=G,                              # round of P prompts x G per optimizer step
        max_completion_length=L,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        top_k=0 if cfg.rollout.top_k < 0 else cfg.rollout.top_k,
        use_vllm=False,
        beta=algo.kl_coef,
        num_iterations=actor.ppo_epochs,
        epsilon=algo.clip_low,
        epsilon_high=algo.clip_high,
        loss_type="grpo",                               # per-sequence token mean, then mean over sequences
        scale_rewards="group" if algo.norm_adv_by_std else "none",
        mask_truncated_completions=False,
        shuffle_dataset=False,                          # rows are already in rest's order
        learning_rate=actor.lr,
        weight_decay=actor.weight_decay,
        adam_beta1=actor.betas[0],
        adam_beta2=actor.betas[1],
        max_grad_norm=actor.grad_clip,
        optim="adamw_torch",                            # torch.optim.AdamW, default (non-fused) as rest's
        lr_scheduler_type="constant" if actor.lr_schedule == "constant" else actor.lr_schedule,
        warmup_steps=actor.warmup_steps,
        gradient_checkpointing=cfg.model.gradient_checkpointing,  # TRL's default is True
        bf16=False, fp16=False,                         # TRL's default is bf16=True
        use_cpu=cfg.trainer.device == "cpu",
        seed=cfg.trainer.seed, data_seed=cfg.trainer.seed,
        dataloader_num_workers=0,
        logging_strategy="steps", logging_steps=1,
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        log_completions=False,
    )
    if args.steps_per_generation != args.gradient_accumulation_steps or args.generation_batch_size != per_step:
        raise SystemExit(f"TRL would generate {args.generation_batch_size} completions every "
                         f"{args.steps_per_generation} micro-steps, not {per_step} per optimizer step")

    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, attn_implementation=cfg.model.attn_implementation)

    records: list[dict] = []
    current: dict = {}

    class TimedGRPOTrainer(GRPOTrainer):
        def _generate(self, prompts):
            t0 = time.perf_counter()
            out = super()._generate(prompts)
            current["gen_s"] = current.get("gen_s", 0.0) + time.perf_counter() - t0
            completion_ids = out[1]
            current["completion_tokens"] = current.get("completion_tokens", 0) + sum(len(c) for c in completion_ids)
            current["completions"] = current.get("completions", 0) + len(completion_ids)
            return out

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            current["prep_s"] = current.get("prep_s", 0.0) + time.perf_counter() - t0
            current["prompt_width"] = int(out["prompt_ids"].shape[1])
            current["completion_width"] = int(out["completion_ids"].shape[1])
            current["old_logprob_forward"] = out.get("old_per_token_logps") is not None
            return out

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            current["threads"] = torch.get_num_threads()

        def on_step_begin(self, args, state, control, **kwargs):
            threads = current.get("threads")
            current.clear()
            current["threads"] = threads
            timings["reward"] = 0.0
            current["t0"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_s = time.perf_counter() - current.pop("t0")
            width = current.get("prompt_width", 0) + current.get("completion_width", 0)
            rows = current.get("completions", 0)
            record = {
                "step": state.global_step, "step_s": step_s, "reward_s": timings["reward"],
                # positions the LM head scores in the training forwards (this step's backward repeats them)
                "lm_head_rows": (current.get("completion_tokens", 0) if spec.get("compact")
                                 else rows * max(0, width - 1)),
                **{k: v for k, v in current.items() if k != "threads"},
            }
            records.append(record)
            print(f"[trl] step {state.global_step}: {step_s:.2f} s (gen {record.get('gen_s', 0):.2f} s, "
                  f"{record.get('completion_tokens', 0)} completion tokens)", flush=True)

    trainer = TimedGRPOTrainer(
        model=model, reward_funcs=[toolrl_reward], args=args, train_dataset=dataset, processing_class=tokenizer,
        callbacks=[StepTimer()],
    )
    threads_at_start = torch.get_num_threads()
    trainer.train()

    logged = [row for row in trainer.state.log_history if "step_time" in row or "completions/mean_length" in row]
    for record, row in zip(records, logged):
        record["logged_mean_length"] = row.get("completions/mean_length")
        record["logged_reward"] = row.get("reward")
        record["logged_step_time"] = row.get("step_time")  # TRL's own: sum of its training_step calls
    result = {
        "trl_version": trl.__version__, "torch": torch.__version__, "threads": threads_at_start,
        "threads_in_train": current.get("threads"), "compact": bool(spec.get("compact")),
        "prompts_per_step": P, "n": G, "max_response_length": L, "micro_batch": micro,
        "grpo_config": {k: getattr(args, k) for k in (
            "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation",
            "generation_batch_size", "num_generations", "max_completion_length", "beta", "num_iterations",
            "epsilon", "epsilon_high", "loss_type", "scale_rewards", "learning_rate", "weight_decay", "adam_beta1",
            "adam_beta2", "max_grad_norm", "lr_scheduler_type", "warmup_steps", "gradient_checkpointing", "bf16",
            "use_cpu", "seed", "temperature", "top_p", "top_k", "optim", "shuffle_dataset")},
        "steps": records,
    }
    result["grpo_config"] = {k: str(v) if not isinstance(v, (int, float, bool, str, type(None))) else v
                             for k, v in result["grpo_config"].items()}
    Path(spec["out"]).write_text(json.dumps(result, indent=1))
    print(f"[trl] wrote {spec['out']}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(sys.argv[1])
