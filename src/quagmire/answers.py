"""Answer text: what of a gold or a completion is handed to math-verify, as a slice of the original text.

Shared by the data stage (golds of training sources and benchmarks), evaluation (grading) and training (the
GRPO reward), so that every stage reads an answer the same way. Nothing here parses math: `quagmire.verify_pool`
does, in worker processes. Every function is linear in the length of its text (a megabyte of nested braces
takes milliseconds), because model outputs are untrusted.
"""

from __future__ import annotations

import decimal
import numbers
import re
from typing import Any

# Greedy `.*` then backtracking from the end: the match ends just after the last `\boxed{` / `\fbox {`.
_LAST_BOX_OPENING = re.compile(r"(?s:.*)\\(?:boxed|fbox)\s*\{")
# An escaped character (so `\{` and `\}` do not count) or a bare brace.
_BRACE_OR_ESCAPE = re.compile(r"\\[\\{}]|[{}]")

_VECTOR_SCAN_FROM = 4096  # characters after `\\boxed{` beyond which brace matching runs in numpy
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), stripped; None if absent or never closed.

    Linear in the length of `text`: one regex pass (in C) finds the last opening, one scan matches braces.
    """
    opening = _LAST_BOX_OPENING.match(text)
    return None if opening is None else _braced_content(text, opening.end())


def _braced_content(text: str, begin: int) -> str | None:
    """Text from `begin` up to the brace closing the one just before it (escaped braces skipped), or None."""
    if len(text) - begin > _VECTOR_SCAN_FROM:
        close = _closing_brace_vectorized(text, begin)
    else:
        close = _closing_brace_loop(text, begin)
    return None if close is None else text[begin:close].strip()


def _closing_brace_loop(text: str, begin: int) -> int | None:
    """Index of the brace closing depth 1 from `begin`; a Python loop over brace tokens (short tails)."""
    depth = 1
    for match in _BRACE_OR_ESCAPE.finditer(text, begin):
        token = match.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return match.start()
    return None


def _closing_brace_vectorized(text: str, begin: int) -> int | None:
    """Same as `_closing_brace_loop`, in numpy: milliseconds even for a megabyte of nested braces."""
    import numpy as np

    codes = np.frombuffer(text[begin:].encode("utf-32-le"), dtype=np.uint32)
    positions = np.arange(len(codes))
    is_backslash = codes == ord("\\")
    # A character is escaped when the run of backslashes just before it has odd length.
    last_plain = np.maximum.accumulate(np.where(is_backslash, -1, positions))
    run_before = np.zeros(len(codes), dtype=np.int64)
    run_before[1:] = positions[:-1] - last_plain[:-1]
    unescaped = run_before % 2 == 0
    step = ((codes == ord("{")) & unescaped).astype(np.int64) - ((codes == ord("}")) & unescaped)
    closed = np.flatnonzero(np.cumsum(step) == -1)
    return begin + int(closed[0]) if len(closed) else None



def gold_text(gold: str) -> str:
    """The gold as math-verify should read it: boxed, unless it already carries its own delimiters."""
    gold = gold.strip()
    if "\\boxed" in gold or _UNESCAPED_DOLLAR.search(gold):  # "\\$36" is a dollar amount, not a delimiter
        return gold
    return f"\\boxed{{{gold}}}"


def answer_text(completion: str) -> tuple[str, str | None]:
    """(text to parse, boxed content): the boxed answer alone when there is one, else the whole completion."""
    boxed = extract_boxed(completion)
    if boxed is None:
        return completion, None
    return f"\\boxed{{{boxed}}}", boxed


def as_text(value: Any) -> str:
    """A gold or completion cell as a string: missing values become empty text (never a sympy object).

    A number (a float gold cell read from Parquet, a numpy scalar, a Decimal) is written by `number_text`, so a
    gold `1e-07` reaches math-verify as `0.0000001`, never as "e − 7"; NaN and ±inf are missing (empty text).
    A bool is not a number (see `number_text`) and keeps its text, `True` or `False`.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if _is_number(value):
        return number_text(value) or ""
    return str(value)


def _is_number(value: Any) -> bool:
    """A real number of any kind (int, float, numpy scalar, Decimal, Fraction); bools are not numbers."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    return isinstance(value, (numbers.Real, decimal.Decimal))


def number_text(value: Any) -> str | None:
    """A number as a plain decimal, the one form in which a number becomes answer text; None if not a number.

    `27.0` -> `27`, `2.5` -> `2.5`, `1e-07` -> `0.0000001`, `2.5e+20` -> `250000000000000000000`, `-0.0` -> `0`.
    Why: math-verify reads `1e-07` as the expression e − 7, and a float's binary noise (`0.1` as
    `0.1000000000000000055…`) is not what the data set meant. So a float keeps the shortest digits that
    round-trip it (Python's `repr`; for a numpy float32 or float16, the shortest digits of its own precision,
    numpy's `str`), and only the decimal point moves: no exponent, no digits invented or lost. Integers
    (Python, numpy, of any size) are written in full. A Decimal keeps its digits, trailing zeros after the
    point dropped. A Fraction is an integer when its denominator is 1, else read as a float.
    Not numbers (None): bools (`True` is an answer to a yes/no question, not 1: the data stage drops such a
    gold as `answer_not_text` rather than guess), NaN and ±inf (no answer; callers treat them as missing),
    complex numbers, strings and any other type.
    """
    if not _is_number(value):
        return None
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Rational) and value.denominator == 1:
        return str(int(value.numerator))
    try:
        if isinstance(value, decimal.Decimal):
            number = value
        elif isinstance(value, float):  # Python floats and numpy float64 (a float subclass)
            number = decimal.Decimal(repr(float(value)))
        elif type(value).__module__ == "numpy":  # float32, float16, longdouble: shortest digits of their precision
            number = decimal.Decimal(str(value))
        else:
            number = decimal.Decimal(repr(float(value)))
    except (ArithmeticError, ValueError):  # a Fraction too large for a float; text Decimal cannot read
        return None
    if not number.is_finite():
        return None
    if number.is_zero():
        return "0"  # -0.0 is zero as an answer
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def completion_text(completion: Any) -> str:
    """A TRL completion as text: a plain string, or the content of the last message of a conversation."""
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return as_text(completion[-1].get("content"))
    return as_text(completion)
