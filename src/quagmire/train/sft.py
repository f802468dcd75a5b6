"""Supervised fine-tuning with TRL's `SFTTrainer`, one recipe of the grid per call.

The loss is on the completion only. When the model has a chat template (hub instruct models), examples are given
to TRL in its conversational prompt-completion format, so the prompt is rendered as a user turn and the loss
covers exactly the assistant turn as the template renders it (including its end-of-turn tokens); otherwise
(the embedded char-level model) as plain prompt + completion + EOS. `genloss.encode_example` tokenizes the same
way, so the generalization loss measures what SFT optimized.

Why the resolved trainer config is an output: TRL and transformers defaults drift between versions, so the
checkpoint folder records every argument the trainer actually ran with (`trainer_config.json`), next to what
data went in (`lineage.json`, with sha256s). Training checkpoints every `save_steps` steps into `<out>.partial/`
and resumes from there when rerun (see `quagmire.train.runner`); `out` appears only by a rename at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import TrainerCallback

from quagmire.errors import QuagmireError
from quagmire.hf import has_chat_template
from quagmire.io import partial_dir
from quagmire.provenance import lineage
from quagmire.train.runner import (
    TRAINER_SCRATCH,
    checkpoint_step,
    load_for_training,
    mean_logged_loss,
    per_device_batch,
    publish_checkpoint,
    resumable_trainer_args,
    run_fingerprint,
    train_resumably,
    training_callbacks,
)

log = logging.getLogger(__name__)

SCHEDULERS = {
    "constant": "constant",
    "linear": "linear",
    "cosine": "cosine",
    "constant_with_warmup": "constant_with_warmup",
}
LOGGING_STEPS = 10  # lowered to divide save_steps (see training.aligned_logging_steps)
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


def train_sft(
    base: Path,
    data: Path,
    out: Path,
    settings: Mapping[str, Any],
    threads: int = 1,
    callbacks: Sequence[Any] = (),
    operational: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune the model in `base` on the subset in `data`; write the checkpoint folder `out`.

    Resumes from `<out>.partial/` when an earlier attempt at the same run was killed. `callbacks` are extra
    `transformers.TrainerCallback`s (monitoring, tests); they must not change what is computed. `operational`
    knobs (save_steps, save_total_limit, and vllm_gpu_memory_utilization for GRPO) override `settings` for the
    trainer only: they are not part of the run's fingerprint or lineage, so a run resumes across a new cadence.
    """
    from trl import SFTTrainer

    frame, tokenizer, model = load_for_training(base, data, "SFT data", threads)
    dataset = prompt_completion_dataset(frame, tokenizer)
    fingerprint = run_fingerprint("sft", settings, [data], base)
    args = sft_config({**settings, **(operational or {})}, partial_dir(out) / TRAINER_SCRATCH)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[*training_callbacks(), *callbacks],
    )
    trainer.add_callback(_RestoreTokenCount(trainer))
    resume, seconds = train_resumably(trainer, out, fingerprint)
    history = [r for r in trainer.state.log_history if "loss" in r]
    stats = {
        "global_steps": trainer.state.global_step,
        "train_loss": mean_logged_loss(history),
        "final_logged_loss": history[-1]["loss"] if history else None,
        "seconds": round(seconds, 2),
        "resumed_from_step": checkpoint_step(resume) if resume is not None else None,
        "examples": len(frame),
        "chat_template": has_chat_template(tokenizer),
        "history": history,
    }
    publish_checkpoint(out, trainer, tokenizer, stats, lineage("sft", parent=base, data=[data], settings=settings))
    log.info(
        "SFT done: %d steps in %.1f s%s, final loss %s",
        stats["global_steps"],
        seconds,
        f" (resumed from step {stats['resumed_from_step']})" if resume is not None else "",
        stats["final_logged_loss"],
    )
    return stats
