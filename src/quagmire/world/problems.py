"""The embedded synthetic math world: verifiable column-arithmetic problems with worked solutions.

Why a synthetic world: the study needs models that can be trained (SFT, then GRPO), sampled many times and graded
on a laptop CPU with no downloads. Column arithmetic has what the paper's setting needs at tiny scale: a gold
answer for every problem; a step-by-step procedure built from one-digit facts that a 1M-parameter model learns
partially (so pass@k >> pass@1 and RL has signal); difficulty levels (the number of digits: each column is one
more chance to slip); and two solution styles, short and long, so that length-based SFT subsets differ in more
than length.

Families: `add` (59+63), `sub` (63-59, never negative), `mul` (47*6, by one digit).
Every solution ends in `\\boxed{answer}`, so the same grader as for the paper's benchmarks applies.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

FAMILIES = ("add", "sub", "mul")
STYLES = ("short", "long")
PRETRAIN_LEVEL = 1  # one-digit problems belong to pre-training, never to a pool

_OPERATOR = {"add": "+", "sub": "-", "mul": "*"}
_APPLY: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
}


@dataclass(frozen=True)
class Problem:
    """`a op b`; `level` = number of digits of `a` (and of `b` for add/sub)."""

    family: str
    level: int
    a: int
    b: int

    @property
    def question(self) -> str:
        """The prompt text the model sees (the plain template adds nothing around it)."""
        return f"{self.a}{_OPERATOR[self.family]}{self.b}="

    @property
    def key(self) -> str:
        """Identity across pools: two problems are the same iff their questions are."""
        return self.question

    @property
    def answer(self) -> int:
        return _APPLY[self.family](self.a, self.b)

    def columns(self) -> list[tuple[str, int]]:
        """The column steps, right to left: ('5+6+1', 12) is a column with an incoming carry of 1."""
        return _COLUMNS[self.family](self.a, self.b)


def _digits(x: int, width: int) -> list[int]:
    """Digits of x, least significant first, zero-padded to `width`."""
    return [(x // 10**i) % 10 for i in range(width)]


def _add_columns(a: int, b: int) -> list[tuple[str, int]]:
    width = max(len(str(a)), len(str(b)))
    steps, carry = [], 0
    for x, y in zip(_digits(a, width), _digits(b, width), strict=True):
        total = x + y + carry
        steps.append((f"{x}+{y}" + (f"+{carry}" if carry else ""), total))
        carry = total // 10
    return steps


def _sub_columns(a: int, b: int) -> list[tuple[str, int]]:
    width = len(str(a))
    steps, borrow = [], 0
    for x, y in zip(_digits(a, width), _digits(b, width), strict=True):
        top = x - borrow
        borrow = 1 if top < y else 0
        steps.append((f"{top + 10 * borrow}-{y}", top + 10 * borrow - y))
    return steps


def _mul_columns(a: int, b: int) -> list[tuple[str, int]]:
    steps, carry = [], 0
    for x in _digits(a, len(str(a))):
        total = x * b + carry
        steps.append((f"{x}*{b}" + (f"+{carry}" if carry else ""), total))
        carry = total // 10
    return steps


_COLUMNS = {"add": _add_columns, "sub": _sub_columns, "mul": _mul_columns}


def solution(problem: Problem, style: str) -> str:
    """A worked solution, one column per step, each step ending in the answer digits written so far.

    'short': '9+3=12:2,5+6+1=12:122 \\boxed{122}'. 'long' spells the carries and the answer out:
    '9+3=12 carry 1 so 2, 5+6+1=12 so 122, answer \\boxed{122}' (about 1.5 times as many tokens).
    Carrying the partial result along keeps every step local, which is what a tiny model can learn.
    """
    boxed = f"\\boxed{{{problem.answer}}}"
    steps = problem.columns()
    partials, written = [], ""
    for i, (_, value) in enumerate(steps):
        last = i == len(steps) - 1
        written = (str(value) if last else str(value % 10)) + written
        partials.append(str(int(written)) if last else written)
    if style == "short":
        return ",".join(f"{e}={v}:{p}" for (e, v), p in zip(steps, partials, strict=True)) + f" {boxed}"
    if style == "long":
        parts = []
        for i, ((expr, value), partial) in enumerate(zip(steps, partials, strict=True)):
            last = i == len(steps) - 1
            carry = "" if last or problem.family == "sub" or value < 10 else f" carry {value // 10}"
            parts.append(f"{expr}={value}{carry} so {partial}")
        return ", ".join(parts) + f", answer {boxed}"
    raise ValueError(f"unknown solution style {style!r} (known: {', '.join(STYLES)})")


def sample_problem(rng: random.Random, family: str, level: int) -> Problem:
    """Draw one problem of `family` whose operand(s) have `level` digits."""
    if level < 1:
        raise ValueError(f"level must be >= 1 (got {level})")
    lo, hi = (0 if level == 1 else 10 ** (level - 1)), 10**level - 1
    if family == "add":
        return Problem(family, level, rng.randint(lo, hi), rng.randint(lo, hi))
    if family == "sub":
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        return Problem(family, level, max(a, b), min(a, b))
    if family == "mul":
        return Problem(family, level, rng.randint(lo, hi), rng.randint(2, 9))
    raise ValueError(f"unknown problem family {family!r} (known: {', '.join(FAMILIES)})")


def unique_problems(
    rng: random.Random, mix: list[tuple[str, int]], count: int, taken: set[str]
) -> Iterator[Problem]:
    """Yield `count` problems cycling through (family, level) pairs, skipping any key already in `taken`.

    `taken` is updated in place: it is how pools stay disjoint.
    """
    produced, attempts = 0, 0
    while produced < count:
        family, level = mix[attempts % len(mix)]
        attempts += 1
        if attempts > 200 * count + 1000:
            raise ValueError(
                f"cannot draw {count} unique problems from {sorted(set(mix))}: the space is too small"
            )
        problem = sample_problem(rng, family, level)
        if problem.key in taken:
            continue
        taken.add(problem.key)
        produced += 1
        yield problem
