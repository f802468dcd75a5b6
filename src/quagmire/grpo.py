"""Reinforcement learning with verifiable rewards: TRL's `GRPOTrainer`, reward = math-verify correctness.

The reward is binary (1 if `verify(parse(gold), parse(completion))`, gold first; 0 otherwise; None when the
gold cannot be parsed, so the example gives no signal instead of a wrong one). Grading runs in worker processes
with a hard timeout (`grade.GradingPool`), because a policy can emit expressions that hang sympy.

Why the resolved GRPO config is written out: TRL's GRPO defaults (loss type, reward scaling, KL beta) have
changed between releases; the run must say which ones it used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.grade import GradingPool, make_correctness_reward
from quagmire.io import atomic_dir
from quagmire.provenance import lineage
from quagmire.training import TRAINER_SCRATCH, fixed_trainer_args, load_for_training, save_checkpoint

log = logging.getLogger(__name__)


def prompt_dataset(frame: pd.DataFrame):  # -> datasets.Dataset
    """GRPO's input: a prompt per row and the gold answer the reward function receives as a keyword."""
    from datasets import Dataset

    missing = {"prompt", "answer"} - set(frame.columns)
    if missing:
        raise QuagmireError(f"RL prompts lack column(s) {sorted(missing)}")
    return Dataset.from_dict({"prompt": list(frame["prompt"]), "answer": [str(a) for a in frame["answer"]]})


def grpo_config(settings: Mapping[str, Any], output_dir: Path):  # -> trl.GRPOConfig
    """Map the `rl` config section onto TRL's GRPOConfig: one optimizer step per generation round."""
    from trl import GRPOConfig

    group = settings["group_size"]
    return GRPOConfig(
        output_dir=str(output_dir),
        learning_rate=settings["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_steps=settings["steps"],
        per_device_train_batch_size=settings["prompts_per_step"] * group,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        num_generations=group,
        max_completion_length=settings["max_completion_length"],
        temperature=settings["temperature"],
        top_p=1.0,
        top_k=0,
        beta=settings["beta"],
        loss_type=settings["loss_type"],
        scale_rewards=settings["scale_rewards"],
        **fixed_trainer_args(settings["seed"], logging_steps=5),
    )


def train_grpo(
    model_dir: Path, prompts: Path, out: Path, settings: Mapping[str, Any], threads: int = 1
) -> dict[str, Any]:
    """Run GRPO from the checkpoint in `model_dir` on the RL prompts in `prompts`; write `out`."""
    from trl import GRPOTrainer

    frame, tokenizer, model = load_for_training(model_dir, prompts, "RL prompts", threads)
    with GradingPool(workers=1, timeout_s=settings["grading_timeout_s"]) as pool, atomic_dir(out) as tmp:
        args = grpo_config(settings, tmp / TRAINER_SCRATCH)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[make_correctness_reward(pool)],
            args=args,
            train_dataset=prompt_dataset(frame),
            processing_class=tokenizer,
        )
        start = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - start
        history = [r for r in trainer.state.log_history if "reward" in r]
        stats = {
            "global_steps": trainer.state.global_step,
            "seconds": round(seconds, 2),
            "first_reward": history[0]["reward"] if history else None,
            "last_reward": history[-1]["reward"] if history else None,
            "history": history,
        }
        record = lineage("grpo", parent=model_dir, data=[prompts], settings=settings)
        save_checkpoint(tmp, trainer, tokenizer, stats, record)
    log.info(
        "GRPO done: %d steps in %.1f s, reward %s -> %s",
        stats["global_steps"],
        seconds,
        stats["first_reward"],
        stats["last_reward"],
    )
    return stats
