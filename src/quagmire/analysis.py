"""Predictors of the post-RL score, their linear fits, R² and rank correlations, and the tidy table they read.

The study's question is whether a measurement of the post-SFT model (its own accuracy, its held-out
generalization loss, its pass@large k, or the average of the last two) predicts the accuracy reached after
RL from it. Everything here reads the tidy table (one row per run, stage, benchmark, metric, value) and the
recipes table, so a figure or report never touches a model or a sample file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from quagmire.errors import QuagmireError

TIDY_COLUMNS = ("run", "stage", "benchmark", "metric", "value")
STAGES = ("base", "sft", "rl")
BASE_RUN = "base"
MACRO = "macro"
HELDOUT = "heldout"
GENLOSS = "genloss"
RECIPE_COLUMNS = ("run", "subset", "n_unique", "epochs", "lr", "dataset_level", "instance_level")
PREDICTORS = ("post_sft", "neg_genloss", "pass_at_k_large", "avg_both")
LEVELS = ("dataset", "instance", "all")
# Generalization loss is measured on the held-out split of the SFT data; subsets of different response
# lengths have different token distributions, so their losses cannot be compared with each other.
GENLOSS_PREDICTORS = ("neg_genloss", "avg_both")
MIN_RUNS_FOR_FIT = 3
MIN_RUNS_FOR_SPLIT = 4

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


def tidy_table(
    evals: Iterable[tuple[str, str, Mapping[str, Any]]],
    genlosses: Iterable[tuple[str, Mapping[str, Any]]],
) -> pd.DataFrame:
    """One row per (run, stage, benchmark, metric): the single table every analysis and figure reads.

    Scalars are kept as they are, `status_counts` becomes `status:<status>` counts, a `<metric>_ci` pair
    becomes `<metric>_ci_lo`/`<metric>_ci_hi`, the macro entry is benchmark "macro", and each genloss file
    gives stage "sft", benchmark "heldout" rows `genloss`, `genloss_n_tokens`, `genloss_n_examples`.
    """
    rows: list[tuple[str, str, str, str, float]] = []
    seen: set[tuple[str, str]] = set()
    for run, stage, metrics in evals:
        where = f"metrics for run {run!r} stage {stage!r}"
        if stage not in STAGES:
            raise QuagmireError(f"{where}: stage must be one of {', '.join(STAGES)}")
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
    for run, loss in genlosses:
        if run in seen_loss:
            raise QuagmireError(f"genloss for run {run!r} given twice")
        seen_loss.add(run)
        if not _is_number(loss.get("genloss")):
            raise QuagmireError(f"genloss file for run {run!r} has no numeric 'genloss'")
        for key, metric in _GENLOSS_FIELDS:
            if _is_number(loss.get(key)):
                rows.append((run, "sft", HELDOUT, metric, float(loss[key])))
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


def select_level(frame: pd.DataFrame, level: str) -> pd.DataFrame:
    """Rows of a recipe-bearing frame that belong to `level` ("dataset", "instance" or "all")."""
    if level not in LEVELS:
        raise QuagmireError(f"unknown level {level!r} (known: {', '.join(LEVELS)})")
    if level == "all":
        return frame.copy()
    column = f"{level}_level"
    if column not in frame.columns:
        raise QuagmireError(f"level {level!r} needs column {column!r}")
    return frame[frame[column].astype(bool)].copy()


def is_comparable(level: str, predictor: str) -> bool:
    """False where a loss-based predictor would compare held-out losses of different SFT subsets."""
    return not (level in ("instance", "all") and predictor in GENLOSS_PREDICTORS)


def values_at_level(values: pd.DataFrame, level: str) -> pd.DataFrame:
    """Predictor rows of one level, with `avg_both` re-z-scored over that level's runs only."""
    frame = select_level(values, level)
    frame["avg_both"] = _avg_of_z(frame["neg_genloss"], frame["pass_at_k_large"])
    return frame


def _zscore(values: pd.Series) -> pd.Series:
    """Standard scores (population std); a constant predictor scores 0 everywhere, not NaN."""
    std = values.std(ddof=0)
    if not np.isfinite(std) or std == 0:
        return values * 0.0
    return (values - values.mean()) / std


