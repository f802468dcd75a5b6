"""The tidy table (one row per run, stage, benchmark, metric, value) and the recipes table: what analysis reads.

Every figure, predictor and paper table reads these two files, so a figure or report never touches a model or
a sample file, and re-plotting costs no GPU time.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.provenance import step_manifest, write_sidecar

log = logging.getLogger(__name__)

TIDY_COLUMNS = ("run", "stage", "benchmark", "metric", "value")
STAGES = ("base", "sft", "rl")
CANDIDATE = "candidate"  # the stage of an SFT checkpoint the study did not train (`candidates:`): no RL stage
TIDY_STAGES = (*STAGES, CANDIDATE)
BASE_RUN = "base"
MACRO = "macro"
HELDOUT = "heldout"
STUDY_HELDOUT = "study"  # a candidate's loss on the study's own held-out split (config.STUDY_HELDOUT)
GENLOSS = "genloss"
RECIPE_COLUMNS = ("run", "subset", "n_unique", "epochs", "lr", "dataset_level", "instance_level")

_AVG_RE = re.compile(r"^avg@(\d+)$")
_PASS_RE = re.compile(r"^pass@(\d+)$")
_GENLOSS_FIELDS = (
    ("genloss", GENLOSS),
    ("n_tokens", "genloss_n_tokens"),
    ("n_examples", "genloss_n_examples"),
)
_STATUS_KEY = "status_counts"
_STATUS_PREFIX = "status"
_TRUE_STRINGS = {"true", "t", "yes", "y", "1"}
_FALSE_STRINGS = {"false", "f", "no", "n", "0", ""}


# ----------------------------------------------------------------------------------------------------
# the tidy table
# ----------------------------------------------------------------------------------------------------


def heldout_benchmark(heldout_set: str) -> str:
    """The tidy table's benchmark of a loss on `heldout_set`: "heldout" for the study's split, else
    "heldout:<set>" (losses on different sets are different measurements and never compared)."""
    return HELDOUT if heldout_set == STUDY_HELDOUT else f"{HELDOUT}:{heldout_set}"


def tidy_table(
    evals: Iterable[tuple[str, str, Mapping[str, Any]]],
    genlosses: Iterable[tuple[str, Mapping[str, Any]]],
    candidate_genlosses: Iterable[tuple[str, str, Mapping[str, Any]]] = (),
) -> pd.DataFrame:
    """One row per (run, stage, benchmark, metric): the single table every analysis and figure reads.

    Scalars are kept as they are, `status_counts` becomes `status:<status>` counts, a `<metric>_ci` pair
    becomes `<metric>_ci_lo`/`<metric>_ci_hi`, the macro entry is benchmark "macro", and each genloss file
    gives stage "sft", benchmark "heldout" rows `genloss`, `genloss_n_tokens`, `genloss_n_examples`. A candidate
    (stage "candidate") has its loss as (run, held-out set, genloss file): benchmark `heldout_benchmark(set)`.
    """
    rows: list[tuple[str, str, str, str, float]] = []
    seen: set[tuple[str, str]] = set()
    for run, stage, metrics in evals:
        where = f"metrics for run {run!r} stage {stage!r}"
        if stage not in TIDY_STAGES:
            raise QuagmireError(f"{where}: stage must be one of {', '.join(TIDY_STAGES)}")
        if (run, stage) in seen:
            raise QuagmireError(f"{where} given twice")
        seen.add((run, stage))
        benchmarks = metrics.get("benchmarks")
        if not isinstance(benchmarks, Mapping):
            raise QuagmireError(f"{where} have no 'benchmarks' section")
        if MACRO in benchmarks:
            raise QuagmireError(
                f"{where}: a benchmark may not be named {MACRO!r} (reserved for the macro mean)"
            )
        sections: list[tuple[str, Any]] = list(benchmarks.items())
        if MACRO in metrics:
            sections.append((MACRO, metrics[MACRO]))
        for benchmark, entry in sections:
            if not isinstance(entry, Mapping):
                raise QuagmireError(f"{where}: benchmark {benchmark!r} is not a mapping of metrics")
            for metric, value in _flatten_entry(entry, f"{where}, benchmark {benchmark!r}"):
                rows.append((run, stage, str(benchmark), metric, value))
    seen_loss: set[str] = set()
    losses = [(run, "sft", HELDOUT, loss) for run, loss in genlosses]
    losses += [(run, CANDIDATE, heldout_benchmark(heldout_set), loss) for run, heldout_set, loss in candidate_genlosses]
    for run, stage, benchmark, loss in losses:
        if run in seen_loss:
            raise QuagmireError(f"genloss for run {run!r} given twice")
        seen_loss.add(run)
        if not _is_number(loss.get("genloss")):
            raise QuagmireError(f"genloss file for run {run!r} has no numeric 'genloss'")
        for key, metric in _GENLOSS_FIELDS:
            if _is_number(loss.get(key)):
                rows.append((run, stage, benchmark, metric, float(loss[key])))
    frame = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    frame = frame.astype({"run": str, "stage": str, "benchmark": str, "metric": str, "value": float})
    return frame.sort_values(list(TIDY_COLUMNS[:4]), kind="stable").reset_index(drop=True)


def _flatten_entry(entry: Mapping[str, Any], where: str) -> list[tuple[str, float]]:
    """Turn one benchmark's metrics into (metric, value) pairs; text fields are skipped, not guessed at."""
    out: list[tuple[str, float]] = []
    for key, value in entry.items():
        if _is_number(value):
            out.append((key, float(value)))
        elif isinstance(value, Mapping):
            prefix = _STATUS_PREFIX if key == _STATUS_KEY else key
            out.extend((f"{prefix}:{sub}", float(v)) for sub, v in value.items() if _is_number(v))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if len(value) != 2 or not all(_is_number(v) for v in value):
                raise QuagmireError(f"{where}: {key!r} must be a [low, high] pair of numbers (got {value!r})")
            out.append((f"{key}_lo", float(value[0])))
            out.append((f"{key}_hi", float(value[1])))
    return out


