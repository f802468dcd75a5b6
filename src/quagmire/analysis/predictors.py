"""Predictors of the post-RL score, their linear fits, R² and rank correlations.

The study's question is whether a measurement of the post-SFT model (its own accuracy, its held-out
generalization loss, its pass@large k, or the average of the last two) predicts the accuracy reached after
RL from it. Everything here reads the tidy table and the recipes table (`quagmire.analysis.tables`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from quagmire.analysis.tables import (
    BASE_RUN,
    avg_metric_name,
    checked_tidy,
    heldout_genloss,
    macro_metric,
    normalize_recipes,
    pass_ks,
    read_recipes,
    read_tidy,
)
from quagmire.errors import QuagmireError
from quagmire.provenance import step_manifest, write_sidecar

log = logging.getLogger(__name__)

PREDICTORS = ("post_sft", "neg_genloss", "pass_at_k_large", "avg_both")
LEVELS = ("dataset", "instance", "all")
# Generalization loss is measured on the held-out split of the SFT data; subsets of different response
# lengths have different token distributions, so their losses cannot be compared with each other.
GENLOSS_PREDICTORS = ("neg_genloss", "avg_both")
MIN_RUNS_FOR_FIT = 3
MIN_RUNS_FOR_SPLIT = 4


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


def resolve_k_large(tidy: pd.DataFrame, k_large: int | None = None) -> int | None:
    """The k of "pass@large k": `k_large` as configured, else the largest k measured at stage sft (None: none)."""
    if k_large is not None:
        return int(k_large)
    ks = pass_ks(tidy, "sft")
    return ks[-1] if ks else None


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
    k_large = resolve_k_large(tidy, k_large)
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


def predictors_to_file(
    tidy: str | os.PathLike[str],
    recipes: str | os.PathLike[str],
    settings: Mapping[str, Any],
    values: str | os.PathLike[str],
    sweep: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> pd.DataFrame:
    """Predictor values, their quality and the pass@k sweep from the tidy and recipes tables, each written as CSV:
    the `quagmire predictors` step of the DAG. `settings` is the study's `analysis` section plus its `seed`."""
    from quagmire.io import atomic_path

    tidy_frame, recipes_frame = read_tidy(tidy), read_recipes(recipes)
    value_frame = predictor_values(tidy_frame, recipes_frame, k_large=settings.get("k_large"))
    quality = predictor_quality(value_frame, n_splits=settings["n_splits"], seed=settings["seed"])
    sweep_frame = passk_correlation_sweep(tidy_frame, recipes_frame)
    manifest = step_manifest("predictors", [("tidy", tidy), ("recipes", recipes)], settings=settings)
    for frame, path in ((value_frame, values), (quality, out), (sweep_frame, sweep)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        write_sidecar(path, manifest)
    with_rl = quality[quality["level"] == "all"]
    log.info("predictor quality (all runs):\n%s", with_rl.to_string(index=False))
    return quality
