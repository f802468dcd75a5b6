"""Supervised fine-tuning with TRL's `SFTTrainer`, one recipe of the grid per call.

The loss is on the completion only. When the model has a chat template (hub instruct models), examples are given
to TRL in its conversational prompt-completion format, so the prompt is rendered as a user turn and the loss
covers exactly the assistant turn as the template renders it (including its end-of-turn tokens); otherwise
(the embedded char-level model) as plain prompt + completion + EOS. `quagmire.eval.genloss.encode_example`
tokenizes the same way, so the generalization loss measures what SFT optimized.

Why the resolved trainer config is an output: TRL and transformers defaults drift between versions, so the
checkpoint folder records every argument the trainer actually ran with (`trainer_config.json`), next to what
data went in (`lineage.json`, with sha256s). Training checkpoints every `save_steps` steps into `<out>.partial/`
and resumes from there when rerun (see `quagmire.train.runner`); `out` appears only by a rename at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import TrainerCallback

from quagmire.errors import QuagmireError
from quagmire.hf import has_chat_template
from quagmire.train.runner import (
    TrainedRun,
    TrainingJob,
    TrainingStage,
    mean_logged_loss,
    per_device_batch,
    resumable_trainer_args,
    run_training,
)

log = logging.getLogger(__name__)

SCHEDULERS = {
    "constant": "constant",
    "linear": "linear",
    "cosine": "cosine",
    "constant_with_warmup": "constant_with_warmup",
}
LOGGING_STEPS = 10  # lowered to divide save_steps (see runner.aligned_logging_steps)
DEFAULT_SAVE_STEPS = 100  # ~25 s of the embedded study's SFT on a CPU; a few saves per paper-scale recipe


def prompt_completion_dataset(frame: pd.DataFrame, tokenizer: Any = None):  # -> datasets.Dataset
    """TRL's prompt-completion format, with the loss on the completion only (completion_only_loss).

    Conversational (`[{"role": "user", ...}]` / `[{"role": "assistant", ...}]`) when `tokenizer` has a chat
    template, so that TRL renders it through the template; plain strings otherwise.
    """
    from datasets import Dataset

    missing = {"prompt", "response"} - set(frame.columns)
    if missing:
        raise QuagmireError(f"SFT data lacks column(s) {sorted(missing)}")
    prompts, responses = [str(p) for p in frame["prompt"]], [str(r) for r in frame["response"]]
    if has_chat_template(tokenizer):
        return Dataset.from_dict(
            {
                "prompt": [[{"role": "user", "content": p}] for p in prompts],
                "completion": [[{"role": "assistant", "content": r}] for r in responses],
            }
        )
    return Dataset.from_dict({"prompt": prompts, "completion": responses})


def sft_config(settings: Mapping[str, Any], output_dir: Path):  # -> trl.SFTConfig
    """Map a resolved recipe (config.recipe_settings) onto TRL's SFTConfig.

    `batch_size` is the global batch (all GPUs and accumulation steps together).
    """
    from trl import SFTConfig

    grad_accum = int(settings.get("gradient_accumulation_steps", 1))
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=settings["epochs"],
        per_device_train_batch_size=per_device_batch(settings["batch_size"], "sft batch_size", grad_accum),
        gradient_accumulation_steps=grad_accum,
        learning_rate=settings["lr"],
        lr_scheduler_type=SCHEDULERS[settings["scheduler"]],
        warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"],
        max_length=settings["max_length"],
        completion_only_loss=True,
        packing=False,
        **resumable_trainer_args(settings, LOGGING_STEPS, DEFAULT_SAVE_STEPS),
    )


class _RestoreTokenCount(TrainerCallback):
    """On resume, continue TRL's running `num_tokens` metric from the checkpoint's logged history.

    Why: SFTTrainer keeps that count in memory only (`_total_train_tokens`), so a resumed run would log token
    counts restarted from zero; everything else a checkpoint restores itself.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        logged = [row["num_tokens"] for row in state.log_history if "num_tokens" in row]
        if state.global_step > 0 and logged and hasattr(self.trainer, "_total_train_tokens"):
            self.trainer._total_train_tokens = logged[-1]


def open_sft_trainer(
    job: TrainingJob, model: Any, tokenizer: Any, dataset: Any, callbacks: list[TrainerCallback]
) -> AbstractContextManager[Any]:
    """TRL's SFTTrainer for `job` (the runner's trainer hook); it needs nothing kept alive, hence a null context."""
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=model,
        args=sft_config(job.trainer_settings, job.trainer_dir),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.add_callback(_RestoreTokenCount(trainer))
    return nullcontext(trainer)


def sft_stats(run: TrainedRun) -> dict[str, Any]:
    """`train_stats.json` of an SFT run: steps, the run's mean and final logged loss, and the logged history."""
    history = [r for r in run.trainer.state.log_history if "loss" in r]
    return {
        "global_steps": run.global_steps,
        "train_loss": mean_logged_loss(history),
        "final_logged_loss": history[-1]["loss"] if history else None,
        "seconds": round(run.seconds, 2),
        "resumed_from_step": run.resumed_from_step,
        "examples": len(run.frame),
        "chat_template": has_chat_template(run.tokenizer),
        "history": history,
    }


SFT = TrainingStage(
    kind="sft",
    title="SFT",
    rows="SFT data",
    log=log,
    dataset=lambda frame, tokenizer, settings: prompt_completion_dataset(frame, tokenizer),
    trainer=open_sft_trainer,
    stats=sft_stats,
    summary=lambda stats: f"final loss {stats['final_logged_loss']}",
)


def train_sft(
    base: Path,
    data: Path,
    out: Path,
    settings: Mapping[str, Any],
    threads: int = 1,
    callbacks: Sequence[Any] = (),
    operational: Mapping[str, Any] | None = None,
    snapshots: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune the model in `base` on the subset in `data`; write the checkpoint folder `out`, and with
    `snapshots` the run's `settings["snapshots"]` weight-only snapshots there (`quagmire.train.snapshots`).

    Resumes from `<out>.partial/` when an earlier attempt at the same run was killed. `callbacks` (extra trainer
    callbacks that change nothing computed) and `operational` knobs (trainer-only overrides of `settings`, outside
    the run's fingerprint and lineage) are those of `quagmire.train.runner.TrainingJob`.
    """
    return run_training(SFT, TrainingJob(base, data, out, settings, operational, threads, callbacks, snapshots))