def _is_number(value: Any) -> bool:
    """True for ints and floats (bools count as 0/1), False for text, None and containers."""
    return isinstance(value, int | float | np.integer | np.floating)


def read_tidy(path: str | Path) -> pd.DataFrame:
    """Load a tidy table CSV with text columns kept as text (a run named "1" or "NA" stays a name)."""
    try:
        frame = pd.read_csv(
            path,
            dtype={"run": str, "stage": str, "benchmark": str, "metric": str},
            keep_default_na=False,
            na_values={"value": ["", "nan", "NaN"]},
        )
    except FileNotFoundError as exc:
        raise QuagmireError(f"tidy table not found: {path}") from exc
    return checked_tidy(frame, source=str(path))


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise QuagmireError(f"{source}: missing column(s) {', '.join(missing)} (need {', '.join(columns)})")


def checked_tidy(tidy: pd.DataFrame, *, source: str = "tidy table") -> pd.DataFrame:
    """The tidy table with numeric values, or a QuagmireError naming the missing column or duplicated row."""
    _require_columns(tidy, TIDY_COLUMNS, source)
    frame = tidy.loc[:, list(TIDY_COLUMNS)].copy()
    try:
        frame["value"] = pd.to_numeric(frame["value"]).astype(float)
    except (TypeError, ValueError) as exc:
        raise QuagmireError(f"{source}: column 'value' must be numeric ({exc})") from exc
    dup = frame.duplicated(list(TIDY_COLUMNS[:4]), keep=False)
    if dup.any():
        first = frame.loc[dup].iloc[0]
        raise QuagmireError(
            f"{source}: {int(dup.sum())} duplicated rows, e.g. run {first['run']!r} stage {first['stage']!r} "
            f"benchmark {first['benchmark']!r} metric {first['metric']!r}"
        )
    return frame


def macro_metric(tidy: pd.DataFrame, stage: str, metric: str) -> pd.Series:
    """Macro-averaged `metric` at `stage`, indexed by run (runs without it are absent, not NaN)."""
    rows = tidy[(tidy["stage"] == stage) & (tidy["benchmark"] == MACRO) & (tidy["metric"] == metric)]
    return pd.Series(
        rows["value"].to_numpy(dtype=float), index=pd.Index(rows["run"], name="run"), name=metric
    )


def heldout_genloss(tidy: pd.DataFrame) -> pd.Series:
    """Generalization loss (mean held-out NLL per response token, nats) of each SFT checkpoint, by run."""
    rows = tidy[(tidy["stage"] == "sft") & (tidy["benchmark"] == HELDOUT) & (tidy["metric"] == GENLOSS)]
    return pd.Series(
        rows["value"].to_numpy(dtype=float), index=pd.Index(rows["run"], name="run"), name=GENLOSS
    )


def candidate_genloss(tidy: pd.DataFrame) -> pd.DataFrame:
    """Each candidate's generalization loss with the held-out set it is on (columns run, heldout_set, genloss)."""
    rows = tidy[(tidy["stage"] == CANDIDATE) & (tidy["metric"] == GENLOSS)
                & ((tidy["benchmark"] == HELDOUT) | tidy["benchmark"].str.startswith(f"{HELDOUT}:"))]
    sets = [STUDY_HELDOUT if b == HELDOUT else b.split(":", 1)[1] for b in rows["benchmark"]]
    return pd.DataFrame({"run": rows["run"].to_numpy(), "heldout_set": sets,
                         "genloss": rows["value"].to_numpy(dtype=float)})


def avg_metric_name(tidy: pd.DataFrame, stages: Sequence[str] = ("sft", "rl")) -> str:
    """The headline metric name `avg@n`; macro scores at `stages` must share one n to be comparable."""
    macro = tidy[tidy["stage"].isin(list(stages)) & (tidy["benchmark"] == MACRO)]
    names = sorted({m for m in macro["metric"].unique() if _AVG_RE.match(m)}, key=lambda m: int(m[4:]))
    if not names:
        raise QuagmireError(f"tidy table has no macro avg@n metric at stage(s) {', '.join(stages)}")
    if len(names) > 1:
        raise QuagmireError(
            f"tidy table mixes sample counts at stage(s) {', '.join(stages)}: found {', '.join(names)}; "
            "evaluate every model with the same n so that their avg@n are comparable"
        )
    return names[0]


