"""Answer text: what of a gold or a completion is handed to math-verify, as a slice of the original text.

Shared by the data stage (golds of training sources and benchmarks), evaluation (grading) and training (the
GRPO reward), so that every stage reads an answer the same way. Nothing here parses math: `quagmire.verify_pool`
does, in worker processes. Every function is linear in the length of its text (a megabyte of nested braces
takes milliseconds), because model outputs are untrusted.

Semantics: math-verify's own. `parse(completion)` with its default extraction configuration reads, when the
completion has a `\\boxed{`, the *chain* of boxes that ends the completion: the last box, plus each box before
it that is within 10 characters, or within 70 characters with a separator ("and", "or", ",", ";") and a
different content; the contents are joined with "," and parsed together (a set). So `\\boxed{-2} and
\\boxed{1}` answers the multi-answer gold `1,-2`, and the hedge `\\boxed{3} or \\boxed{5}` answers {3, 5},
which is wrong for the gold 5. Without a box, math-verify searches the whole completion ("final answer is"
lines, "answer:", math environments, then the last bare number or expression).

`answer_text` hands the worker only what math-verify's default extraction would read, so that identical answers
written in different completions are graded once (the pool dedups on this text): `\\boxed{<chain joined by
",">}` when the completion ends in a closed chain of boxes, else the whole completion. Parsing that text gives
the same normalized LaTeX string as `parse(completion)` (tests/test_grading_corpus.py checks it case by case).
Deliberate deviations from plain `parse(completion)`, kept because they are rare and make the grade follow the
box a model wrote:

- when the boxed chain does not parse (e.g. `\\boxed{???}`), the completion has no answer; math-verify would
  fall back to another number or "answer:" phrase elsewhere in the text;
- a math environment around the last boxes (`$x = \\boxed{3}$`) or a "final answer is" phrase before them
  is not consulted: math-verify would read that environment's boxes instead, which differ from the chain only
  when one environment holds several boxes far apart.

A "final answer" phrase *after* the last box, and a last box that never closes (a truncated completion),
send the whole completion, where math-verify's own extraction decides. Golds are boxed unless they carry
their own delimiters (`gold_text`), because benchmark golds are bare LaTeX (`1,-2`, `\\frac{1}{2}`) that
plain `parse` would read as its last number.
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


# math-verify's plain box pattern `\\boxed{.+}` (DOTALL) runs from the first `\\boxed{` to the last `}`.
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)")
_BRACE = re.compile(r"[{}]")
_CHAIN_SEPARATOR = re.compile(r"\b(?:and|or)\b|,|;")  # math-verify's VALID_SEPARATOR_PATTERN
_CHAIN_NEAR = 10  # boxes closer than this (characters between them) always join the chain
_CHAIN_FAR = 70  # boxes closer than this join when a separator lies between them and their contents differ
_FINAL_ANSWER = re.compile(r"(?i:final answer)")


def final_boxes(text: str) -> list[str] | None:
    """The contents of the chain of boxes math-verify's default `parse` reads, in order; None without one.

    Mirrors math-verify's plain box pattern (`\\boxed{.+}`, from the first `\\boxed{` to the last `}`) and its
    "last" box extraction: from the right, each box joins while it is near the one after it (see the module
    docstring), consecutive equal contents collapse. Braces are counted as math-verify counts them (a `\\{` is a
    brace too). None when there is no such region, or when its last box never closes (math-verify then falls
    back to the rest of the text). Linear: each stretch of text is scanned once.
    """
    start = text.find("\\boxed{")
    end = text.rfind("}") + 1
    if start < 0 or end < start + len("\\boxed{") + 2:  # `.+` needs a character before the closing brace
        return None
    commands = [(m.start(), m.end()) for m in _BOX_COMMAND.finditer(text, start, end)]
    contents: list[str] = []
    limit = end  # the region's end, then the start of the box found last
    for command_start, command_end in reversed(commands):
        brace = command_end
        while brace < limit and text[brace].isspace():
            brace += 1
        if brace >= limit or text[brace] != "{":
            return None if not contents else contents[::-1]  # math-verify keeps raw text here: not a clean box
        close = _closing_brace_plain(text, brace + 1, limit)
        if close is None:
            return None if not contents else contents[::-1]
        content = text[brace + 1 : close].strip()
        if contents and not _joins_chain(text, content, contents[-1], close, limit):
            break
        if not contents or contents[-1] != content:
            contents.append(content)
        limit = command_start
    return contents[::-1] if contents else None


def _joins_chain(text: str, content: str, next_content: str, close: int, next_start: int) -> bool:
    """math-verify's rule for a box to join the chain of the box that follows it."""
    between = text[close + 1 : next_start]
    if len(between) < _CHAIN_NEAR:
        return True
    return content != next_content and len(between) < _CHAIN_FAR and bool(_CHAIN_SEPARATOR.search(between))


def _closing_brace_plain(text: str, begin: int, limit: int) -> int | None:
    """Index of the brace closing depth 1 from `begin`, before `limit`; every brace counts (as in math-verify)."""
    if limit - begin > _VECTOR_SCAN_FROM:
        import numpy as np

        codes = np.frombuffer(text[begin:limit].encode("utf-32-le"), dtype=np.uint32)
        step = (codes == ord("{")).astype(np.int64) - (codes == ord("}"))
        closed = np.flatnonzero(np.cumsum(step) == -1)
        return begin + int(closed[0]) if len(closed) else None
    depth = 1
    for match in _BRACE.finditer(text, begin, limit):
        depth += 1 if match.group() == "{" else -1
        if depth == 0:
            return match.start()
    return None


def answer_text(completion: str) -> tuple[str, str | None]:
    """(text to parse, boxed answer): the final chain of boxes as one box, else the whole completion.

    See the module docstring for why this equals math-verify's default reading of the completion. The boxed
    answer (the chain's contents joined by ",") is a slice of the completion, shown as the extracted answer.
    """
    chain = final_boxes(completion)
    if chain is None:
        return completion, None
    joined = ",".join(chain)
    if not joined or _FINAL_ANSWER.search(completion, completion.rfind("}") + 1):
        return completion, None  # empty box, or a "final answer" line after the boxes: math-verify decides
    return f"\\boxed{{{joined}}}", joined


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
