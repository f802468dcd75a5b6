"""Generalization loss: token-weighted NLL of held-out responses, the same for every run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from quagmire.eval.genloss import (
    DEFINITION,
    TOKEN_CLASS_RULE,
    TOKEN_CLASSES,
    char_classes,
    encode_example,
    held_out_loss,
    token_classes,
)
from quagmire.hf import load_tokenizer


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


# --- the same tokens SFT trains on ------------------------------------------------------------------------------



@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat-template"])
def test_loss_counts_exactly_the_tokens_sft_trains_on(
    chat: bool, tiny_base: Path, chat_base: Path, heldout: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from quagmire.train.sft import prompt_completion_dataset

    model_dir = chat_base if chat else tiny_base
    tokenizer = load_tokenizer(model_dir)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=SFTConfig(output_dir=str(tmp_path), max_length=40, completion_only_loss=True, report_to=[], use_cpu=True),
        train_dataset=prompt_completion_dataset(pd.read_parquet(heldout), tokenizer),
        processing_class=tokenizer,
    )
    trained_on = sum(sum(label != -100 for label in row["labels"]) for row in trainer.train_dataset)
    result = held_out_loss(model_dir, heldout, max_length=40)
    assert result["n_tokens"] == trained_on
    assert result["chat_template"] is chat


# --- decomposition by token class -------------------------------------------------------------------------------


def test_decomposition_splits_the_whole_loss(tiny_base: Path, heldout: Path) -> None:
    result = held_out_loss(tiny_base, heldout)
    parts = result["decomposition"]
    assert set(parts) == set(TOKEN_CLASSES)
    assert sum(p["n_tokens"] for p in parts.values()) == result["n_tokens"]
    assert sum(p["share_of_loss"] for p in parts.values()) == pytest.approx(1.0, abs=1e-12)
    assert sum(p["share_of_tokens"] for p in parts.values()) == pytest.approx(1.0, abs=1e-12)
    total_nll = sum(p["nll_sum"] for p in parts.values())
    assert total_nll / result["n_tokens"] == pytest.approx(result["genloss"], rel=1e-9)
    for part in parts.values():
        if part["n_tokens"]:
            assert part["mean_nll"] == pytest.approx(part["nll_sum"] / part["n_tokens"])
    assert parts["math"]["n_tokens"] > parts["word"]["n_tokens"], "the embedded world's solutions are mostly math"
    assert parts["other"]["n_tokens"] >= result["n_examples"], "every response ends with EOS (other)"
    assert result["decomposition_rule"] == TOKEN_CLASS_RULE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12+30=42", "mmmmmmmm"),
        ("The sum is", "wwwowwwoww"),
        ("\\boxed{42}.", "mmmmmmmmmmo"),
        ("so 2x+1", "wwommmm"),
        ("a b", "wow"),
        ("3.5, then", "mmmoowwww"),
        ("f(x)=x^2", "mmmmmmmm"),
    ],
)
def test_characters_are_classified_as_math_word_or_other(text: str, expected: str) -> None:
    short = {"math": "m", "word": "w", "other": "o"}
    assert "".join(short[c] for c in char_classes(text)) == expected


def test_tokens_take_the_class_of_most_of_their_characters() -> None:
    # A LaTeX command split over tokens stays math; special tokens (None) and spaces are other.
    pieces = ["The", " answer", " is", " \\", "box", "ed", "{", "4", "2", "}", ".", None, " "]
    short = {"math": "m", "word": "w", "other": "o"}
    assert "".join(short[c] for c in token_classes(pieces)) == "wwwmmmmmmmooo"
    assert "".join(short[c] for c in token_classes([" x", "^2", " times", " 3"])) == "mmwm"


def test_the_loss_runs_on_the_jobs_gpu_in_bfloat16_and_on_the_cpu_in_float32(monkeypatch) -> None:
    """A genloss job at paper scale requests a GPU: the model must go there (on the CPU it would idle it for hours)."""
    import torch

    from quagmire.eval.genloss import loss_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loss_device() == ("cpu", torch.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loss_device() == ("cuda", torch.bfloat16)
