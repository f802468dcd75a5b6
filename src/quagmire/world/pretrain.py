"""Pre-training of the embedded base model: one-digit facts and direct answers, never a worked solution.

Why: the paper's models are pre-trained before SFT. Here pre-training teaches the one-digit facts that every column
step is made of ('5+6+1=12', '13-8=5', '4*6+2=26') and the answer format on one-digit problems ('3+4=\\boxed{7}').
The base model can then be evaluated and trained with RL (it answers multi-digit problems directly, occasionally
right), while only SFT teaches the column procedure.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from quagmire.world.problems import FAMILIES, PRETRAIN_LEVEL, sample_problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainSettings:
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 30
    seed: int = 0
    direct_problems: int = 300


def digit_facts() -> list[str]:
    """The one-digit facts column steps are made of: 'x+y', 'x+y+1', '1x-y', 'x*y'.

    Multiplication with an incoming carry ('4*6+2') is left for SFT to teach: it is what makes `mul` the
    hardest family.
    """
    facts = []
    for x in range(10):
        for y in range(10):
            facts += [f"{x}+{y}={x + y}", f"{x}+{y}+1={x + y + 1}", f"{x}*{y}={x * y}"]
            top = x + 10 if x < y else x
            facts.append(f"{top}-{y}={top - y}")
    return sorted(set(facts))


def direct_problems(rng: random.Random, count: int) -> list[str]:
    """One-operation problems answered directly ('3+4=\\boxed{7}'): the answer format, no procedure."""
    out = []
    for i in range(count):
        problem = sample_problem(rng, FAMILIES[i % len(FAMILIES)], PRETRAIN_LEVEL)
        out.append(f"{problem.question}\\boxed{{{problem.answer}}}")
    return out


def pretrain_corpus(settings: PretrainSettings) -> list[str]:
    """The pre-training lines: arithmetic facts plus direct-answer one-operation problems."""
    return digit_facts() + direct_problems(random.Random(settings.seed), settings.direct_problems)


def pretrain(
    model, tokenizer, corpus: Sequence[str], settings: PretrainSettings, log_every: int = 50
) -> dict:
    """Train `model` as a causal LM on `corpus` lines (each followed by EOS); returns loss statistics.

    A plain loop rather than a Trainer: pre-training is not part of the study's method, and the loop is a few
    lines of real torch that run in about a minute on a CPU.
    """
    import torch

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, settings.warmup_steps))
    )
    model.train()
    tokenizer.padding_side = "right"  # as SFT batches are padded: sequences start at position 0
    losses: list[float] = []
    start = time.monotonic()
    try:
        for step in range(settings.steps):
            batch = [
                corpus[rng.randrange(len(corpus))] + tokenizer.eos_token for _ in range(settings.batch_size)
            ]
            enc = tokenizer(batch, return_tensors="pt", padding=True)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            loss = model(**enc, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if (step + 1) % log_every == 0 or step + 1 == settings.steps:
                recent = losses[-log_every:]
                log.info("pretrain step %d/%d loss %.4f", step + 1, settings.steps, sum(recent) / len(recent))
    finally:
        model.eval()
        tokenizer.padding_side = "left"  # generation pads on the left
    tail = losses[-max(1, settings.steps // 10) :]
    return {
        "steps": settings.steps,
        "first_loss": losses[0] if losses else math.nan,
        "final_loss": sum(tail) / len(tail) if tail else math.nan,
        "seconds": round(time.monotonic() - start, 2),
        "corpus_lines": len(corpus),
    }


def save_base(model, tokenizer, out: Path, stats: dict) -> None:
    """Save model + tokenizer in Hugging Face format (safetensors), as a hub snapshot would look."""
    from quagmire.io import write_json

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_json(out / "pretrain_stats.json", stats)


def pretrain_to_file(tokenizer: str | Path, settings: dict, out: str | Path, threads: int = 1) -> dict:
    """Build the embedded base model from `settings` ({"model": ..., "pretrain": ..., "seed": ...}), pre-train it
    and save it with its stats and lineage to the folder `out`: the `quagmire pretrain` step of the DAG."""
    import torch

    from quagmire.hf import load_tokenizer
    from quagmire.io import atomic_dir, write_json
    from quagmire.provenance import lineage
    from quagmire.world.model import TinyModelSpec, build_model, count_parameters

    torch.set_num_threads(threads)
    loaded = load_tokenizer(tokenizer)
    model = build_model(TinyModelSpec.from_config(settings["model"]), loaded, settings["seed"])
    pre = PretrainSettings(**settings["pretrain"], seed=settings["seed"])
    log.info("base model: %d parameters", count_parameters(model))
    stats = pretrain(model, loaded, pretrain_corpus(pre), pre)
    stats["parameters"] = count_parameters(model)
    with atomic_dir(out) as tmp:
        save_base(model, loaded, tmp, stats)
        write_json(tmp / "lineage.json", lineage("pretrain", parent=None, data=[], settings=settings))
    return stats
