"""Generalization loss: token-weighted NLL of held-out responses, the same for every run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from quagmire.genloss import DEFINITION, encode_example, held_out_loss
from quagmire.world.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def heldout(tiny_world: Path) -> Path:
    return tiny_world / "heldout.parquet"


def test_loss_equals_a_direct_computation_over_response_tokens(tiny_base: Path, heldout: Path) -> None:
    from transformers import AutoModelForCausalLM

    result = held_out_loss(tiny_base, heldout, max_length=256, batch_size=5)
    tokenizer = load_tokenizer(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    frame = pd.read_parquet(heldout)
    total, count = 0.0, 0
    for prompt, response in zip(frame["prompt"], frame["response"], strict=True):
        ids = tokenizer(prompt + response + tokenizer.eos_token)["input_ids"]
        start = len(tokenizer(prompt)["input_ids"])
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
        for t in range(start, len(ids)):
            total -= logp[t - 1, ids[t]].item()
            count += 1
    assert result["n_tokens"] == count
    assert result["genloss"] == pytest.approx(total / count, rel=1e-4)
    assert result["n_examples"] == len(frame)
    assert result["definition"] == DEFINITION


def test_batch_size_does_not_change_the_loss(tiny_base: Path, heldout: Path) -> None:
    one = held_out_loss(tiny_base, heldout, batch_size=1)["genloss"]
    many = held_out_loss(tiny_base, heldout, batch_size=32)["genloss"]
    assert one == pytest.approx(many, rel=1e-4)


def test_prompt_tokens_are_never_scored(tiny_base: Path) -> None:
    tokenizer = load_tokenizer(tiny_base)
    ids, start = encode_example(tokenizer, "12+30=", "2+0=2:2,1+3=4:42 \\boxed{42}", max_length=256)
    assert start == len(tokenizer("12+30=")["input_ids"])
    assert tokenizer.decode(ids[start:], skip_special_tokens=True) == "2+0=2:2,1+3=4:42 \\boxed{42}"
    assert ids[-1] == tokenizer.eos_token_id


def test_truncation_applies_the_same_max_length(tiny_base: Path, heldout: Path) -> None:
    full = held_out_loss(tiny_base, heldout, max_length=256)
    short = held_out_loss(tiny_base, heldout, max_length=12)
    assert short["n_tokens"] < full["n_tokens"]
    assert short["max_length"] == 12
