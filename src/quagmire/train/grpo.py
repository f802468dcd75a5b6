"""Reinforcement learning with verifiable rewards: TRL's `GRPOTrainer`, reward = math-verify correctness.

The reward is binary (1 if `verify(parse(gold), parse(completion))`, gold first; 0 otherwise; None when the
gold cannot be parsed, so the example gives no signal instead of a wrong one). Grading runs in worker processes
with a hard timeout (`verify_pool.GradingPool`), because a policy can emit expressions that hang sympy. An optional
format reward (`format_reward` weight, off by default) adds `weight` x [exactly one `\\boxed{...}`, at the end].

Prompts are chat-formatted (a user turn) when the model has a chat template, plain strings otherwise. Generation
is Hugging Face `generate`, or vLLM colocated on the training GPU when `use_vllm` is set and a GPU is present.

Why the prompt order is fixed up front (`rl_schedule`): TRL's sampler reshuffles with a generator that carries
over from epoch to epoch, so a run resumed in its second epoch would see another order than an uninterrupted
one. Here every epoch's order is a pure function of (seed, epoch), and the trainer reads the schedule in order.

Why the resolved GRPO config is written out: TRL's GRPO defaults (loss type, reward scaling, KL beta) have
changed between releases; the run must say which ones it used.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.hf import has_chat_template
from quagmire.train.rewards import make_correctness_reward
from quagmire.train.runner import (
    TrainedRun,
    TrainingJob,
    TrainingStage,
    per_device_batch,
    resumable_trainer_args,
    run_training,
)
from quagmire.verify_pool import GradingPool

log = logging.getLogger(__name__)

# Every step: the early-RL predictor (analysis.predictor_cost) fits a curve to the first 10-25% of the steps'
# rewards, which needs a point per step; a log line per step costs nothing next to a GRPO step.
LOGGING_STEPS = 1
DEFAULT_SAVE_STEPS = 20  # ~25 s of the embedded study's GRPO on a CPU; 10-20 min at paper scale
DEFAULT_VLLM_GPU_MEMORY = 0.3  # share of the GPU vLLM may take when colocated with training
FORMAT_TAIL_CHARS = 16  # at most this much may follow the closing brace of the boxed answer ...
_FORMAT_TAIL_OK = re.compile(r"[^A-Za-z0-9]*")  # ... and none of it letters or digits (e.g. "$", ".", "\\]")
_BOXED = "\\boxed{"


def rl_schedule(frame: pd.DataFrame, steps: int, prompts_per_step: int, seed: int) -> pd.DataFrame:
    """The prompts of the whole run in training order: epoch e is a permutation drawn with seed (seed, e),
    epochs concatenated and cut at steps x prompts_per_step rows.

    Each prompt appears once per epoch, as with TRL's sampler, but the order never depends on how far an earlier
    process got, so a resumed run sees the same prompts at the same steps.
    """
    needed = steps * prompts_per_step
    orders = []
    epoch = 0
    while sum(len(o) for o in orders) < needed:
        orders.append(np.random.default_rng([seed, epoch]).permutation(len(frame)))
        epoch += 1
    index = np.concatenate(orders)[:needed]
    return frame.iloc[index].reset_index(drop=True)


def prompt_dataset(frame: pd.DataFrame, tokenizer: Any = None):  # -> datasets.Dataset
    """GRPO's input: a prompt per row (a user turn when the model has a chat template) and the gold answer the
    reward function receives as a keyword."""
    from datasets import Dataset

    missing = {"prompt", "answer"} - set(frame.columns)
    if missing:
        raise QuagmireError(f"RL prompts lack column(s) {sorted(missing)}")
    prompts: list[Any] = [str(p) for p in frame["prompt"]]
    if has_chat_template(tokenizer):
        prompts = [[{"role": "user", "content": p}] for p in prompts]
    return Dataset.from_dict({"prompt": prompts, "answer": [str(a) for a in frame["answer"]]})


def has_one_final_boxed(text: str) -> bool:
    """Format check: exactly one `\\boxed{...}`, its braces balanced, followed by at most FORMAT_TAIL_CHARS
    characters that are neither letters nor digits (closing `$`, `\\]`, a full stop). `\\{`, `\\}` do not count."""
    if text.count(_BOXED) != 1:
        return False
    i, depth = text.index(_BOXED) + len(_BOXED), 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            tail = text[i + 1 :].strip()
            return len(tail) <= FORMAT_TAIL_CHARS and _FORMAT_TAIL_OK.fullmatch(tail) is not None
        i += 1
    return False


def _text(completion: Any) -> str:
    """A TRL completion as text: a plain string, or the content of the last (assistant) message."""
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return str(completion)


def format_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """A TRL GRPO reward: 1.0 if the completion ends in exactly one boxed answer (`has_one_final_boxed`)."""
    return [float(has_one_final_boxed(_text(c))) for c in completions]


def format_weight(settings: Mapping[str, Any]) -> float:
    """The format reward's weight (0 = off); correctness always weighs 1."""
    weight = float(settings.get("format_reward", 0.0))
    if weight < 0:
        raise QuagmireError(f"rl.format_reward must be >= 0 (got {weight}); 0 turns the format reward off")
    return weight


