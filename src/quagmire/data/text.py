"""Text normalization shared by the data stage: what counts as text at all (`clean_text`), and the normalized
forms dedup and decontamination compare (`dedup_key`, `ngram_words`).

Why one module: the same problem copied between a training set and a benchmark picks up spacing, casing and
LaTeX-variant differences; every step that asks "is this the same problem?" must ask it the same way.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from quagmire.data.spec import is_missing

# LaTeX that changes spacing or sizing but not meaning (matched after casefolding, so \Big is \big).
_LATEX_SPACING = re.compile(
    r"\\(?:[,:;! ]|q?quad(?![a-z])|left(?![a-z])|right(?![a-z])|bigg?[lr]?(?![a-z])|(?:display|text)style(?![a-z]))"
)
_FRAC_VARIANT = re.compile(r"\\[dt]frac(?![a-z])")
_MATH_DELIMITER = re.compile(r"(?<!\\)\$|\\[()\[\]]|~")
_SPACES = re.compile(r"\s+")
_SPACE_AROUND_SYMBOL = re.compile(r"\s*([^\w\s])\s*")
_TRAILING_PUNCTUATION = re.compile(r"[.,;:!?]+$")
_WORD = re.compile(r"[^\W_]+")


def canonical(text: str) -> str:
    """NFKC, casefolded, LaTeX spacing/sizing commands removed, \\dfrac/\\tfrac as \\frac, `$ \\( \\) \\[ \\] ~`
    as spaces: the differences a copy of a problem picks up without changing the problem."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _LATEX_SPACING.sub(" ", text)
    text = _FRAC_VARIANT.sub(r"\\frac", text)
    return _MATH_DELIMITER.sub(" ", text)


def key_of_canonical(canonical: str) -> str:
    """`dedup_key` of text already passed through `canonical`."""
    text = _SPACE_AROUND_SYMBOL.sub(r"\1", _SPACES.sub(" ", canonical)).strip()
    return _TRAILING_PUNCTUATION.sub("", text)


def dedup_key(text: str) -> str:
    """The text as normalized dedup compares it: `canonical`, then whitespace collapsed to one space, spaces
    next to a symbol removed (`x + 1` = `x+1`), trailing `. , ; : ! ?` removed. Symbols themselves are kept:
    `|-3|` and `|3|` are different problems."""
    return key_of_canonical(canonical(text))


def ngram_words(text: str) -> list[str]:
    """The words decontamination compares: runs of letters and digits of the `canonical` text (every symbol
    is a separator, so `\\frac{1}{2}` gives `frac 1 2`); recall first, since long n-grams rarely collide."""
    return words_of_canonical(canonical(text))


def words_of_canonical(canonical: str) -> list[str]:
    """`ngram_words` of text already in `canonical` form (the index computes it once for two uses)."""
    return _WORD.findall(canonical)


def grams(words: Sequence[str], size: int) -> Iterable[tuple[str, ...]]:
    """Every run of `size` consecutive words."""
    return zip(*(words[i:] for i in range(size)), strict=False)


def clean_text(value: Any) -> tuple[str | None, str]:
    """(stripped text, "") or (None, why): "missing", "not_text", "invalid_text" or "empty".

    Invalid text is what would break a later stage rather than this one: bytes that are not UTF-8, lone
    surrogates (they cannot be written to Parquet or tokenized) and NUL characters.
    """
    if is_missing(value):
        return None, "missing"
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None, "invalid_text"
    if not isinstance(value, str):
        return None, "not_text"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None, "invalid_text"
    if "\x00" in value:
        return None, "invalid_text"
    text = value.strip()
    return (text, "") if text else (None, "empty")
