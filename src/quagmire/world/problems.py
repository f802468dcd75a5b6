"""The embedded synthetic math world: verifiable column-arithmetic problems with worked solutions.

Why a synthetic world: the study needs models that can be trained (SFT, then GRPO), sampled many times and graded
on a laptop CPU with no downloads. Column arithmetic has what the paper's setting needs at tiny scale: a gold
answer for every problem; a step-by-step procedure built from one-digit facts that a 1M-parameter model learns
partially (so pass@k >> pass@1 and RL has signal); and difficulty (more digits, more carries: each column is one
more chance to slip).

Solutions behave like real SFT data where the paper's mechanisms live. Their length tracks difficulty: writers
answer an easy problem tersely (the answer alone) and spell out more of the procedure the harder it is
(`STYLES`, chosen per problem by `world.styles`), so a length-selected subset differs in *what* it teaches, not
only in how fast it is fitted. And their wording varies like real prose: the long style says the same step in
several equivalent ways (`_SO`, `_CARRY`, `_ANSWER`), an entropy no model can predict from the problem, so
training past the point where the procedure is learned memorizes the training set's wording and the held-out
loss turns up.

Families: `add` (59+63), `sub` (63-59, never negative), `mul` (47*6, by one digit).
Every solution ends in `\\boxed{answer}`, so the same grader as for the paper's benchmarks applies.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

FAMILIES = ("add", "sub", "mul")
STYLES = ("terse", "short", "long")  # ordered by how much of the procedure a solution spells out
MAX_DIFFICULTY = 3  # difficulty() is capped here: `world.styles` gives one weight per level 0..MAX_DIFFICULTY
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

    def difficulty(self) -> int:
        """0 (easy) .. MAX_DIFFICULTY: the carries or borrows the procedure needs, plus one per digit beyond two.

        What makes a column problem hard for a human or a tiny model is the steps that depend on an earlier one.
        """
        return min(MAX_DIFFICULTY, _carries(self.family, self.a, self.b) + max(0, self.level - 2))

    def columns(self) -> list[tuple[str, int]]:
        """The column steps, right to left: ('5+6+1', 12) is a column with an incoming carry of 1."""
        return _COLUMNS[self.family](self.a, self.b)


def _carries(family: str, a: int, b: int) -> int:
    """How many columns take a carry (add, mul) or a borrow (sub) from the column to their right."""
    width = len(str(a)) if family != "add" else max(len(str(a)), len(str(b)))
    count, carry = 0, 0
    for x, y in zip(_digits(a, width), _digits(b, width) if family != "mul" else [b] * width, strict=True):
        count += carry > 0
        if family == "add":
            carry = (x + y + carry) // 10
        elif family == "sub":
            carry = 1 if x - carry < y else 0
        else:
            carry = (x * y + carry) // 10
    return count


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


_SO = (" so ", " thus ", " gives ")  # equivalent wordings of one long-style step: what memorization latches onto
_CARRY = (" carry {}", " carrying {}", " and carry {}")
_ANSWER = (", answer ", ", result ", ". Answer: ")
BOXED = "\\boxed{"
# The words of the solutions, each with its leading space: one token each in the world's tokenizer, as in BPE
WORDS = (BOXED, *sorted({w for phrase in (*_SO, *_CARRY, *_ANSWER) for w in re.findall(r" [A-Za-z]+", phrase)}))


def solution(problem: Problem, style: str, rng: random.Random | None = None) -> str:
    """A worked solution, one column per step, each step ending in the answer digits written so far.

    'terse': the answer alone, '\\boxed{122}'. 'short': '9+3=12:2,5+6+1=12:122 \\boxed{122}'. 'long' spells the
    carries and the answer out, in wording drawn from `rng` (the first wording without one):
    '9+3=12 carry 1 so 2, 5+6+1=12 so 122, answer \\boxed{122}' (about 1.7 times the short style's tokens).
    Carrying the partial result along keeps every step local, which is what a tiny model can learn.
    """
    boxed = f"\\boxed{{{problem.answer}}}"
    if style == "terse":
        return boxed
    steps = problem.columns()
    partials, written = [], ""
    for i, (_, value) in enumerate(steps):
        last = i == len(steps) - 1
        written = (str(value) if last else str(value % 10)) + written
        partials.append(str(int(written)) if last else written)
    if style == "short":
        return ",".join(f"{e}={v}:{p}" for (e, v), p in zip(steps, partials, strict=True)) + f" {boxed}"
    if style == "long":
        pick = (lambda options: options[0]) if rng is None else rng.choice
        parts = []
        for i, ((expr, value), partial) in enumerate(zip(steps, partials, strict=True)):
            last = i == len(steps) - 1
            carry = "" if last or problem.family == "sub" or value < 10 else pick(_CARRY).format(value // 10)
            parts.append(f"{expr}={value}{carry}{pick(_SO)}{partial}")
        return ", ".join(parts) + f"{pick(_ANSWER)}{boxed}"
    raise ValueError(f"unknown solution style {style!r} (known: {', '.join(STYLES)})")


def choose_style(problem: Problem, weights: Mapping[str, Sequence[float]], rng: random.Random) -> str:
    """The style a writer uses for `problem`: drawn with `weights[style][difficulty]` (`world.styles`)."""
    level = problem.difficulty()
    row = [float(weights[style][level]) for style in STYLES]
    if sum(row) <= 0:
        raise ValueError(f"world.styles gives difficulty {level} no weight in any style")
    return rng.choices(STYLES, weights=row)[0]


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
