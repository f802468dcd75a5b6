"""The tiny Llama-style model of the embedded study, built in code (no download) and pre-trained in the DAG.

The architecture is the real `LlamaForCausalLM`, so every later stage (SFT, GRPO, sampling, held-out loss)
runs the same code it would run on a hub checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TinyModelSpec:
    """Size of the embedded model: the defaults give about 0.23M parameters.

    One layer: on the column world it learned twice as much per SFT step as four layers, at a third of the cost.
    """

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 1
    num_attention_heads: int = 4
    max_position_embeddings: int = 256

    @classmethod
    def from_config(cls, section: dict) -> TinyModelSpec:
        return cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})


def build_model(spec: TinyModelSpec, tokenizer, seed: int):  # -> transformers.LlamaForCausalLM
    """A freshly initialised Llama model sized by `spec`, with the tokenizer's special token ids wired in."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def count_parameters(model) -> int:
    """Number of distinct trainable parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
