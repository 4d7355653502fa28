"""The driver: rollout -> reward -> old log-prob -> (reference log-prob) -> advantage -> entropy-reweighted
PPO-clip update -> weight sync, step after step, over the two Ray worker groups. One batch (`rest.trainer.batch`)
goes through the phases (`rest.trainer.phases`); every phase is timed as `timing_s/<phase>`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict

import ray
from tensordict import TensorDict
from tqdm import tqdm

from rest.config.schema import RestConfig
from rest.data.prompt_set import EnvTaskSet, PromptSet
from rest.trainer import checkpoint as ckpt
from rest.trainer import phases
from rest.trainer.batch import compact, concat_batches
from rest.trainer.cluster import WorkerFault, WorkerGroups
from rest.trainer.phases import fuses_old_log_prob
from rest.trainer.sampler import PromptSampler
from rest.trainer.timing import PhaseTimer
from rest.trainer.tracking import Tracker
from rest.trainer.validation import Validator
from rest.tooluse.reward import build_reward_fn
from rest.workers.collective_sync import CollectiveWeightSync
from rest.workers.rollout import sample_seed

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, cfg: RestConfig, groups: WorkerGroups, tokenizer, train: PromptSet | EnvTaskSet,
                 validator: Validator, total_steps: int):
        self.cfg, self.groups, self.tokenizer, self.train = cfg, groups, tokenizer, train
        self.validator, self.total_steps = validator, total_steps
        self.sampler = PromptSampler(len(train), cfg.data.train_batch_size, cfg.trainer.seed, cfg.data.shuffle)
        self.reward_fn = build_reward_fn(cfg.algorithm.reward)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.step = 0
        self.fused_old_log_prob = fuses_old_log_prob(cfg)
        self.nonfinite_rewards = 0  # this step's, scored 0 under trainer.nonfinite_reward=zero
        self.crashed = False  # the trainer.crash_at_step test hook fired
        rollout = cfg.rollout
        self.collective_sync = CollectiveWeightSync(cfg.trainer.device, rollout.dtype, rollout.tensor_parallel_size,
                                                    rollout.weight_sync_bucket_mb) \
            if rollout.weight_sync == "collective" else None

    # ------------------------------------------------------------------ the loop
    def fit(self) -> None:
        cfg = self.cfg
        for stale in ckpt.discard_partial(cfg.trainer.run_dir):
            log.warning("deleted %s: a checkpoint save that did not finish", stale)
        if self.collective_sync is not None:  # form the weight-sync group now: a failure shows before any step
            self.collective_sync.connect(self.groups.actor, self.groups.rollout)
        resume_dir = ckpt.find_resume_dir(cfg.trainer.run_dir, cfg.trainer.resume)
        if resume_dir is not None:
            self._resume(resume_dir)
        tracker = Tracker(cfg.trainer.loggers, cfg.trainer.run_dir, cfg.trainer.project_name,
                          cfg.trainer.experiment_name, asdict(cfg), cfg.trainer.wandb_mode, resume_step=self.step)
        if resume_dir is not None:
            self._log_checkpoint_row(tracker, resume_dir)
        if cfg.trainer.val_before_train and cfg.trainer.test_freq and self.step == 0:
            tracker.log(self._validate(), step=0)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="training", unit="step",
                   disable=not cfg.trainer.progress_bar, dynamic_ncols=True)
        counted = self._restarts()
        while self.step < self.total_steps:
            self.step += 1
            self._crash_hook()
            self.nonfinite_rewards = 0
            metrics = self._train_step_surviving_faults(tracker)
            if metrics is None:  # an actor rank died: the group is back at the last checkpoint's step
                bar.n = self.step
                bar.refresh()
                continue
            metrics["critic/nonfinite_rewards"] = self.nonfinite_rewards
            if metrics.get("actor/skipped_steps"):
                log.warning("step %d: a non-finite loss or gradient: %d optimizer step(s) skipped on every rank",
                            self.step, metrics["actor/skipped_steps"])
            now = self._restarts()  # restarts since the last logged step
            metrics["faults/rollout_restarts"], metrics["faults/actor_restarts"] = now[0] - counted[0], now[1] - counted[1]
            counted = now
            # save before validating: a validation that fails or dies must not cost the step's checkpoint
            if self._is_save_step():
                self.save_checkpoint(metrics)
            if cfg.trainer.test_freq and (self.step % cfg.trainer.test_freq == 0 or self.step == self.total_steps):
                metrics.update(self._validate())
            tracker.log(metrics, step=self.step)
            bar.update(1)
        bar.close()
        if cfg.trainer.save_final and not self._is_save_step():
            self.save_checkpoint()
        if cfg.trainer.export_hf:
            hf_dir = os.path.join(cfg.trainer.run_dir, "hf")
            self.groups.actor.save_hf(hf_dir)
            self.tokenizer.save_pretrained(hf_dir)
        plot = tracker.finish()
        if plot:
            log.info("curves: %s", plot)

    def _crash_hook(self) -> None:
        """trainer.crash_at_step (tests): die like a killed job, or SIGKILL one worker, at this step's start."""
        trainer = self.cfg.trainer
        if trainer.crash_at_step != self.step or self.crashed:
            return
        self.crashed = True  # once: a step replayed after an actor restart runs normally
        if trainer.crash_in == "step":
            os._exit(17)
        if trainer.crash_in in ("rollout", "actor"):
            group = getattr(self.groups, trainer.crash_in)
            pid = self.groups.kill_worker(trainer.crash_in, len(group.actors) - 1)
            log.info("test hook: killed %s worker %d (pid %d)", trainer.crash_in, len(group.actors) - 1, pid)

    def _restarts(self) -> tuple[int, int]:
        return getattr(self.groups.rollout, "restarts", 0), getattr(self.groups, "actor_restarts", 0)

    def _train_step_surviving_faults(self, tracker: Tracker) -> dict[str, float] | None:
        """train_step. A dead rollout worker is replaced inside the rollout group's call; a dead actor rank
        takes the whole actor group down (its process group is broken), so the group is rebuilt and the run
        goes back to the last complete checkpoint, as a resume would (None: the step did not happen). Past
        trainer.max_restarts: WorkerFault naming the worker and the checkpoint to resume from."""
        run_dir = self.cfg.trainer.run_dir
        try:
            try:
                return self.train_step()
            except ray.exceptions.RayError:
                dead = self.groups.dead_actor_ranks()
                if not dead:
                    raise
                self.groups.restart_actor_group(dead, self.cfg.trainer.max_restarts)
                self._restore_after_actor_restart(tracker)
                return None
        except WorkerFault as error:
            last = ckpt.latest_step(run_dir)
            where = (f"resume from {ckpt.step_dir(run_dir, last)} by rerunning the same command "
                     f"(trainer.resume=auto)" if last is not None else "no checkpoint to resume from yet")
            raise WorkerFault(f"step {self.step}: {error}; {where}") from error

    def _restore_after_actor_restart(self, tracker: Tracker) -> None:
        run_dir = self.cfg.trainer.run_dir
        path = ckpt.find_resume_dir(run_dir, "auto") or ckpt.find_resume_dir(run_dir, self.cfg.trainer.resume)
        if path is not None:
            self._resume(path)
        else:  # no checkpoint yet: the rebuilt group holds the initial weights; start over
            self.step = 0
            self.sampler = PromptSampler(len(self.train), self.cfg.data.train_batch_size, self.cfg.trainer.seed,
                                         self.cfg.data.shuffle)
            self.sync_weights()
            log.info("no checkpoint yet: training starts over from step 0")
        tracker._truncate_after(self.step)  # the run dir's metrics go back with the run, as on resume

    def _is_save_step(self) -> bool:
        return bool(self.cfg.trainer.save_freq) and self.step % self.cfg.trainer.save_freq == 0

    def _validate(self) -> dict[str, float]:
        """The validation hook; with validation.on_error=warn a failure is logged and training goes on."""
        try:
            return self.validator.run(self.step)
        except Exception as error:
            if self.cfg.validation.on_error == "error":
                raise
            log.warning("step %d: validation failed, training goes on (validation.on_error=warn): %s: %s",
                        self.step, type(error).__name__, error)
            return {"val/failed": 1}

    def train_step(self) -> dict[str, float]:
        """One step: the batch goes through the phases (`rest.trainer.phases`) and the two worker groups."""
        cfg, algo, timer = self.cfg, self.cfg.algorithm, PhaseTimer()
        actor = self.groups.actor
        progress = (self.step - 1) / max(1, self.total_steps - 1)  # nu in [0, 1]
        sync_metrics: dict[str, float] = {}
        with timer.phase("step"):
            batch, sampling_metrics = self._rollout_and_score(progress, timer)
            if cfg.actor.max_tokens_per_micro_batch:  # equal token loads per FSDP rank (rows are split in order)
                batch = phases.balance_rows(batch, cfg.actor.num_workers)
            with timer.phase("reward"):
                batch = phases.label_regions(batch, self.tokenizer)
            if not self.fused_old_log_prob:
                with timer.phase("old_log_prob"):
                    batch.update(actor.compute_log_prob(batch))
                sync_metrics = phases.check_weight_sync(batch, cfg.rollout.logprob_diff_threshold, self.step)
            if algo.kl_coef > 0:  # pi_ref's log-probs for the KL term (rest.workers.reference)
                with timer.phase("ref"):
                    batch.update(actor.compute_ref_log_prob(batch))
            sampled_mask = batch["response_mask"]  # before the rollout correction narrows it
            batch, correction_metrics = phases.correct_rollout(batch, algo)
            with timer.phase("adv"):
                batch = phases.compute_advantages(batch, algo)
                batch, weight_metrics = phases.weight_tokens(batch, progress, self.step, algo)
            with timer.phase("update_actor"):
                update = actor.update_policy(batch, fused_old_log_prob=self.fused_old_log_prob)
            if self.fused_old_log_prob:  # the update's own forward gave pi_old: the same agreement check
                batch.update(update.batch)
                sync_metrics = phases.check_weight_sync(batch, cfg.rollout.logprob_diff_threshold, self.step)
            with timer.phase("sync"):
                synced_bytes = self.sync_weights()
        tokens = int(batch["attention_mask"].sum())
        return {
            "training/step": self.step, "training/epoch": self.sampler.epoch, "training/progress": progress,
            **phases.data_metrics(batch, sampled_mask),
            "perf/tokens": tokens, "perf/tokens_per_s": tokens / timer.seconds["step"],
            **sampling_metrics, **sync_metrics, **correction_metrics, **weight_metrics, **update.metrics,
            **timer.metrics(),
            **({"weight_sync/bytes_per_s": synced_bytes / timer.seconds["sync"]} if synced_bytes else {}),
        }

    # ------------------------------------------------------------------ phases
    def _rollout_and_score(self, progress: float, timer: PhaseTimer) -> tuple[TensorDict, dict[str, float]]:
        """Sample n responses per prompt (multi-turn: n episodes per task, run by the agent loop) and score them.
        With DAPO's dynamic sampling, groups whose rewards are all equal (zero advantage) are dropped and more
        prompts drawn, at most max_tries batches; if the batch is still short, dropped groups fill it (they add no
        gradient) and the shortfall is logged."""
        cfg = self.cfg
        size, dynamic = cfg.data.train_batch_size * cfg.rollout.n, cfg.algorithm.dynamic_sampling  # rows
        multi_turn = cfg.rollout.multi_turn.enable
        kept: list[TensorDict] = []
        dropped: list[TensorDict] = []
        episodes: list = []  # multi-turn: every AgentSample drawn this step, for the rollout/* metrics
        tries = 0
        while True:
            with timer.phase("gen"):
                prompts = [self.train[i] for i in self.sampler.next_indices()]
                seeds = [[sample_seed(cfg.trainer.seed, self.step * 100 + tries, p, k) for k in range(cfg.rollout.n)]
                         for p in range(len(prompts))]
                if multi_turn:  # the agent loop: tools run inside the rollout (rest.workers.agent_loop)
                    batch, samples = phases.generate_episodes(self.groups.rollout, prompts, seeds,
                                                              cfg.data.max_response_length, self.pad_id)
                    episodes += samples
                else:
                    batch = phases.generate(self.groups.rollout, prompts, seeds, cfg.data.max_response_length,
                                            self.pad_id)
            with timer.phase("reward"):
                batch = phases.score_episodes(batch, samples, self.step, cfg) if multi_turn else \
                    phases.score(batch, self.reward_fn, self.tokenizer, self.step, progress, cfg)
                self.nonfinite_rewards += int(batch["reward_nonfinite"].sum())
            tries += 1
            if not dynamic.enable:
                return batch, phases.episode_metrics(batch, episodes) if multi_turn else {}
            varied = phases.varied_groups(batch)
            kept.append(batch[varied])
            dropped.append(batch[~varied])
            if sum(b.batch_size[0] for b in kept) >= size or tries >= dynamic.max_tries:
                break
        filled = max(0, size - sum(b.batch_size[0] for b in kept)) // cfg.rollout.n
        batch = compact(concat_batches(kept + dropped, self.pad_id)[:size], self.pad_id)
        return batch, {"dapo/tries": tries, "dapo/filled_groups": filled,
                       **(phases.episode_metrics(batch, episodes) if multi_turn else {})}

    def sync_weights(self) -> int | None:
        """The actor's weights into every rollout engine (rollout.weight_sync); the bytes of one copy if known."""
        if self.collective_sync is not None:  # actor rank 0 broadcasts, every engine worker receives
            return self.collective_sync.sync(self.groups.actor, self.groups.rollout)
        # every actor rank puts its own shards into the object store at once (export_weights is non-blocking:
        # the group call returns their refs); the rollout workers fetch them (zero-copy on one node) and
        # concatenate: no gather on rank 0, nothing through the driver
        self.groups.rollout.load_weights(self.groups.actor.export_weights(self.cfg.rollout.dtype))
        return None

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, step_metrics: dict | None = None) -> None:
        """Actor shards, optimizer, RNGs and the sampler position into a partial folder, published at the end
        (`rest.trainer.checkpoint`): a crash mid-save leaves the previous checkpoint the one resumed."""
        trainer = self.cfg.trainer
        path = ckpt.begin_save(trainer.run_dir, self.step)
        self.groups.actor.save_checkpoint(str(path))
        ckpt.save_driver_state(path, self.step, self.sampler.state_dict(), step_metrics)
        if trainer.crash_at_step == self.step and trainer.crash_in == "save":
            os._exit(17)  # test hook: die with the checkpoint written but not yet published
        ckpt.commit_save(trainer.run_dir, self.step, trainer.max_checkpoints_to_keep)

    def _resume(self, path) -> None:
        self.groups.actor.load_checkpoint(str(path))
        state = ckpt.load_driver_state(path)
        self.step = state["step"]
        self.sampler.load_state_dict(state["sampler"])
        self.sync_weights()
        log.info("resumed from %s at step %d", path, self.step)

    def _log_checkpoint_row(self, tracker: Tracker, path) -> None:
        """The checkpoint's own step row, if the interrupted run died before logging it (it saves first)."""
        row = ckpt.load_step_metrics(path)
        if row is not None and all(r["step"] != self.step for r in tracker.history()):
            tracker.log(row, step=self.step)
