"""Benchmark scores from grades: pass@k, avg@n, maj@n and a bootstrap interval, as `metrics.json` holds them.

All scores are fractions in [0, 1], first per problem, then the mean over a benchmark's problems, then (in
`score`) the macro mean over benchmarks. Problems whose gold answer does not parse (`gold_invalid`) are left
out of every denominator and reported as a count.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.grade import GOLD_INVALID, STATUSES

GRADE_COLUMNS = ("problem_id", "sample_idx", "extracted", "status", "correct")
_SCORE_PREFIXES = ("avg@", "pass@", "maj@")  # metrics that are macro-averaged over benchmarks
_BOOT_CHUNK_CELLS = 4_000_000  # resampled indices held in memory at once (32 MB of int64)


def pass_at_k(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k per problem, 1 − C(n−c, k)/C(n, k), from n samples of which c are correct.

    The ratio is computed as the product over j < k of (n−c−j)/(n−j): no factorials or binomials, so nothing
    overflows and the result is accurate to about k·1e-16 relative (matches exact fractions at n = 1024).
    """
    n = np.asarray(n, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    if n.shape != c.shape:
        raise QuagmireError(f"pass@k needs one n and one c per problem (got shapes {n.shape} and {c.shape})")
    if k < 1:
        raise QuagmireError(f"pass@k needs k >= 1 (got {k})")
    if np.any(n < k):
        raise QuagmireError(f"pass@{k} needs at least {k} samples per problem (smallest n is {n.min()})")
    if np.any((c < 0) | (c > n)):
        raise QuagmireError("pass@k needs 0 <= c <= n for every problem")
    all_wrong = np.ones(n.shape, dtype=np.float64)  # probability that k draws hold no correct sample
    for j in range(k):
        all_wrong *= np.maximum(n - c - j, 0) / (n - j)
    return 1.0 - all_wrong


def ks_for(n: int, extra: Iterable[int] = ()) -> list[int]:
    """The k values to report for n samples: 1, 2, 4, … up to n, n itself, and any extra k <= n."""
    ks = {n}
    k = 1
    while k <= n:
        ks.add(k)
        k *= 2
    ks.update(int(e) for e in extra if 1 <= int(e) <= n)
    return sorted(ks)


def bootstrap_ci(
    per_problem: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over problems (problems resampled with replacement)."""
    values = np.asarray(per_problem, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise QuagmireError("a bootstrap interval needs a non-empty 1-D array of per-problem scores")
    if n_boot < 1:
        raise QuagmireError(f"a bootstrap needs at least one resample (got n_boot={n_boot})")
    if not 0 < level < 1:
        raise QuagmireError(f"confidence level must lie strictly between 0 and 1 (got {level})")
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _BOOT_CHUNK_CELLS // len(values))
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows_per_chunk):
        rows = min(rows_per_chunk, n_boot - start)
        picks = rng.integers(0, len(values), size=(rows, len(values)))
        means[start : start + rows] = values[picks].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def majority_answers(grades: pd.DataFrame) -> pd.DataFrame:
    """Per problem: the most frequent extracted answer and whether it was graded correct.

    None answers do not vote; ties go to the answer seen first in sample_idx order; an answer counts as
    correct if any sample giving that exact text was graded correct. A problem with no answer at all gets
    answer None, correct False. Answers are compared as text (`0.5` and `\\frac{1}{2}` vote apart).
    """
    ordered = grades.sort_values(["problem_id", "sample_idx"], kind="stable")
    problems = pd.Index(pd.unique(ordered["problem_id"]), name="problem_id")
    voted = ordered[ordered["extracted"].notna()].copy()
    voted["order"] = np.arange(len(voted))
    tally = voted.groupby(["problem_id", "extracted"], sort=False).agg(
        votes=("order", "size"), first=("order", "min"), correct=("correct", "any")
    )
    tally = tally.reset_index().sort_values(["problem_id", "votes", "first"], ascending=[True, False, True])
    winners = tally.drop_duplicates("problem_id").set_index("problem_id")
    result = pd.DataFrame(index=problems)
    answers = winners["extracted"].reindex(problems)
    result["answer"] = answers.astype(object).where(answers.notna(), None)
    result["correct"] = winners["correct"].reindex(problems).fillna(False).astype(bool)
    return result.reset_index()


def maj_at_n(grades: pd.DataFrame) -> float:
    """maj@n: the fraction of problems whose majority-vote answer is correct (see `majority_answers`)."""
    majority = majority_answers(grades)
    if len(majority) == 0:
        raise QuagmireError("maj@n needs at least one problem")
    return float(majority["correct"].mean())


def benchmark_metrics(
    grades: pd.DataFrame, *, extra_ks: Iterable[int] = (), n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """metrics.json content for one benchmark's grades (one row per problem × sample).

    `n_problems` counts the scored problems; problems with any `gold_invalid` sample are left out of every
    score and counted in `n_gold_invalid_problems`. `status_counts` covers every sample, excluded ones too.
    """
    _check_grades(grades)
    per_problem_n = grades.groupby("problem_id", sort=False).size()
    sizes = sorted(set(per_problem_n.tolist()))
    if len(sizes) != 1:
        raise QuagmireError(f"every problem needs the same number of samples (found sample counts {sizes})")
    n = int(sizes[0])
    invalid = set(grades.loc[grades["status"] == GOLD_INVALID, "problem_id"])
    scored = grades[~grades["problem_id"].isin(invalid)]
    if len(scored) == 0:
        raise QuagmireError(f"no problem has a parseable gold answer ({len(invalid)} gold_invalid problems)")
    c = scored.groupby("problem_id", sort=False)["correct"].sum().to_numpy(dtype=np.int64)
    n_vec = np.full(len(c), n, dtype=np.int64)
    per_problem_avg = c / n
    counts = grades["status"].value_counts()

    metrics: dict[str, Any] = {
        "n_problems": len(c),
        "n_samples": n,
        "n_gold_invalid_problems": len(invalid),
        f"avg@{n}": float(per_problem_avg.mean()),
    }
    for k in ks_for(n, extra_ks):
        metrics[f"pass@{k}"] = float(pass_at_k(n_vec, c, k).mean())
    metrics[f"maj@{n}"] = maj_at_n(scored)
    metrics["status_counts"] = {status: int(counts.get(status, 0)) for status in STATUSES}
    metrics[f"avg@{n}_ci"] = list(bootstrap_ci(per_problem_avg, n_boot=n_boot, seed=seed))
    return metrics


def score(per_benchmark: dict[str, pd.DataFrame], **kw: Any) -> dict[str, Any]:
    """Metrics per benchmark plus their macro means (each benchmark weighs the same); all must share n.

    Keyword arguments go to `benchmark_metrics` (extra_ks, n_boot, seed).
    """
    if not per_benchmark:
        raise QuagmireError("scoring needs at least one benchmark")
    benchmarks = {name: benchmark_metrics(grades, **kw) for name, grades in per_benchmark.items()}
    ns = {name: metrics["n_samples"] for name, metrics in benchmarks.items()}
    if len(set(ns.values())) != 1:
        raise QuagmireError(f"all benchmarks must have the same samples per problem (got {ns})")
    n = next(iter(ns.values()))
    first = next(iter(benchmarks.values()))
    score_keys = [key for key in first if key.startswith(_SCORE_PREFIXES) and not key.endswith("_ci")]
    macro = {key: float(np.mean([metrics[key] for metrics in benchmarks.values()])) for key in score_keys}
    return {"benchmarks": benchmarks, "macro": macro, "n": n}


def _check_grades(grades: pd.DataFrame) -> None:
    """Fail in the user's words when a grades table is malformed."""
    missing = [column for column in GRADE_COLUMNS if column not in grades.columns]
    if missing:
        raise QuagmireError(f"grades table lacks column(s) {', '.join(missing)}")
    if len(grades) == 0:
        raise QuagmireError("grades table is empty")
    unknown = sorted(map(str, set(grades["status"]) - set(STATUSES)))
    if unknown:
        raise QuagmireError(f"grades table has unknown status(es) {unknown}; expected {list(STATUSES)}")
    duplicated = grades[grades.duplicated(["problem_id", "sample_idx"])]
    if len(duplicated):
        pid, idx = duplicated.iloc[0][["problem_id", "sample_idx"]]
        raise QuagmireError(f"grades table has problem {pid!r} sample {idx} more than once")