def _avg_of_z(a: pd.Series, b: pd.Series) -> pd.Series:
    """Mean of two z-scored predictors, so that neither dominates through its units."""
    return (_zscore(a.astype(float)) + _zscore(b.astype(float))) / 2.0


# ----------------------------------------------------------------------------------------------------
# predictors and their quality
# ----------------------------------------------------------------------------------------------------


def predictor_values(
    tidy: pd.DataFrame, recipes: pd.DataFrame, *, k_large: int | None = None
) -> pd.DataFrame:
    """One row per recipe run with both a post-SFT and a post-RL macro score: its predictors and its outcome.

    `attrs["avg_metric"]` holds the headline metric name (avg@n) and `attrs["k_large"]` the k used.
    """
    tidy = checked_tidy(tidy)
    recipes = normalize_recipes(recipes)
    avg = avg_metric_name(tidy)
    sft = macro_metric(tidy, "sft", avg)
    rl = macro_metric(tidy, "rl", avg)
    scored = set(sft.index) & set(rl.index)
    orphans = sorted(scored - set(recipes["run"]) - {BASE_RUN})
    if orphans:
        raise QuagmireError(
            f"run(s) {', '.join(orphans)} have SFT and RL scores but no row in the recipes table"
        )
    runs = [r for r in recipes["run"] if r in scored]
    ks = pass_ks(tidy, "sft")
    if k_large is None:
        k_large = ks[-1] if ks else None
    columns = ["run", "post_sft", "genloss", "neg_genloss", "pass_at_k_large", "avg_both", "post_rl"]
    extra = [c for c in recipes.columns if c != "run"]
    if not runs:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in columns + extra}).astype({"run": str})
        empty.attrs.update(avg_metric=avg, k_large=k_large)
        return empty
    if k_large is None:
        raise QuagmireError("tidy table has no macro pass@k metric at stage sft")
    passk = macro_metric(tidy, "sft", f"pass@{k_large}")
    lacking = [r for r in runs if r not in passk.index]
    if lacking:
        raise QuagmireError(
            f"run(s) {', '.join(lacking)} lack macro pass@{k_large} at stage sft "
            f"(k present: {', '.join(map(str, ks)) or 'none'})"
        )
    genloss = heldout_genloss(tidy)
    lacking = [r for r in runs if r not in genloss.index]
    if lacking:
        raise QuagmireError(
            f"run(s) {', '.join(lacking)} have no generalization loss (heldout genloss at stage sft)"
        )
    frame = pd.DataFrame({"run": runs})
    frame["post_sft"] = sft.reindex(runs).to_numpy()
    frame["genloss"] = genloss.reindex(runs).to_numpy()
    frame["neg_genloss"] = -frame["genloss"]
    frame["pass_at_k_large"] = passk.reindex(runs).to_numpy()
    frame["avg_both"] = _avg_of_z(frame["neg_genloss"], frame["pass_at_k_large"])
    frame["post_rl"] = rl.reindex(runs).to_numpy()
    frame = frame.merge(recipes, on="run", how="left", validate="one_to_one")
    frame.attrs.update(avg_metric=avg, k_large=int(k_large))
    return frame


def _finite_pairs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Paired arrays with every pair holding a NaN or inf dropped."""
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length ({xa.size} vs {ya.size})")
    keep = np.isfinite(xa) & np.isfinite(ya)
    return xa[keep], ya[keep]


def _correlations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Spearman ρ, Pearson r); NaN with fewer than 3 pairs or a constant side (nothing to rank)."""
    if x.size < MIN_RUNS_FOR_FIT or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    return float(stats.spearmanr(x, y).statistic), float(stats.pearsonr(x, y).statistic)


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y on x (x must not be constant)."""
    xm, ym = x.mean(), y.mean()
    slope = float(np.sum((x - xm) * (y - ym)) / np.sum((x - xm) ** 2))
    return slope, float(ym - slope * xm)


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination against y's own mean; NaN when y is constant."""
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        return math.nan
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot


