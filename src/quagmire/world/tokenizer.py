"""The embedded world's tokenizer, saved as a standard Hugging Face fast tokenizer: characters, plus the world's
words as single tokens.

Why: arithmetic is digit-by-digit, so digits and symbols are one token each and the vocabulary stays tiny (about
110 symbols). The words of the long solution style (`problems.WORDS`: " carry", " thus", "\\boxed{", ...) are one
token each, as a BPE vocabulary would have them: spelled letter by letter they would make a long solution nearly
twice as many tokens, all of them trivially predictable, which costs generation and training time and dilutes the
held-out loss with letters. The same `PreTrainedTokenizerFast` files load through the same code path as a hub
tokenizer.
"""

from __future__ import annotations

import os
import re
import string

from quagmire.world.problems import WORDS

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
# Every printable ASCII character except the whitespace that is not a plain space.
CHARACTERS = tuple(c for c in string.printable if c not in "\t\n\r\x0b\x0c")


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """Return a fresh fast tokenizer: each of the world's words is one token, every other character is one token,
    BOS is prepended."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *CHARACTERS, *WORDS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    words = "|".join(re.escape(word) for word in sorted(WORDS, key=len, reverse=True))  # longest first
    core.pre_tokenizer = pre_tokenizers.Split(Regex(f"{words}|."), behavior="isolated")
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