def reward_functions(settings: Mapping[str, Any], pool: GradingPool) -> list[Any]:
    """Correctness, plus the format reward when its weight is > 0 (weights: `reward_weights`)."""
    correctness = make_correctness_reward(pool)
    return [correctness, format_reward] if format_weight(settings) > 0 else [correctness]


def reward_weights(settings: Mapping[str, Any]) -> list[float] | None:
    """TRL's `reward_weights`, in the order of `reward_functions` (None: the one correctness reward)."""
    weight = format_weight(settings)
    return [1.0, weight] if weight > 0 else None


def generation_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """vLLM colocated on the training GPU when asked for and a GPU is present; Hugging Face generate otherwise."""
    import torch

    if not settings.get("use_vllm", False):
        return {"use_vllm": False}
    if not torch.cuda.is_available():
        log.warning("rl.use_vllm is set but no GPU is visible: generating with Hugging Face generate instead")
        return {"use_vllm": False}
    if importlib.util.find_spec("vllm") is None:
        raise QuagmireError("rl.use_vllm is set but vllm is not installed: use envs/vllm.yaml on GPU nodes or unset it")
    return {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": float(settings.get("vllm_gpu_memory_utilization", DEFAULT_VLLM_GPU_MEMORY)),
    }


def grpo_config(settings: Mapping[str, Any], output_dir: Path):  # -> trl.GRPOConfig
    """Map the `rl` config section onto TRL's GRPOConfig: one optimizer step per generation round.

    `prompts_per_step` is global (all GPUs together); the schedule already holds the order, so TRL's sampler
    does not shuffle.
    """
    from trl import GRPOConfig

    group = settings["group_size"]
    return GRPOConfig(
        output_dir=str(output_dir),
        learning_rate=settings["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_steps=settings["steps"],
        per_device_train_batch_size=per_device_batch(
            settings["prompts_per_step"] * group, "rl prompts_per_step x group_size"
        ),
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
        shuffle_dataset=False,  # rl_schedule fixed the order
        reward_weights=reward_weights(settings),
        **generation_settings(settings),
        **resumable_trainer_args(settings, LOGGING_STEPS, DEFAULT_SAVE_STEPS),
    )


def scheduled_prompt_dataset(frame: pd.DataFrame, tokenizer: Any, settings: Mapping[str, Any]):  # -> Dataset
    """The runner's dataset hook: the whole run's prompts in training order (`rl_schedule`), as GRPO's input."""
    prompt_dataset(frame.head(1))  # fail on missing columns before anything is written
    schedule = rl_schedule(frame, settings["steps"], settings["prompts_per_step"], settings["seed"])
    return prompt_dataset(schedule, tokenizer)


@contextmanager
def open_grpo_trainer(
    job: TrainingJob, model: Any, tokenizer: Any, dataset: Any, callbacks: list[Any]
) -> Iterator[Any]:
    """TRL's GRPOTrainer for `job` (the runner's trainer hook), with the grading pool its reward needs kept open
    until the run is published."""
    from trl import GRPOTrainer

    with GradingPool(workers=1, timeout_s=job.settings["grading_timeout_s"]) as pool:
        args = grpo_config(job.trainer_settings, job.trainer_dir)
        yield GRPOTrainer(
            model=model,
            reward_funcs=reward_functions(job.settings, pool),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
        )


def grpo_stats(run: TrainedRun) -> dict[str, Any]:
    """`train_stats.json` of a GRPO run: steps, the first and last logged mean reward, and the logged history."""
    history = [r for r in run.trainer.state.log_history if "reward" in r]
    return {
        "global_steps": run.global_steps,
        "seconds": round(run.seconds, 2),
        "resumed_from_step": run.resumed_from_step,
        "first_reward": history[0]["reward"] if history else None,
        "last_reward": history[-1]["reward"] if history else None,
        "chat_template": has_chat_template(run.tokenizer),
        "use_vllm": bool(run.trainer.args.use_vllm),
        "history": history,
    }


GRPO = TrainingStage(
    kind="grpo",
    title="GRPO",
    rows="RL prompts",
    log=log,
    dataset=scheduled_prompt_dataset,
    trainer=open_grpo_trainer,
    stats=grpo_stats,
    summary=lambda stats: f"reward {stats['first_reward']} -> {stats['last_reward']}",
)


def train_grpo(
    model_dir: Path,
    prompts: Path,
    out: Path,
    settings: Mapping[str, Any],
    threads: int = 1,
    callbacks: Sequence[Any] = (),
    operational: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run GRPO from the checkpoint in `model_dir` on the RL prompts in `prompts`; write `out`.

    Resumes from `<out>.partial/` when an earlier attempt at the same run was killed. `callbacks` (extra trainer
    callbacks that change nothing computed) and `operational` knobs (trainer-only overrides of `settings`, outside
    the run's fingerprint and lineage) are those of `quagmire.train.runner.TrainingJob`.
    """
    return run_training(GRPO, TrainingJob(model_dir, prompts, out, settings, operational, threads, callbacks))
