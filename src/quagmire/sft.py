"""Supervised fine-tuning with TRL's `SFTTrainer`, one recipe of the grid per call.

Why the resolved trainer config is an output: TRL and transformers defaults drift between versions, so the
checkpoint folder records every argument the trainer actually ran with (`trainer_config.json`), next to what
data went in (`lineage.json`, with sha256s). The folder is written to a temporary sibling and renamed into
place at the end, so a killed job never leaves a checkpoint that looks finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.io import atomic_dir
from quagmire.provenance import lineage
from quagmire.training import TRAINER_SCRATCH, fixed_trainer_args, load_for_training, save_checkpoint

log = logging.getLogger(__name__)

SCHEDULERS = {
    "constant": "constant",
    "linear": "linear",
    "cosine": "cosine",
    "constant_with_warmup": "constant_with_warmup",
}


def prompt_completion_dataset(frame: pd.DataFrame):  # -> datasets.Dataset
    """TRL's prompt-completion format: the loss is taken on the completion only (completion_only_loss)."""
    from datasets import Dataset

    missing = {"prompt", "response"} - set(frame.columns)
    if missing:
        raise QuagmireError(f"SFT data lacks column(s) {sorted(missing)}")
    return Dataset.from_dict({"prompt": list(frame["prompt"]), "completion": list(frame["response"])})


def sft_config(settings: Mapping[str, Any], output_dir: Path):  # -> trl.SFTConfig
    """Map a resolved recipe (config.recipe_settings) onto TRL's SFTConfig."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=settings["epochs"],
        per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["lr"],
        lr_scheduler_type=SCHEDULERS[settings["scheduler"]],
        warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"],
        max_length=settings["max_length"],
        completion_only_loss=True,
        packing=False,
        **fixed_trainer_args(settings["seed"], logging_steps=10),
    )


def train_sft(
    base: Path, data: Path, out: Path, settings: Mapping[str, Any], threads: int = 1
) -> dict[str, Any]:
    """Fine-tune the model in `base` on the subset in `data`; write the checkpoint folder `out`."""
    from trl import SFTTrainer

    frame, tokenizer, model = load_for_training(base, data, "SFT data", threads)
    with atomic_dir(out) as tmp:
        args = sft_config(settings, tmp / TRAINER_SCRATCH)
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=prompt_completion_dataset(frame), processing_class=tokenizer
        )
        start = time.monotonic()
        result = trainer.train()
        seconds = time.monotonic() - start
        history = [r for r in trainer.state.log_history if "loss" in r]
        stats = {
            "global_steps": trainer.state.global_step,
            "train_loss": result.training_loss,
            "final_logged_loss": history[-1]["loss"] if history else None,
            "seconds": round(seconds, 2),
            "examples": len(frame),
            "history": history,
        }
        save_checkpoint(tmp, trainer, tokenizer, stats, lineage("sft", parent=base, data=[data], settings=settings))
    log.info(
        "SFT done: %d steps in %.1f s, final loss %s",
        stats["global_steps"],
        seconds,
        stats["final_logged_loss"],
    )
    return stats

