"""Generalization loss: the SFT loss of a post-SFT checkpoint on held-out examples of the SFT distribution.

Computed from the saved checkpoint in its own step, never taken from the trainer's eval loss, so that every
run is measured the same way: no packing, the same truncation for every run, the same tokenization as SFT
(`encode_example`: through the chat template when the model has one, else prompt + response + EOS; the loss on
the completion tokens only), token-weighted mean over the split.

The loss is also split by token class (`decomposition`): how much of it comes from math tokens (digits,
operators, LaTeX) versus words versus the rest (spaces, punctuation, end-of-turn tokens), the paper's extra
analysis of *where* a lower held-out loss comes from.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.hf import has_chat_template, load_tokenizer

log = logging.getLogger(__name__)

DEFINITION = (
    "mean per-token negative log-likelihood (nats) of the completion tokens (response + EOS, or the assistant "
    "turn as the chat template renders it) given the prompt, over the held-out SFT split, token-weighted; "
    "tokenized as TRL's SFT tokenizes; no packing; sequences truncated to max_length tokens"
)
MATH, WORD, OTHER = "math", "word", "other"
TOKEN_CLASSES = (MATH, WORD, OTHER)
TOKEN_CLASS_RULE = (
    "each character of the decoded response is math (digits; + - * / ^ = < > ( ) [ ] { } _ | ! % $ & ~ \\; "
    "LaTeX commands such as \\frac including their letters; '.' or ',' between digits; a single letter touching "
    "a math character, e.g. x in 2x or x^2), word (other runs of letters) or other (spaces, punctuation); a "
    "token takes the class of most of its non-space characters (ties: math, then word); special tokens (EOS, "
    "chat-template markers) and whitespace-only tokens are other"
)
MATH_CHARS = frozenset("0123456789+-*/^=<>()[]{}_|!%$&~\\")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_LETTERS = re.compile(r"[^\W\d_]+")  # runs of (unicode) letters


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> list[int]:
    """Token ids of a conversation rendered by the tokenizer's chat template (as TRL tokenizes conversations)."""
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(encoded["input_ids"])


def encode_example(tokenizer, prompt: str, response: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of one SFT example and the index where its completion starts, exactly as TRL's SFTTrainer
    tokenizes the dataset `sft.prompt_completion_dataset` builds.

    With a chat template: the user turn rendered with the generation prompt, and the user + assistant turns
    rendered together. Without: `prompt` and `prompt + response + EOS`. Either way the completion starts where
    the two token sequences first differ, and the sequence is cut to `max_length` tokens (keeping the start).
    """
    if has_chat_template(tokenizer):
        user = [{"role": "user", "content": prompt}]
        prompt_ids = _chat_ids(tokenizer, user, add_generation_prompt=True)
        full = _chat_ids(tokenizer, [*user, {"role": "assistant", "content": response}])
    else:
        eos = tokenizer.eos_token
        prompt_ids = tokenizer(prompt)["input_ids"]
        full = tokenizer(prompt + (response if response.endswith(eos) else response + eos))["input_ids"]
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    return full[:max_length], start


# --- token classes --------------------------------------------------------------------------------------------


def char_classes(text: str) -> list[str]:
    """The class (math / word / other) of every character of `text`, by TOKEN_CLASS_RULE."""
    classes = [MATH if c in MATH_CHARS else OTHER for c in text]
    for match in _LATEX_COMMAND.finditer(text):
        classes[match.start() : match.end()] = [MATH] * (match.end() - match.start())
    for i in range(1, len(text) - 1):
        if text[i] in ".," and text[i - 1].isdigit() and text[i + 1].isdigit():
            classes[i] = MATH
    for match in _LETTERS.finditer(text):
        begin, end = match.span()
        if classes[begin] == MATH:  # inside a LaTeX command
            continue
        touches_math = (begin > 0 and text[begin - 1] in MATH_CHARS) or (end < len(text) and text[end] in MATH_CHARS)
        kind = MATH if end - begin == 1 and touches_math else WORD
        classes[begin:end] = [kind] * (end - begin)
    return classes


def token_classes(pieces: Sequence[str | None]) -> list[str]:
    """The class of each token, given its decoded text (None for a special token), by TOKEN_CLASS_RULE.

    The pieces are classified in context (joined), so a LaTeX command split over several tokens stays math.
    """
    text = "".join(p for p in pieces if p)
    chars = char_classes(text)
    out, offset = [], 0
    for piece in pieces:
        if not piece:
            out.append(OTHER)
            continue
        counts = {kind: 0 for kind in TOKEN_CLASSES}
        for char, kind in zip(piece, chars[offset : offset + len(piece)], strict=True):
            if not char.isspace():
                counts[kind] += 1
        offset += len(piece)
        best = max(TOKEN_CLASSES, key=lambda k: (counts[k], -TOKEN_CLASSES.index(k)))
        out.append(best if counts[best] > 0 else OTHER)
    return out


class _PieceDecoder:
    """Decoded text of single tokens, cached (a vocabulary is small next to a held-out split's token count)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.special = set(tokenizer.all_special_ids) | {
            i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)
        }
        self.cache: dict[int, str | None] = {}

    def __call__(self, ids: Sequence[int]) -> list[str | None]:
        for i in ids:
            if i not in self.cache:
                self.cache[i] = None if i in self.special else self.tokenizer.decode([i])
        return [self.cache[i] for i in ids]


