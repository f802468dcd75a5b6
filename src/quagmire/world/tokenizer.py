"""A character-level tokenizer for the embedded world, saved as a standard Hugging Face fast tokenizer.

Why character level: arithmetic is digit-by-digit, the vocabulary stays tiny (about 100 symbols), and the same
`PreTrainedTokenizerFast` files load through the same code path as a hub tokenizer.
"""

from __future__ import annotations

import os
import string

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
# Every printable ASCII character except the whitespace that is not a plain space.
CHARACTERS = tuple(c for c in string.printable if c not in "\t\n\r\x0b\x0c")


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """Return a fresh char-level fast tokenizer: each character is one token, BOS is prepended."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *CHARACTERS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    from tokenizers import decoders

    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        model_max_length=512,
    )


def tokenizer_to_file(out: str | os.PathLike[str]) -> None:
    """Save the embedded world's tokenizer to the folder `out` (written whole or not at all): the
    `quagmire tokenizer` step of the DAG."""
    from quagmire.io import atomic_dir

    with atomic_dir(out) as tmp:
        build_tokenizer().save_pretrained(tmp)
