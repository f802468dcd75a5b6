"""Grade a samples table against its benchmark's golds: one verdict per sample, through the verify pool.

The verdicts themselves (statuses, math-verify, the per-item timeout) live in `quagmire.verify_pool`, which
the GRPO reward (`quagmire.train.rewards`) and the data filters' gold check share. The grades file also carries,
per sample, what the grading report (`quagmire.eval.metrics.grading_report`) needs to say why a score is low: the
number of boxes the completion opens (`n_boxes`) and why sampling stopped (`finish_reason`, "length" when cut).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from quagmire.answers import as_text
from quagmire.errors import QuagmireError
from quagmire.verify_pool import GradingPool

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

REPORT_COLUMNS = ("n_boxes", "finish_reason")  # extra columns of a grades file, beside metrics.GRADE_COLUMNS
# A box opening, `\boxed{` or `\fbox {`, the same openings answer extraction looks for.
_BOX_OPENING = re.compile(r"\\(?:boxed|fbox)\s*\{")


def box_count(completion: object) -> int:
    """How many `\\boxed{` / `\\fbox{` openings a completion has (0 for a missing one); linear in its length."""
    return sum(1 for _ in _BOX_OPENING.finditer(as_text(completion)))


def grade_samples(
    samples: pd.DataFrame,
    problems: pd.DataFrame,
    *,
    timeout_s: float = 5.0,
    workers: int = 1,
    pool: GradingPool | None = None,
) -> pd.DataFrame:
    """One grade row per sample (problem_id, sample_idx, extracted, status, correct), in samples' order.

    A pool of `workers` processes with a `timeout_s` limit per item is started and closed here, unless an
    open `pool` is passed (then its own settings apply).
    """
    import pandas as pd

    _require_columns(samples, ("problem_id", "sample_idx", "completion"), "samples")
    _require_columns(problems, ("problem_id", "answer"), "problems")
    duplicated = problems["problem_id"][problems["problem_id"].duplicated()]
    if len(duplicated):
        raise QuagmireError(f"problems table lists problem_id {duplicated.iloc[0]!r} more than once")
    gold_by_problem = dict(zip(problems["problem_id"], problems["answer"], strict=True))
    missing = [pid for pid in pd.unique(samples["problem_id"]) if pid not in gold_by_problem]
    if missing:
        shown = ", ".join(repr(pid) for pid in missing[:5])
        raise QuagmireError(
            f"{len(missing)} sampled problem_id(s) have no gold answer in the problems table: {shown}"
        )
    pairs = [
        (as_text(gold_by_problem[pid]), as_text(completion))
        for pid, completion in zip(samples["problem_id"], samples["completion"], strict=True)
    ]
    if pool is not None:
        verdicts = pool.grade(pairs)
    elif pairs:
        with GradingPool(workers=workers, timeout_s=timeout_s) as own_pool:
            verdicts = own_pool.grade(pairs)
    else:
        verdicts = []
    return pd.DataFrame(
        {
            "problem_id": samples["problem_id"].to_numpy(),
            "sample_idx": samples["sample_idx"].to_numpy(),
            "extracted": pd.Series([v.extracted for v in verdicts], dtype=object),
            "status": pd.Series([v.status for v in verdicts], dtype=object),
            "correct": pd.Series([v.correct for v in verdicts], dtype=bool),
        }
    )


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Fail with the names of the columns a table lacks."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise QuagmireError(
            f"{name} table lacks column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))})"
        )


def grade_to_file(
    samples: str | os.PathLike[str],
    benchmark: str | os.PathLike[str],
    out: str | os.PathLike[str],
    timeout: float,
    workers: int = 1,
    shard_files: Sequence[str | os.PathLike[str]] | None = None,
) -> pd.DataFrame:
    """Grade the samples file against the benchmark file and write the grades, with what they came from and the
    status counts as metadata: the `quagmire grade` step of the DAG.

    Beside the verdict columns, each row records `n_boxes` and the sample's `finish_reason` (None when the samples
    file has none) for the grading report.

    With `shard_files`, the samples file is first written by joining them (`shards.gather_samples`: fails unless
    every problem has n samples). The DAG's grade jobs do that: as a job of its own the join cost a process start
    and its imports per (model, benchmark), more than the join (the embedded study: 78 jobs of ~0.9 s), and only
    grading reads a samples file, so a grading setting that reruns the job rewrites the same samples, nothing else.
    """
    from pathlib import Path

    import pandas as pd

    from quagmire.io import read_parquet_metadata, write_parquet
    from quagmire.provenance import MANIFEST_KEY, step_manifest

    if shard_files is not None:
        from quagmire.eval.shards import gather_samples

        gather_samples([Path(f) for f in shard_files], Path(benchmark), Path(samples))
    sampled = pd.read_parquet(samples)
    grades = grade_samples(sampled, pd.read_parquet(benchmark), timeout_s=timeout, workers=workers)
    grades["n_boxes"] = pd.Series([box_count(c) for c in sampled["completion"]], dtype="int64")
    reasons = sampled["finish_reason"] if "finish_reason" in sampled.columns else [None] * len(sampled)
    grades["finish_reason"] = pd.Series([r if isinstance(r, str) else None for r in reasons], dtype=object)
    counts = grades["status"].value_counts().to_dict()
    model = read_parquet_metadata(samples).get(MANIFEST_KEY, {}).get("model")
    manifest = step_manifest("grade", [("samples", samples), ("benchmark", benchmark)],
                             settings={"timeout_s": timeout}, model=model)
    write_parquet(
        out,
        grades,
        metadata={"samples": samples, "benchmark": benchmark, "timeout_s": timeout, "status_counts": counts,
                  MANIFEST_KEY: manifest},
    )
    log.info("graded %d samples: %s", len(grades), counts)
    return grades
