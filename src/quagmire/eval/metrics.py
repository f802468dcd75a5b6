"""Benchmark scores from grades: pass@k, avg@n, maj@n and a bootstrap interval, as `metrics.json` holds them.

All scores are fractions in [0, 1], first per problem, then the mean over a benchmark's problems, then (in
`score`) the macro mean over benchmarks. Problems whose gold answer does not parse (`gold_invalid`) are left
out of every denominator and reported as a count.

Beside the metrics, `grading_report` says why a score is what it is: per benchmark, the count of each status and
the share of completions without a box, with several boxes, and cut at the token limit. It is written to its own
files (`grading_report.json`, `grading_report.md`), not into metrics.json, so the tidy table is unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.provenance import MANIFEST_KEY
from quagmire.statuses import GOLD_INVALID, STATUSES

log = logging.getLogger(__name__)

GRADE_COLUMNS = ("problem_id", "sample_idx", "extracted", "status", "correct")
REPORT_NAME = "grading_report.json"  # beside metrics.json; its human-readable twin has the suffix .md
# Report shares: (key, what it counts, how the markdown heads it).
_REPORT_SHARES = (
    ("share_no_box", "no_box", "no box"),
    ("share_several_boxes", "several_boxes", "several boxes"),
    ("share_truncated", "truncated", "truncated"),
)
_SCORE_PREFIXES = ("avg@", "pass@", "maj@")  # metrics that are macro-averaged over benchmarks
_BOOT_CHUNK_CELLS = 4_000_000  # resampled indices held in memory at once (32 MB of int64)


def pass_at_k(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k per problem, 1 − C(n−c, k)/C(n, k), from n samples of which c are correct."""
    return pass_at_ks(n, c, [k])[k]


