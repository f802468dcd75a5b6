"""The GRPO reward: correctness of a completion against its prompt's gold, graded like evaluation.

The reward goes through the same verify pool as evaluation's grading (`quagmire.verify_pool`), so a policy is
rewarded exactly for what it will be scored on, and an expression that would hang sympy costs one timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from quagmire.answers import completion_text
from quagmire.errors import QuagmireError
from quagmire.verify_pool import GOLD_INVALID, GradingPool


def make_correctness_reward(
    pool: GradingPool, answer_column: str = "answer"
) -> Callable[..., list[float | None]]:
    """A TRL GRPO reward: 1.0 correct, 0.0 otherwise, None (ignored by TRL) where the gold does not parse."""

    def correctness(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        if answer_column not in kwargs:
            raise QuagmireError(
                f"reward needs the gold answer column {answer_column!r} in the dataset (got {sorted(kwargs)})"
            )
        golds = kwargs[answer_column]
        verdicts = pool.grade([(g, completion_text(c)) for g, c in zip(golds, completions, strict=True)])
        return [None if v.status == GOLD_INVALID else float(v.correct) for v in verdicts]

    correctness.__name__ = "correctness"
    return correctness
