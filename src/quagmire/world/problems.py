"""The embedded synthetic math world: verifiable arithmetic problems with worked solutions.

Why a synthetic world: the study needs models that can be trained (SFT, then GRPO), sampled many times and graded
on a laptop CPU with no downloads. Chains of one-digit operations evaluated left to right have what the paper's
setting needs at tiny scale: a gold answer for every problem; a step-by-step procedure that a 1M-parameter model
learns partially (so pass@k >> pass@1 and RL has signal); difficulty levels (the number of operations, where
each extra step is one more chance to slip); and two solution styles, short and long, that make length-based
SFT subsets differ in more than length.

Families: `sum` (9+3+5+2), `signed` (9-3+5-2, never below zero), `muladd` (7*8+3-4: a product, then a chain).
Every solution ends in `\\boxed{answer}`, so the same grader as for the paper's benchmarks applies.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

FAMILIES = ("sum", "signed", "muladd")
STYLES = ("short", "long")
PRETRAIN_LEVEL = 1  # one-operation problems belong to pre-training, never to a pool


@dataclass(frozen=True)
class Problem:
    """A chain `terms[0] ops[0] terms[1] ...`; `level` = number of operations."""

    family: str
    terms: tuple[int, ...]
    ops: tuple[str, ...]

    @property
    def level(self) -> int:
        return len(self.ops)

    @property
    def question(self) -> str:
        """The prompt text the model sees (the plain template adds nothing around it)."""
        parts = [str(self.terms[0])]
        for op, term in zip(self.ops, self.terms[1:], strict=True):
            parts.append(f"{op}{term}")
        return "".join(parts) + "="

    @property
    def key(self) -> str:
        """Identity across pools: two problems are the same iff their questions are."""
        return self.question

    def steps(self) -> list[tuple[str, int]]:
        """Left-to-right evaluation: [('9-3', 6), ('6+5', 11), ...]."""
        value, out = self.terms[0], []
        for op, term in zip(self.ops, self.terms[1:], strict=True):
            new = value * term if op == "*" else value + term if op == "+" else value - term
            out.append((f"{value}{op}{term}", new))
            value = new
        return out

    @property
    def answer(self) -> int:
        return self.steps()[-1][1]


def solution(problem: Problem, style: str) -> str:
    """A worked solution in `style`, reducing the chain one operation at a time.

    'short' writes only the successive states ('6+5-2=11-2=9'); 'long' also states each fact and what remains
    ('9-3=6, leaving 6+5-2; ...'). Both end in the boxed answer.
    """
    boxed = f"\\boxed{{{problem.answer}}}"
    steps = problem.steps()
    rests = [_chain(value, problem.ops[i + 1 :], problem.terms[i + 2 :]) for i, (_, value) in enumerate(steps)]
    if style == "short":
        return "=".join(rests) + f" {boxed}"
    if style == "long":
        narrated = "; ".join(f"{e}={v}, leaving {rest}" for (e, v), rest in zip(steps, rests, strict=True))
        return f"{narrated}; so {boxed}"
    raise ValueError(f"unknown solution style {style!r} (known: {', '.join(STYLES)})")


def _chain(first: int, ops: tuple[str, ...], terms: tuple[int, ...]) -> str:
    return str(first) + "".join(f"{op}{t}" for op, t in zip(ops, terms, strict=True))


def sample_problem(rng: random.Random, family: str, level: int, max_term: int = 9) -> Problem:
    """Draw one problem of `family` with `level` operations on terms from 1 to `max_term`."""
    if level < 1:
        raise ValueError(f"level must be >= 1 (got {level})")
    terms = [rng.randint(1, max_term) for _ in range(level + 1)]
    if family == "sum":
        return Problem(family, tuple(terms), ("+",) * level)
    if family in ("signed", "muladd"):
        ops: list[str] = []
        value = terms[0]
        for i, term in enumerate(terms[1:]):
            if family == "muladd" and i == 0:
                op = "*"
            else:
                op = "-" if value >= term and rng.random() < 0.5 else "+"
            ops.append(op)
            value = value * term if op == "*" else value + term if op == "+" else value - term
        return Problem(family, tuple(terms), tuple(ops))
    raise ValueError(f"unknown problem family {family!r} (known: {', '.join(FAMILIES)})")


def unique_problems(
    rng: random.Random, mix: list[tuple[str, int]], count: int, taken: set[str], max_term: int = 9
) -> Iterator[Problem]:
    """Yield `count` problems cycling through (family, level) pairs, skipping any key already in `taken`.

    `taken` is updated in place: it is how pools stay disjoint.
    """
    produced, attempts = 0, 0
    while produced < count:
        family, level = mix[attempts % len(mix)]
        attempts += 1
        if attempts > 200 * count + 1000:
            raise ValueError(f"cannot draw {count} unique problems from {mix}: the space is too small")
        problem = sample_problem(rng, family, level, max_term)
        if problem.key in taken:
            continue
        taken.add(problem.key)
        produced += 1
        yield problem