def pass_at_ks(n: np.ndarray, c: np.ndarray, ks: Iterable[int]) -> dict[int, np.ndarray]:
    """Unbiased pass@k per problem for every k in `ks` at once: {k: array over problems}.

    For each distinct n, the ratio C(n−c, k)/C(n, k) is tabulated for every c = 0..n by its recurrence in c,
    ratio(c+1) = ratio(c)·(n−c−k)/(n−c): one cumulative product of n terms per k, no factorials or binomials,
    nothing overflows, accurate to about n·1e-16 relative (matches exact fractions at n = 1024). Each problem
    then reads its value from the table, so the cost is set by n and the number of k, not by the number of
    problems.
    """
    n = np.asarray(n, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    ks = sorted({int(k) for k in ks})
    if n.shape != c.shape:
        raise QuagmireError(f"pass@k needs one n and one c per problem (got shapes {n.shape} and {c.shape})")
    if not ks or ks[0] < 1:
        raise QuagmireError(f"pass@k needs k >= 1 (got {ks})")
    if n.size == 0:
        return {k: np.zeros(0) for k in ks}
    if np.any(n < ks[-1]):
        raise QuagmireError(f"pass@{ks[-1]} needs at least {ks[-1]} samples per problem (smallest n is {n.min()})")
    if np.any((c < 0) | (c > n)):
        raise QuagmireError("pass@k needs 0 <= c <= n for every problem")
    k_col = np.asarray(ks, dtype=np.int64)[:, None]
    n_values = np.unique(n)
    if n_values.size == 1:  # the usual case: every problem sampled n times
        out = 1.0 - _all_wrong_table(int(n_values[0]), k_col)[:, c]
    else:
        out = np.empty((len(ks), *n.shape))
        for n_value in n_values:
            mask = n == n_value
            out[:, mask] = 1.0 - _all_wrong_table(int(n_value), k_col)[:, c[mask]]
    return {k: out[i] for i, k in enumerate(ks)}


def _all_wrong_table(n: int, k_col: np.ndarray) -> np.ndarray:
    """C(n−c, k)/C(n, k) for each k (rows) and c = 0..n (columns): P(k draws without replacement all wrong)."""
    cs = np.arange(n, dtype=np.int64)
    steps = np.maximum(n - cs - k_col, 0) / (n - cs)  # ratio(c+1)/ratio(c)
    return np.concatenate([np.ones((k_col.shape[0], 1)), np.cumprod(steps, axis=1)], axis=1)


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
    for k, per_problem in pass_at_ks(n_vec, c, ks_for(n, extra_ks)).items():
        metrics[f"pass@{k}"] = float(per_problem.mean())
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


def grading_report(per_benchmark: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Why the scores are what they are: per benchmark and macro-averaged, counts per status and the shares of
    completions without a box, with several boxes, and truncated (`finish_reason == "length"`).

    Per benchmark: `n_completions`, `n_problems`, `n_gold_invalid_problems`, `status_counts`, the counts
    `no_box`, `several_boxes`, `truncated`, and the matching `share_*` (a fraction of all completions). A count
    is None where the grades file does not record it (written before `n_boxes` / `finish_reason` were columns,
    or from samples without a finish reason), and a share is None where its count is, or where the benchmark
    has no completion. The macro share is the mean over the benchmarks that have that share (None if none).
    """
    benchmarks = {name: _benchmark_report(grades) for name, grades in per_benchmark.items()}
    macro: dict[str, float | None] = {}
    for key, _, _ in _REPORT_SHARES:
        known = [entry[key] for entry in benchmarks.values() if entry[key] is not None]
        macro[key] = float(np.mean(known)) if known else None
    return {"benchmarks": benchmarks, "macro": macro}


def _benchmark_report(grades: pd.DataFrame) -> dict[str, Any]:
    """The grading report of one benchmark's grades table (see `grading_report`)."""
    n = len(grades)
    statuses = grades["status"] if "status" in grades.columns else pd.Series([], dtype=object)
    problems = grades["problem_id"] if "problem_id" in grades.columns else pd.Series([], dtype=object)
    counts = statuses.value_counts()
    counted: dict[str, int | None] = {"no_box": None, "several_boxes": None, "truncated": None}
    if "n_boxes" in grades.columns:
        boxes = pd.to_numeric(grades["n_boxes"])
        counted["no_box"] = int((boxes == 0).sum())
        counted["several_boxes"] = int((boxes > 1).sum())
    if "finish_reason" in grades.columns and (n == 0 or grades["finish_reason"].notna().any()):
        counted["truncated"] = int((grades["finish_reason"] == "length").sum())
    entry: dict[str, Any] = {
        "n_completions": n,
        "n_problems": int(problems.nunique()),
        "n_gold_invalid_problems": int(problems[statuses == GOLD_INVALID].nunique()),
        "status_counts": {status: int(counts.get(status, 0)) for status in STATUSES},
        **counted,
    }
    for key, count, _ in _REPORT_SHARES:
        entry[key] = counted[count] / n if counted[count] is not None and n else None
    return entry


def report_markdown(report: Mapping[str, Any]) -> str:
    """The grading report as a Markdown table a user reads: one row per benchmark, then the macro shares."""

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    head = ["benchmark", "completions", *STATUSES, *(label for _, _, label in _REPORT_SHARES)]
    lines = [
        "# Grading report",
        "",
        "Counts of completions per grading status; shares of completions without a `\\boxed{}` answer, with "
        "several boxes, and cut at the token limit (`finish_reason` = length). n/a: not recorded.",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |",
    ]
    for name, entry in report["benchmarks"].items():
        cells = [str(name), str(entry["n_completions"]), *(str(entry["status_counts"][s]) for s in STATUSES)]
        cells += [share(entry[key]) for key, _, _ in _REPORT_SHARES]
        lines.append("| " + " | ".join(cells) + " |")
    macro = report["macro"]
    cells = ["macro", "", *([""] * len(STATUSES)), *(share(macro[key]) for key, _, _ in _REPORT_SHARES)]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _report_line(name: str, entry: Mapping[str, Any]) -> str:
    """One log line per benchmark: its status counts and the report's shares."""
    counts = ", ".join(f"{status} {count}" for status, count in entry["status_counts"].items())
    shares = ", ".join(
        f"{label} {'n/a' if entry[key] is None else f'{100 * entry[key]:.1f}%'}" for key, _, label in _REPORT_SHARES
    )
    return f"{name}: {entry['n_completions']} completions ({counts}); {shares}"


def metrics_manifest(
    grades: Mapping[str, str | os.PathLike[str]], extra_ks: Sequence[int], bootstrap: int
) -> dict[str, Any]:
    """The metrics file's manifest: its grades files, the model and each benchmark file by sha256 (as the grades
    files name them), and the scoring settings. Only `benchmarks` and `macro` of a metrics file are ever read as
    numbers, so the manifest changes no table."""
    from quagmire.io import read_parquet_metadata
    from quagmire.provenance import step_manifest

    graded = {name: read_parquet_metadata(path).get(MANIFEST_KEY, {}) for name, path in grades.items()}
    models = [m["model"] for m in graded.values() if m.get("model")]
    manifest = step_manifest("score", [(f"grades:{name}", path) for name, path in grades.items()],
                             settings={"extra_ks": list(extra_ks), "bootstrap": bootstrap},
                             model=models[0] if models else None)
    manifest["benchmarks"] = {
        name: next(({"path": i["path"], "sha256": i["sha256"]} for i in m.get("inputs", [])
                    if i.get("role") == "benchmark"), None)
        for name, m in graded.items()
    }
    return manifest


def score_to_file(
    grades: Mapping[str, str | os.PathLike[str]],
    out: str | os.PathLike[str],
    extra_ks: Sequence[int],
    bootstrap: int,
    report: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score the grades files of one model (benchmark name -> file) and write the metrics JSON: the `quagmire score`
    step of the DAG. `extra_ks` and `bootstrap` come from the study's `eval` section.

    The grading report is written to `report` (default: `grading_report.json` beside `out`) and, readable, to
    the same path with the suffix `.md`; each file atomically.
    """
    from quagmire.io import atomic_path, write_json

    per_benchmark = {name: pd.read_parquet(path) for name, path in grades.items()}
    result = score(per_benchmark, extra_ks=extra_ks, n_boot=bootstrap)
    result[MANIFEST_KEY] = metrics_manifest(grades, extra_ks, bootstrap)
    report_path = Path(report) if report is not None else Path(out).with_name(REPORT_NAME)
    grading = grading_report(per_benchmark)
    write_json(out, result)
    write_json(report_path, grading)
    with atomic_path(report_path.with_suffix(".md")) as tmp:
        tmp.write_text(report_markdown(grading))
    for name, entry in grading["benchmarks"].items():
        log.info("%s", _report_line(name, entry))
    log.info("macro: %s", {k: round(v, 4) for k, v in result["macro"].items()})
    return result