def fit_predictor(x: Any, y: Any) -> dict[str, float]:
    """Fit y = slope·x + intercept and report in-sample R², Pearson r and Spearman ρ over the finite pairs.

    Fewer than 3 pairs or a constant x give NaN statistics (a line through 2 points explains nothing).
    """
    xa, ya = _finite_pairs(x, y)
    out = {
        "slope": math.nan,
        "intercept": math.nan,
        "r2": math.nan,
        "pearson": math.nan,
        "spearman": math.nan,
    }
    out["n"] = xa.size
    if xa.size < MIN_RUNS_FOR_FIT or np.ptp(xa) == 0:
        return out
    slope, intercept = _line(xa, ya)
    out["slope"], out["intercept"] = slope, intercept
    out["r2"] = _r2(ya, slope * xa + intercept)
    out["spearman"], out["pearson"] = _correlations(xa, ya)
    return out


def split_r2(x: Any, y: Any, *, n_splits: int = 200, seed: int = 0) -> tuple[float, float]:
    """Mean and std of out-of-sample R² over random half splits: fit on n//2 runs, score on the rest.

    This guards against a predictor that only looks good in-sample on a handful of runs. Splits whose fit
    half has constant x, or whose test half has constant y, are skipped; NaN when no split is usable.
    """
    xa, ya = _finite_pairs(x, y)
    n = xa.size
    if n < MIN_RUNS_FOR_SPLIT or n_splits < 1:
        return math.nan, math.nan
    half = n // 2
    rng = np.random.default_rng(seed)
    scores: list[float] = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        fit, test = perm[:half], perm[half:]
        if np.ptp(xa[fit]) == 0 or np.ptp(ya[test]) == 0:
            continue
        slope, intercept = _line(xa[fit], ya[fit])
        scores.append(_r2(ya[test], slope * xa[test] + intercept))
    if not scores:
        return math.nan, math.nan
    return float(np.mean(scores)), float(np.std(scores))


def predictor_quality(
    values: pd.DataFrame,
    *,
    levels: Sequence[str] = LEVELS,
    n_splits: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """How well each predictor explains post-RL accuracy at each level: fit, R² (in-sample and split), ρ, r.

    Every predictor of a level is scored on the same random splits (same seed), so their R² are paired.
    `comparable` is False where a loss-based predictor mixes SFT subsets (reported, not to be trusted).
    """
    rows: list[dict[str, Any]] = []
    for level in levels:
        frame = values_at_level(values, level)
        for predictor in PREDICTORS:
            fit = fit_predictor(frame[predictor], frame["post_rl"])
            mean, std = split_r2(frame[predictor], frame["post_rl"], n_splits=n_splits, seed=seed)
            rows.append(
                {
                    "level": level,
                    "predictor": predictor,
                    "n_runs": int(fit["n"]),
                    "slope": fit["slope"],
                    "intercept": fit["intercept"],
                    "r2": fit["r2"],
                    "r2_split_mean": mean,
                    "r2_split_std": std,
                    "spearman": fit["spearman"],
                    "pearson": fit["pearson"],
                    "comparable": is_comparable(level, predictor),
                }
            )
    return pd.DataFrame(rows)


def passk_correlation_sweep(tidy: pd.DataFrame, recipes: pd.DataFrame, *, level: str = "all") -> pd.DataFrame:
    """For every k at stage sft: Spearman ρ and Pearson r of post-SFT macro pass@k with post-RL macro avg@n.

    Shows at which k the post-SFT model's coverage starts to rank runs the way RL will.
    """
    tidy = checked_tidy(tidy)
    runs = list(select_level(normalize_recipes(recipes), level)["run"])
    rl = macro_metric(tidy, "rl", avg_metric_name(tidy)).reindex(runs)
    rows = []
    for k in pass_ks(tidy, "sft"):
        x, y = _finite_pairs(macro_metric(tidy, "sft", f"pass@{k}").reindex(runs), rl)
        spearman, pearson = _correlations(x, y)
        rows.append({"k": k, "spearman": spearman, "pearson": pearson, "n_runs": int(x.size)})
    return pd.DataFrame(rows, columns=["k", "spearman", "pearson", "n_runs"])
