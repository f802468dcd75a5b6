"""Hugging Face model folders, read the same way by every stage: the tokenizer, the chat template, the size.

Why a module of its own: paper-scale training, sampling, genloss, the data filters and the embedded world all
load tokenizers from saved folders, and a second way to load one (AutoTokenizer) would silently swap the
tokenizer class for some model configs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quagmire.errors import QuagmireError


def load_tokenizer(path: str | Path):  # -> transformers.PreTrainedTokenizerFast
    """Load a saved tokenizer explicitly as a fast tokenizer.

    Why not AutoTokenizer: in transformers 5 a model config (e.g. Qwen2/Llama) can make AutoTokenizer swap in
    another tokenizer class; loading the saved files directly keeps exactly what was trained with.
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(path))


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the model expects chat-formatted input (hub instruct models do; the embedded char model does not)."""
    return bool(getattr(tokenizer, "chat_template", None))


def num_parameters(model_dir: Path) -> int:
    """Parameters of the saved model in `model_dir`, read from the safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise QuagmireError(f"{model_dir} has no *.safetensors weights to count parameters from")
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                count = 1
                for dim in handle.get_slice(name).get_shape():
                    count *= dim
                total += count
    return total
