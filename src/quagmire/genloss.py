"""Generalization loss: the SFT loss of a post-SFT checkpoint on held-out examples of the SFT distribution.

Computed from the saved checkpoint in its own step, never taken from the trainer's eval loss, so that every
run is measured the same way: no packing, the same truncation for every run, the same tokenization as SFT
(prompt + response + EOS, loss on the response tokens and EOS only), token-weighted mean over the split.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.world.tokenizer import load_tokenizer

DEFINITION = (
    "mean per-token negative log-likelihood (nats) of response tokens (response + EOS) given the prompt, over "
    "the held-out SFT split, token-weighted; no packing; sequences truncated to max_length tokens"
)


def encode_example(tokenizer, prompt: str, response: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt+response+EOS and the index where the response starts (as TRL's SFT tokenizes)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + response + tokenizer.eos_token)["input_ids"]
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    return full[:max_length], start


def held_out_loss(
    model_dir: Path, heldout: Path, max_length: int = 256, batch_size: int = 64, threads: int = 1
) -> dict[str, Any]:
    """Token-weighted mean NLL of the held-out responses under the model in `model_dir`."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    frame = pd.read_parquet(heldout)
    if frame.empty:
        raise QuagmireError(f"held-out split {heldout} has no rows")
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    examples = [
        encode_example(tokenizer, p, r, max_length)
        for p, r in zip(frame["prompt"], frame["response"], strict=True)
    ]
    total_nll, total_tokens = 0.0, 0
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (ids, resp_start) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
                labels[row, resp_start : len(ids)] = torch.tensor(ids[resp_start:])
            logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total_nll += nll.item()
            total_tokens += int((target != -100).sum())
    if total_tokens == 0:
        raise QuagmireError(f"held-out split {heldout} has no response tokens within max_length={max_length}")
    loss = total_nll / total_tokens
    return {
        "genloss": loss,
        "perplexity": math.exp(loss),
        "n_tokens": total_tokens,
        "n_examples": len(examples),
        "max_length": max_length,
        "definition": DEFINITION,
        "model": str(model_dir),
        "heldout": str(heldout),
    }
