"""The grading statuses of a sample, as grades files record them.

Their own module, with no imports, so that code reading grades files (scores, the predictor cost table) names them
without importing the grading pool and, through it, math-verify: an analysis job's environment has no grader.
`quagmire.verify_pool` re-exports them.
"""

from __future__ import annotations

CORRECT = "correct"
INCORRECT = "incorrect"
NO_ANSWER = "no_answer"
TIMEOUT = "timeout"
GOLD_INVALID = "gold_invalid"
STATUSES: tuple[str, ...] = (CORRECT, INCORRECT, NO_ANSWER, TIMEOUT, GOLD_INVALID)