def pass_ks(tidy: pd.DataFrame, stage: str = "sft") -> list[int]:
    """Sorted k values for which some run has a macro pass@k at `stage`."""
    macro = tidy[(tidy["stage"] == stage) & (tidy["benchmark"] == MACRO)]
    return sorted({int(m[5:]) for m in macro["metric"].unique() if _PASS_RE.match(m)})


# ----------------------------------------------------------------------------------------------------
# recipes and levels
# ----------------------------------------------------------------------------------------------------


def read_recipes(path: str | Path) -> pd.DataFrame:
    """Load the recipes CSV (one row per SFT recipe) and normalize its types."""
    try:
        frame = pd.read_csv(path, dtype={"run": str, "subset": str}, keep_default_na=False, na_values=[""])
    except FileNotFoundError as exc:
        raise QuagmireError(f"recipes table not found: {path}") from exc
    return normalize_recipes(frame, source=str(path))


def normalize_recipes(recipes: pd.DataFrame, *, source: str = "recipes table") -> pd.DataFrame:
    """Check the recipe columns and coerce them (numbers numeric, level flags bool) so CSV quirks stay out."""
    _require_columns(recipes, RECIPE_COLUMNS, source)
    frame = recipes.copy()
    frame["run"] = frame["run"].astype(str)
    frame["subset"] = frame["subset"].astype(str)
    dup = frame["run"][frame["run"].duplicated()]
    if len(dup):
        raise QuagmireError(f"{source}: run {dup.iloc[0]!r} appears more than once")
    for col in ("n_unique", "epochs", "lr"):
        try:
            values = pd.to_numeric(frame[col])
        except (TypeError, ValueError) as exc:
            raise QuagmireError(f"{source}: column {col!r} must be numeric ({exc})") from exc
        if col != "lr" and values.notna().all():
            values = values.astype("int64")
        frame[col] = values
    for col in ("dataset_level", "instance_level"):
        frame[col] = [read_flag(v, f"{source}: column {col!r}") for v in frame[col]]
        frame[col] = frame[col].astype(bool)
    return frame.reset_index(drop=True)


def read_flag(value: Any, where: str) -> bool:
    """Read a level flag written as a bool, 0/1 or true/false text; blank means not part of the level."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE_STRINGS:
        return True
    if text in _FALSE_STRINGS:
        return False
    raise QuagmireError(f"{where} must be true or false (got {value!r})")


# ------------------------------------------------------------------------------ the DAG's table steps (CLI)


def recipes_to_file(recipes: Mapping[str, Mapping[str, Any]], out: str | os.PathLike[str]) -> pd.DataFrame:
    """Write the recipes table (one row per SFT recipe, in config order) from the resolved recipes: the
    `quagmire recipes` step of the DAG."""
    from quagmire.io import atomic_path

    rows = [
        {
            "run": name,
            "subset": r["subset"],
            "n_unique": r["n"],
            "epochs": r["epochs"],
            "lr": r["lr"],
            "dataset_level": r["dataset_level"],
            "instance_level": r["instance_level"],
        }
        for name, r in recipes.items()
    ]
    frame = pd.DataFrame(rows)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    write_sidecar(out, step_manifest("recipes_table", settings={"recipes": dict(recipes)}))
    return frame


def tidy_to_file(
    evals: Sequence[tuple[str, str | os.PathLike[str]]],
    genlosses: Sequence[tuple[str, str | os.PathLike[str]]],
    out: str | os.PathLike[str],
) -> pd.DataFrame:
    """Collect the metrics files (keyed STAGE:RUN) and generalization-loss files (keyed RUN, or candidate:RUN:SET
    for a candidate's loss on held-out set SET) into the tidy table and write it: the `quagmire table` step of the
    DAG."""
    from quagmire.io import atomic_path, read_json

    entries = []
    for key, path in evals:
        stage, sep, run = key.partition(":")
        if not sep:
            raise QuagmireError(f"--eval key must be STAGE:RUN (got {key!r})")
        entries.append((run, stage, read_json(path)))
    recipe_losses, candidate_losses = [], []
    for key, path in genlosses:
        if key.startswith(f"{CANDIDATE}:"):
            parts = key.split(":")
            if len(parts) != 3 or not all(parts[1:]):
                raise QuagmireError(f"--genloss key of a candidate must be candidate:RUN:SET (got {key!r})")
            candidate_losses.append((parts[1], parts[2], read_json(path)))
        else:
            recipe_losses.append((key, read_json(path)))
    tidy = tidy_table(entries, recipe_losses, candidate_losses)
    with atomic_path(out) as tmp:
        tidy.to_csv(tmp, index=False)
    write_sidecar(out, step_manifest(
        "tidy_table", [*((f"metrics:{key}", path) for key, path in evals),
                       *((f"genloss:{run}", path) for run, path in genlosses)],
    ))
    log.info("tidy table: %d rows", len(tidy))
    return tidy
