"""What SFT and GRPO runs share: device settings, the trainer arguments we always fix, and the checkpoint folder.

Why fixed arguments live here: both trainers must log, seed and save the same way, and TRL's defaults for these
drift between versions; one place states them.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.io import write_json
from quagmire.world.tokenizer import load_tokenizer

TRAINER_SCRATCH = "trainer"  # the trainer's own output_dir inside the temporary checkpoint folder


def device_settings() -> dict[str, Any]:
    """bf16 on a GPU, fp32 on CPU: the paper's precision where it can run, exact arithmetic where it cannot."""
    import torch

    if torch.cuda.is_available():
        return {"bf16": True, "use_cpu": False}
    return {"bf16": False, "use_cpu": True}


def fixed_trainer_args(seed: int, logging_steps: int) -> dict[str, Any]:
    """Arguments every trainer of the study runs with, whatever TRL's defaults are."""
    return {
        "seed": seed,
        "data_seed": seed,
        "logging_steps": logging_steps,
        "save_strategy": "no",
        "report_to": [],
        "dataloader_num_workers": 0,
        **device_settings(),
    }


def load_for_training(model_dir: Path, data: Path, what: str, threads: int = 1) -> tuple[pd.DataFrame, Any, Any]:
    """The training rows (`what` names them in errors), the saved tokenizer and the model, in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    frame = pd.read_parquet(data)
    if frame.empty:
        raise QuagmireError(f"{what} {data} has no rows")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return frame, load_tokenizer(model_dir), model


def save_checkpoint(folder: Path, trainer: Any, tokenizer: Any, stats: Mapping[str, Any],
                    lineage_record: Mapping[str, Any]) -> None:
    """Write the trained model, its tokenizer, `train_stats.json`, the resolved `trainer_config.json` and
    `lineage.json` into `folder` (the temporary folder that `io.atomic_dir` renames when complete)."""
    trainer.save_model(str(folder))
    tokenizer.save_pretrained(folder)
    write_json(folder / "train_stats.json", dict(stats))
    write_json(folder / "trainer_config.json", trainer.args.to_dict())
    write_json(folder / "lineage.json", dict(lineage_record))
    shutil.rmtree(folder / TRAINER_SCRATCH, ignore_errors=True)  # scratch only: no intermediate checkpoints yet