def decomposition(per_class: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Per token class: n_tokens, nll_sum, mean_nll, share_of_loss (of the total NLL) and share_of_tokens."""
    total_nll = sum(sum(v) for v in per_class.values())
    total_tokens = sum(len(v) for v in per_class.values())
    out = {}
    for kind in TOKEN_CLASSES:
        values = per_class.get(kind, [])
        nll_sum = math.fsum(values)
        out[kind] = {
            "n_tokens": len(values),
            "nll_sum": nll_sum,
            "mean_nll": nll_sum / len(values) if values else None,
            "share_of_loss": nll_sum / total_nll if total_nll else None,
            "share_of_tokens": len(values) / total_tokens if total_tokens else None,
        }
    return out


# --- the loss -------------------------------------------------------------------------------------------------


def loss_device() -> tuple[str, Any]:
    """Where the held-out loss is computed, and the weights' dtype: the GPU in bfloat16 when the job has one (a
    genloss job at paper scale requests a GPU: an 8B model's forward passes over 8k-token examples on the CPU, in
    float32, would hold that GPU idle for hours), else the CPU in float32 (the embedded study's exact numbers).
    Either way the log-softmax is taken in float32."""
    import torch

    return ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)


def held_out_loss(
    model_dir: Path, heldout: Path, max_length: int = 256, batch_size: int = 64, threads: int = 1
) -> dict[str, Any]:
    """Token-weighted mean NLL of the held-out responses under the model in `model_dir`, and its split by
    token class."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    device, dtype = loss_device()
    frame = pd.read_parquet(heldout)
    if frame.empty:
        raise QuagmireError(f"held-out split {heldout} has no rows")
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    log.info("held-out loss of %s on %s (%s)", model_dir, device, str(dtype).removeprefix("torch."))
    examples = [
        encode_example(tokenizer, str(p), str(r), max_length)
        for p, r in zip(frame["prompt"], frame["response"], strict=True)
    ]
    pieces = _PieceDecoder(tokenizer)
    per_class: dict[str, list[float]] = {kind: [] for kind in TOKEN_CLASSES}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (ids, _) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
            input_ids, mask = input_ids.to(device), mask.to(device)
            logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1), reduction="none"
            ).view(len(batch), width - 1).cpu()
            for row, (ids, resp_start) in enumerate(batch):
                first = max(resp_start, 1)  # the first token of a sequence is never predicted
                if first >= len(ids):
                    continue
                values = nll[row, first - 1 : len(ids) - 1].tolist()
                for kind, value in zip(token_classes(pieces(ids[first:])), values, strict=True):
                    per_class[kind].append(value)
    total_tokens = sum(len(v) for v in per_class.values())
    if total_tokens == 0:
        raise QuagmireError(f"held-out split {heldout} has no response tokens within max_length={max_length}")
    loss = math.fsum(v for values in per_class.values() for v in values) / total_tokens
    return {
        "genloss": loss,
        "perplexity": math.exp(loss),
        "n_tokens": total_tokens,
        "n_examples": len(examples),
        "max_length": max_length,
        "chat_template": has_chat_template(tokenizer),
        "definition": DEFINITION,
        "decomposition": decomposition(per_class),
        "decomposition_rule": TOKEN_CLASS_RULE,
        "model": str(model_dir),
        "heldout": str(heldout),
    }


def genloss_to_file(
    model: str | os.PathLike[str],
    heldout: str | os.PathLike[str],
    out: str | os.PathLike[str],
    max_length: int,
    batch_size: int,
    threads: int = 1,
) -> dict[str, Any]:
    """The held-out loss of the checkpoint in `model`, written as JSON: the `quagmire genloss` step of the DAG.
    `max_length` and `batch_size` come from the study's `genloss` section."""
    result = held_out_loss(Path(model), Path(heldout), max_length=max_length, batch_size=batch_size, threads=threads)
    return write_genloss(result, model, heldout, out, max_length=max_length, batch_size=batch_size)


def write_genloss(
    result: dict[str, Any],
    model: str | os.PathLike[str],
    heldout: str | os.PathLike[str],
    out: str | os.PathLike[str],
    max_length: int,
    batch_size: int,
    measured_on: tuple[str, str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Write `held_out_loss`'s `result` as the generalization loss of the checkpoint in `model`, with its manifest.

    `result` may have been measured on another folder with the same weights, config and tokenizer (the loss-along-
    SFT job's last snapshot): it is checked to be of these settings, and written as `model`'s, the folder it was
    measured in named as a further input (`measured_on`: its role and path), so the manifest says what was read.
    """
    from quagmire.io import write_json
    from quagmire.provenance import MANIFEST_KEY, step_manifest

    if (result["max_length"], result["heldout"]) != (max_length, str(Path(heldout))):
        raise QuagmireError(f"a held-out loss measured with max_length {result['max_length']} on "
                            f"{result['heldout']} is not the one asked for ({max_length}, {heldout})")  # fmt: skip
    result = {**result, "model": str(Path(model))}
    inputs = [("model", model), ("heldout", heldout), *([measured_on] if measured_on else [])]
    settings = {"max_length": max_length, "batch_size": batch_size}
    result[MANIFEST_KEY] = step_manifest("genloss", inputs, settings=settings)
    write_json(out, result)
    log.info("generalization loss %.4f over %d tokens", result["genloss"], result["n_tokens"])
    return result
