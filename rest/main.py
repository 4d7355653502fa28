"""`python -m rest.main [+recipe=NAME] [algorithm=NAME] [key=value ...]`: wire the config to the trainer.

With no arguments it runs the offline CPU demo (conf/config.yaml). The config is validated completely before
Ray or any worker starts.
"""

from __future__ import annotations

import sys

from rest.config.load import load_config
from rest.console import configure_logging
from rest.config.validate import ConfigError


def run(cfg) -> None:
    from rest.models.cache import load_tokenizer, resolve_model_path
    from rest.trainer.checkpoint import check_writable
    from rest.trainer.cluster import create_worker_groups, start_ray
    from rest.trainer.loop import Trainer
    from rest.data.prompt_set import prompt_sets
    from rest.trainer.validation import Validator

    model_path = str(resolve_model_path(cfg.model.path))
    tokenizer = load_tokenizer(model_path)
    train, val, stats = prompt_sets(cfg, tokenizer)
    if train.dropped_overlong:
        print(f"note: {len(train.dropped_overlong)} training prompts exceed data.max_prompt_length="
              f"{cfg.data.max_prompt_length} and are skipped (first: {train.dropped_overlong[:3]})")
    steps_per_epoch = len(train) // cfg.data.train_batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"data.train_batch_size={cfg.data.train_batch_size} exceeds the {len(train)} usable prompts")
    # total_steps, when set, wins (the sampler moves on to the next epoch as needed)
    total_steps = cfg.trainer.total_steps or steps_per_epoch * cfg.trainer.total_epochs
    print(f"data: {len(train)} train / {len(val)} validation prompts ({stats}); {total_steps} steps")

    check_writable(cfg.trainer.run_dir)  # before any worker starts: a run that cannot save must not train
    start_ray(cfg)
    groups = create_worker_groups(cfg, model_path, total_steps)
    validator = Validator(cfg, groups.rollout, tokenizer, val)
    Trainer(cfg, groups, tokenizer, train, validator, total_steps).fit()
    groups.actor.shutdown()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_config(argv)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    if cfg.dry_run:
        from rest.config.plan import describe_plan

        print(describe_plan(cfg))
        return 0
    configure_logging(cfg)  # first: libraries read their log level from the environment when imported
    from rest.trainer.cluster import WorkerFault

    try:
        run(cfg)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except WorkerFault as error:  # the message says which worker died and where to resume from
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
