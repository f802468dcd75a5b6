"""Rank SFT candidates before RL: drop high-loss checkpoints, rank the rest by pass@large k, predict post-RL.

The paper's practical message is a workflow for spending RL compute: (1) drop SFT candidates whose held-out
generalization loss is high (and rising), (2) rank the rest by pass@large k, (3) calibrate a predicted post-RL score
on the few runs that did get RL. This module does the three steps from a study's tidy and recipes tables, and
measures how well the workflow would have chosen, by leave-one-out over the runs with RL results.

The filter. Held-out losses are comparable only between runs trained on the same data, so a loss is judged "high"
only against the study's dataset-level runs (`predictors.is_comparable`, the level at which the predictors module
compares losses): above `analysis.rank.loss_threshold` when one is given, else above the `loss_quantile` of those
runs' losses. A run outside the dataset level, or one of fewer than `MIN_RUNS_FOR_FIT` comparable runs, is not
judged and stays a candidate. Candidates the study did not train (`candidates:`, tidy stage "candidate") are
judged the same way against the runs measured on the same held-out set: a candidate on the study's own split joins
the dataset-level runs (choosing that split says it was trained on the study's data), a candidate with a set of its
own is compared only with the candidates sharing that set (by its name); the ranking table says which set each
loss is on (`heldout_set`). "Rising" needs the loss along SFT: the DAG's rank rule gives the per-snapshot series of
the loss_along_sft rule (`loss_steps`: run, step, genloss; recipes only, a candidate brings no snapshots); without
one it is "not measured". With it, a loss is rising when its last value exceeds its lowest, and a high loss that is
not rising is kept (an under-trained checkpoint is not an over-fitted one).

The calibration. post-RL = slope · pass@k_large + intercept, least squares over every run with an RL result
(pass@k is comparable across all runs): a recipe's GRPO run in the DAG, or a post-RL score measured elsewhere and
given in `analysis.rank.calibration_csv` (run, post_rl; for recipes or candidates without RL in the DAG). The
prediction interval at level L for a candidate x₀ is ŷ ± t_{(1+L)/2, n−2} · s · √(1 + 1/n + (x₀ − x̄)² / Sxx), s the
residual standard error √(SSR / (n − 2)). With fewer than 3 calibration runs there is no fit (as in the predictors
module) and no prediction.

Ranking quality, by leave-one-out over the runs with RL results: each is predicted by a fit on the others. Spearman ρ
of predicted against actual; top-1 hit: the kept run with the highest prediction is the actual best; top-3 hit: the
actual best is among the three kept runs with the highest predictions; coverage: the share of actuals inside their
intervals. The filter is applied in the hits (it reads no RL result, so it is not refitted): a filter that drops the
actual best makes both hits fail.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from quagmire.analysis.predictors import MIN_RUNS_FOR_FIT, fit_predictor, resolve_k_large, select_level
from quagmire.analysis.tables import (
    CANDIDATE,
    MACRO,
    STUDY_HELDOUT,
    avg_metric_name,
    candidate_genloss,
    checked_tidy,
    heldout_genloss,
    macro_metric,
    normalize_recipes,
    read_recipes,
    read_tidy,
)
from quagmire.config import settings_for
from quagmire.errors import QuagmireError

log = logging.getLogger(__name__)

RANK_SECTION = "analysis.rank"  # the config section of the ranking settings; its schema holds every default
FILTER_LEVEL = "dataset"  # the level at which held-out losses are compared (see predictors.is_comparable)
KEEP, DROP = "keep", "drop"
NOT_JUDGED_LEVEL = "not judged: loss not comparable"
NOT_JUDGED_FEW = "not judged: too few comparable runs"
NOT_JUDGED_NO_LOSS = "not judged: no loss"
NOT_MEASURED = "not measured"
TOP_K = 3
RECIPE = "recipe"  # the `kind` of a run the study trained (CANDIDATE: one it did not)
FROM_DAG, FROM_CSV = "dag", "calibration_csv"  # where a run's post-RL score comes from
# Written only when the study has candidates or a calibration CSV, so a study without either keeps its table as is.
EXTRA_COLUMNS = ("kind", "heldout_set", "post_rl_source")
CALIBRATION_COLUMNS = ("run", "post_rl")
COLUMNS = (
    "rank", "run", "subset", "n_unique", "epochs", "lr", "genloss", "loss_cutoff", "loss_high", "loss_rising",
    "verdict", "pass_at_k_large", "predicted_post_rl", "interval_lo", "interval_hi", "post_rl",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The least-squares line of post-RL on pass@k_large and what its prediction interval needs."""

    n: int
    slope: float = math.nan
    intercept: float = math.nan
    residual_se: float = math.nan
    x_mean: float = math.nan
    sxx: float = math.nan
    r2: float = math.nan
    reason: str = ""  # why there is no fit (empty when fitted)

    @property
    def fitted(self) -> bool:
        return math.isfinite(self.slope)

    def predict(self, x: Any, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point predictions and the (low, high) prediction interval at `level` for pass@k values `x`."""
        xa = np.asarray(x, dtype=float)
        if not self.fitted:
            nan = np.full(xa.shape, math.nan)
            return nan, nan.copy(), nan.copy()
        pred = self.slope * xa + self.intercept
        t = float(stats.t.ppf((1.0 + level) / 2.0, self.n - 2))
        half = t * self.residual_se * np.sqrt(1.0 + 1.0 / self.n + (xa - self.x_mean) ** 2 / self.sxx)
        return pred, pred - half, pred + half


def calibrate(x: Any, y: Any) -> Calibration:
    """Fit post-RL (`y`) on pass@k_large (`x`) over the finite pairs; no fit below 3 pairs or with a constant x."""
    fit = fit_predictor(x, y)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    n = int(xa.size)
    if not math.isfinite(fit["slope"]):
        if n < MIN_RUNS_FOR_FIT:
            why = f"{n} run(s) with RL results, at least {MIN_RUNS_FOR_FIT} needed"
        else:
            why = f"pass@k_large is the same for all {n} runs with RL results (nothing to fit a line to)"
        return Calibration(n=n, reason=why)
    residuals = ya - (fit["slope"] * xa + fit["intercept"])
    return Calibration(
        n=n,
        slope=float(fit["slope"]),
        intercept=float(fit["intercept"]),
        residual_se=float(math.sqrt(np.sum(residuals**2) / (n - 2))),
        x_mean=float(xa.mean()),
        sxx=float(np.sum((xa - xa.mean()) ** 2)),
        r2=float(fit["r2"]),
    )


# ----------------------------------------------------------------------------------------------------
# the filter
# ----------------------------------------------------------------------------------------------------


def loss_rising(loss_steps: pd.DataFrame | None, runs: Sequence[str]) -> dict[str, Any]:
    """Per run: True/False where a per-step loss series (run, step, genloss) exists, else "not measured"."""
    out: dict[str, Any] = {run: NOT_MEASURED for run in runs}
    if loss_steps is None or loss_steps.empty:
        return out
    missing = [c for c in ("run", "step", "genloss") if c not in loss_steps.columns]
    if missing:
        raise QuagmireError(f"loss series: missing column(s) {', '.join(missing)} (need run, step, genloss)")
    for run, series in loss_steps.groupby(loss_steps["run"].astype(str)):
        if run in out:
            losses = series.sort_values("step")["genloss"].astype(float).to_numpy()
            if losses.size >= 2:
                out[run] = bool(losses[-1] > losses.min())
    return out


def loss_groups(frame: pd.DataFrame) -> list[str | None]:
    """Per run, the held-out set its loss is compared on, or None where it is compared with nothing.

    Recipes: the study's set for the dataset-level runs (same data: `predictors.is_comparable`), None for the
    others. Candidates (`kind` "candidate"): their `heldout_set`; one on the study's set joins the dataset level."""
    dataset = set(select_level(frame, FILTER_LEVEL)["run"])
    kinds = frame["kind"] if "kind" in frame.columns else pd.Series(RECIPE, index=frame.index)
    sets = frame["heldout_set"] if "heldout_set" in frame.columns else pd.Series(STUDY_HELDOUT, index=frame.index)
    return [
        heldout if kind == CANDIDATE else (STUDY_HELDOUT if run in dataset else None)
        for run, kind, heldout in zip(frame["run"], kinds, sets, strict=True)
    ]


def loss_filter(
    candidates: pd.DataFrame, settings: Mapping[str, Any], loss_steps: pd.DataFrame | None = None
) -> pd.DataFrame:
    """`candidates` (run, genloss, dataset_level, …) with columns loss_cutoff, loss_high, loss_rising and verdict.

    Each held-out set's runs are judged among themselves (`loss_groups`): the cutoff is `loss_threshold`, or the
    `loss_quantile` of that set's losses; "high" means above it.
    """
    frame = candidates.copy()
    groups = loss_groups(frame)
    finite = [math.isfinite(loss) for loss in frame["genloss"].astype(float)]
    cutoffs: dict[str, float] = {}
    judged: dict[str, bool] = {}
    for group in sorted({g for g in groups if g is not None}):
        losses = [loss for loss, g, ok in zip(frame["genloss"], groups, finite, strict=True) if g == group and ok]
        judged[group] = len(losses) >= MIN_RUNS_FOR_FIT
        if settings["loss_threshold"] is not None:
            cutoffs[group] = float(settings["loss_threshold"])
        else:
            cutoffs[group] = float(np.quantile(losses, settings["loss_quantile"])) if judged[group] else math.nan
    rising = loss_rising(loss_steps, list(frame["run"]))
    highs: list[Any] = []
    verdicts: list[str] = []
    for run, loss, group, ok in zip(frame["run"], frame["genloss"], groups, finite, strict=True):
        if not ok:
            highs.append(None)
            verdicts.append(NOT_JUDGED_NO_LOSS)
        elif group is None:
            highs.append(None)
            verdicts.append(NOT_JUDGED_LEVEL)
        elif not judged[group]:
            highs.append(None)
            verdicts.append(NOT_JUDGED_FEW)
        else:
            high = bool(loss > cutoffs[group])
            highs.append(high)
            verdicts.append(DROP if high and rising[run] is not False else KEEP)
    frame["loss_cutoff"] = [
        cutoffs[g] if g is not None and ok else math.nan for g, ok in zip(groups, finite, strict=True)
    ]
    frame["loss_high"] = highs
    frame["loss_rising"] = [rising[r] for r in frame["run"]]
    frame["verdict"] = verdicts
    return frame


def kept(verdict: str) -> bool:
    """A candidate the filter lets through (kept, or not judged)."""
    return verdict != DROP


# ----------------------------------------------------------------------------------------------------
# candidates, ranking, leave-one-out
# ----------------------------------------------------------------------------------------------------


def candidates_of(tidy: pd.DataFrame, recipes: pd.DataFrame, k_large: int | None) -> pd.DataFrame:
    """Every recipe run with a post-SFT evaluation, and every candidate the study did not train (tidy stage
    "candidate"): its pass@k_large, generalization loss and post-RL score (NaN without RL). With candidates, the
    frame also says each run's `kind` and the `heldout_set` of its loss. `attrs` hold `avg_metric` and `k_large`."""
    tidy, recipes = checked_tidy(tidy), normalize_recipes(recipes)
    avg = avg_metric_name(tidy, ("sft", "rl", CANDIDATE))
    k = resolve_k_large(tidy, k_large)
    sft = macro_metric(tidy, "sft", avg)
    runs = [r for r in recipes["run"] if r in sft.index]
    others = sorted(macro_metric(tidy, CANDIDATE, avg).index)
    if not runs and not others:
        raise QuagmireError("no recipe run has a post-SFT score: nothing to rank")
    if k is None:
        raise QuagmireError("tidy table has no macro pass@k metric at stage sft")
    passk = macro_metric(tidy, "sft", f"pass@{k}")
    other_passk = macro_metric(tidy, CANDIDATE, f"pass@{k}")
    lacking = [r for r in runs if r not in passk.index] + [r for r in others if r not in other_passk.index]
    if lacking:
        raise QuagmireError(f"run(s) {', '.join(lacking)} lack macro pass@{k} at stage sft (analysis.k_large)")
    frame = recipes[recipes["run"].isin(runs)].reset_index(drop=True)
    frame["genloss"] = heldout_genloss(tidy).reindex(frame["run"]).to_numpy()
    frame["pass_at_k_large"] = passk.reindex(frame["run"]).to_numpy()
    if others:
        losses = candidate_genloss(tidy).set_index("run")
        added = pd.DataFrame(
            {
                "run": others,
                "subset": None,
                "n_unique": math.nan,
                "epochs": math.nan,
                "lr": math.nan,
                "dataset_level": False,
                "instance_level": False,
                "genloss": losses["genloss"].reindex(others).to_numpy(dtype=float),
                "pass_at_k_large": other_passk.reindex(others).to_numpy(),
                "kind": CANDIDATE,
                "heldout_set": losses["heldout_set"].reindex(others).fillna(STUDY_HELDOUT).to_numpy(),
            }
        )
        frame = frame.assign(kind=RECIPE, heldout_set=STUDY_HELDOUT)
        frame = pd.concat([frame, added], ignore_index=True)
        frame = frame.astype({"n_unique": "Int64", "epochs": "Int64", "dataset_level": bool, "instance_level": bool})
    frame["post_rl"] = macro_metric(tidy, "rl", avg).reindex(frame["run"]).to_numpy()
    frame.attrs.update(avg_metric=avg, k_large=int(k))
    return frame


def read_calibration(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Post-RL scores measured outside the DAG (columns run, post_rl; a `benchmark` column keeps its macro rows
    only): one numeric score in [0, 1] (a macro avg@n) per run, or one error naming the file, row and value."""
    where = f"analysis.rank.calibration_csv {path}"
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise QuagmireError(f"{where}: file not found") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise QuagmireError(f"{where}: not a readable CSV ({' '.join(str(exc).split())})") from exc
    missing = [c for c in CALIBRATION_COLUMNS if c not in frame.columns]
    if missing:
        raise QuagmireError(
            f"{where}: missing column(s) {', '.join(missing)} (need run, post_rl; optional "
            f"benchmark; got {', '.join(frame.columns) or 'none'})"
        )
    frame["_line"] = range(2, len(frame) + 2)  # the file's line of each row (line 1: the header)
    if "benchmark" in frame.columns:
        frame = frame[frame["benchmark"].str.strip() == MACRO]
    scores = []
    for run, text, line in zip(frame["run"].str.strip(), frame["post_rl"].str.strip(), frame["_line"], strict=True):
        if not run:
            raise QuagmireError(f"{where}: line {line}: empty run name")
        try:
            value = float(text)
        except ValueError:
            raise QuagmireError(f"{where}: line {line}: post_rl {text!r} of run {run!r} is not a number") from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise QuagmireError(
                f"{where}: line {line}: post_rl {text!r} of run {run!r} is not a score in [0, 1] (a macro avg@n)"
            )
        scores.append((run, value))
    runs = [run for run, _ in scores]
    twice = sorted({run for run in runs if runs.count(run) > 1})
    if twice:
        raise QuagmireError(
            f"{where}: run {twice[0]!r} is given {runs.count(twice[0])} times; give one macro post-RL score per run"
        )
    if not scores:
        raise QuagmireError(f"{where}: no post-RL score in it (with a benchmark column, only 'macro' rows count)")
    return pd.DataFrame(scores, columns=list(CALIBRATION_COLUMNS)).assign(source=str(path))


def with_calibration(frame: pd.DataFrame, calibration: pd.DataFrame | None) -> pd.DataFrame:
    """`frame` with each run's `post_rl_source` (dag, calibration_csv or blank), the CSV's scores filled in. A run
    the ranking does not know, or one that has a post-RL score from the DAG already, is an error."""
    frame = frame.copy()
    frame["post_rl_source"] = np.where(frame["post_rl"].notna(), FROM_DAG, "")
    if calibration is None:
        return frame
    where = f"analysis.rank.calibration_csv {calibration['source'].iloc[0]}"
    known = list(frame["run"])
    for run, score in zip(calibration["run"], calibration["post_rl"], strict=True):
        if run not in known:
            raise QuagmireError(
                f"{where}: run {run!r} is neither a recipe nor a candidate with a post-SFT score "
                f"(known: {', '.join(known)})"
            )
        at = known.index(run)
        if frame.at[at, "post_rl_source"] == FROM_DAG:
            raise QuagmireError(
                f"{where}: run {run!r} has a post-RL score from its GRPO run in the DAG already; "
                "give only runs without RL in the DAG"
            )
        frame.at[at, "post_rl"] = float(score)
        frame.at[at, "post_rl_source"] = FROM_CSV
    return frame


def rank_candidates(
    tidy: pd.DataFrame,
    recipes: pd.DataFrame,
    settings: Mapping[str, Any],
    *,
    k_large: int | None = None,
    loss_steps: pd.DataFrame | None = None,
    calibration_scores: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, Calibration]:
    """The ranking table (COLUMNS): kept candidates first, by pass@k_large (ties by run name), rank 1, 2, …; dropped
    ones after them without a rank. Every candidate gets a predicted post-RL score and interval from the calibration
    on the runs with RL results (from the DAG, or `calibration_scores` from `read_calibration`). `settings` is the
    `analysis.rank` section (filled from the schema here). With candidates the study did not train or calibration
    scores, EXTRA_COLUMNS follow (kind, held-out set of the loss, where the post-RL score comes from)."""
    settings = settings_for(RANK_SECTION, settings, "rank settings")
    frame = with_calibration(candidates_of(tidy, recipes, k_large), calibration_scores)
    extended = "kind" in frame.columns or calibration_scores is not None
    if extended and "kind" not in frame.columns:
        frame = frame.assign(kind=RECIPE, heldout_set=STUDY_HELDOUT)
    frame = loss_filter(frame, settings, loss_steps)
    calibration = calibrate(frame["pass_at_k_large"], frame["post_rl"])
    pred, lo, hi = calibration.predict(frame["pass_at_k_large"], settings["interval_level"])
    frame["predicted_post_rl"], frame["interval_lo"], frame["interval_hi"] = pred, lo, hi
    frame["_dropped"] = ~frame["verdict"].map(kept)
    frame = frame.sort_values(["_dropped", "pass_at_k_large", "run"], ascending=[True, False, True], kind="stable")
    n_kept = int((~frame["_dropped"]).sum())
    frame["rank"] = pd.array(list(range(1, n_kept + 1)) + [None] * (len(frame) - n_kept), dtype="Int64")
    attrs = dict(frame.attrs)
    out = frame.loc[:, list(COLUMNS) + (list(EXTRA_COLUMNS) if extended else [])].reset_index(drop=True)
    out.attrs.update(attrs, interval_level=settings["interval_level"], settings=dict(settings))
    return out, calibration


def leave_one_out(ranking: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per run with an RL result: its prediction and interval from a calibration on the other such runs."""
    with_rl = ranking[ranking["post_rl"].notna()].reset_index(drop=True)
    rows = []
    for i, row in with_rl.iterrows():
        others = with_rl.drop(index=i)
        fit = calibrate(others["pass_at_k_large"], others["post_rl"])
        pred, lo, hi = fit.predict([row["pass_at_k_large"]], level)
        rows.append({"run": row["run"], "kept": kept(row["verdict"]), "pass_at_k_large": row["pass_at_k_large"],
                     "post_rl": row["post_rl"], "predicted": float(pred[0]), "interval_lo": float(lo[0]),
                     "interval_hi": float(hi[0]), "n_fit": fit.n, "no_fit": fit.reason})  # fmt: skip
    return pd.DataFrame(rows, columns=["run", "kept", "pass_at_k_large", "post_rl", "predicted", "interval_lo",
                                       "interval_hi", "n_fit", "no_fit"])  # fmt: skip


def ranking_quality(loo: pd.DataFrame, level: float) -> dict[str, Any]:
    """Spearman ρ, top-1 and top-3 hit and interval coverage of the leave-one-out predictions (module docstring)."""
    n = len(loo)
    out: dict[str, Any] = {"n_runs_with_rl": n, "interval_level": level, "spearman": None, "top1_hit": None,
                           "top3_hit": None, "coverage": None, "actual_best": None, "predicted_best": None,
                           "predicted_top3": [], "note": ""}  # fmt: skip
    usable = loo[np.isfinite(loo["predicted"].astype(float))]
    if n == 0:
        out["note"] = "no run has an RL result: no ranking quality"
        return out
    if len(usable) < n:
        unfit = loo.loc[~np.isfinite(loo["predicted"].astype(float))].iloc[0]
        out["note"] = f"no leave-one-out fit without {unfit['run']}: {unfit['no_fit']}"
        return out
    actual, predicted = loo["post_rl"].astype(float), loo["predicted"].astype(float)
    if n >= MIN_RUNS_FOR_FIT and np.ptp(actual) > 0 and np.ptp(predicted) > 0:
        out["spearman"] = float(stats.spearmanr(predicted, actual).statistic)
    best = loo.sort_values(["post_rl", "run"], ascending=[False, True]).iloc[0]["run"]
    picks = loo[loo["kept"]].sort_values(["predicted", "run"], ascending=[False, True])["run"].tolist()
    out["actual_best"], out["predicted_best"] = best, (picks[0] if picks else None)
    out["predicted_top3"] = picks[:TOP_K]
    out["top1_hit"] = bool(picks[:1] == [best])
    out["top3_hit"] = bool(best in picks[:TOP_K])
    inside = (loo["interval_lo"] <= loo["post_rl"]) & (loo["post_rl"] <= loo["interval_hi"])
    out["coverage"] = float(inside.mean())
    if best not in set(loo.loc[loo["kept"], "run"]):
        out["note"] = f"the filter dropped the actual best run ({best})"
    return out


def pooled_quality(per_study: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Quality over several studies, pooled where pooling means something without a cross-study fit: coverage over
    every run, top-1 and top-3 hits as counts of studies, and the mean of the per-study Spearman ρ (fits stay per
    study, as the paper's rule for a paper of several studies has it)."""
    judged = {name: q for name, q in per_study.items() if q.get("coverage") is not None}
    runs = sum(q["n_runs_with_rl"] for q in judged.values())
    rhos = [q["spearman"] for q in judged.values() if q.get("spearman") is not None]
    return {
        "studies": len(judged),
        "n_runs_with_rl": runs,
        "coverage": (sum(q["coverage"] * q["n_runs_with_rl"] for q in judged.values()) / runs) if runs else None,
        "top1_hits": sum(bool(q["top1_hit"]) for q in judged.values()),
        "top3_hits": sum(bool(q["top3_hit"]) for q in judged.values()),
        "mean_spearman": float(np.mean(rhos)) if rhos else None,
    }


# ----------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or value is pd.NA:
        return "–"
    return f"{value:.{digits}f}"


def _flag(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return {True: "yes", False: "no"}.get(value, str(value))


def quality_lines(quality: Mapping[str, Any]) -> list[str]:
    """The "ranking quality" block: one line per leave-one-out number."""
    level = f"{quality['interval_level']:.0%}"
    lines = [f"- runs with RL results: {quality['n_runs_with_rl']}"]
    if quality["coverage"] is not None:
        top3 = ", ".join(quality["predicted_top3"])
        lines += [
            f"- Spearman ρ (leave-one-out predicted vs actual post-RL): {_num(quality['spearman'], 2)}",
            f"- top-1 hit: {_flag(quality['top1_hit'])} (predicted best {quality['predicted_best']}, actual best "
            f"{quality['actual_best']})",
            f"- top-3 hit: {_flag(quality['top3_hit'])} (predicted top 3: {top3})",
            f"- {level} interval coverage: {quality['coverage']:.0%}",
        ]
    if quality["note"]:
        lines.append(f"- note: {quality['note']}")
    return lines


def ranking_markdown(ranking: pd.DataFrame, calibration: Calibration, quality: Mapping[str, Any]) -> str:
    """The ranking (filter verdicts, pass@k, predicted post-RL ± interval) and the ranking-quality block."""
    k, avg, level = ranking.attrs["k_large"], ranking.attrs["avg_metric"], ranking.attrs["interval_level"]
    settings = ranking.attrs["settings"]
    cutoff = (f"above {settings['loss_threshold']:g} nats" if settings["loss_threshold"] is not None
              else f"above the {settings['loss_quantile']:g} quantile of the dataset-level runs' losses")  # fmt: skip
    if calibration.fitted:
        sign = "−" if calibration.intercept < 0 else "+"
        fit = (f"post-RL {avg} = {calibration.slope:.3f} · pass@{k} {sign} {abs(calibration.intercept):.3f} over "
               f"{calibration.n} runs with RL results (R² {calibration.r2:.2f}, residual SE "
               f"{calibration.residual_se:.3f}); {level:.0%} prediction intervals, t with "
               f"{calibration.n - 2} dof.")  # fmt: skip
    else:
        fit = f"No calibration: {calibration.reason}; no predicted score or interval."
    measured = any(isinstance(r, bool) for r in ranking["loss_rising"])
    rising = ("and rising (its last loss along SFT above its lowest)" if measured
              else "(and rising: not measured, the loss exists at the final SFT checkpoint only, so high alone "
              "drops)")  # fmt: skip
    extended = "kind" in ranking.columns  # candidates the study did not train, or post-RL scores from a CSV
    sets = ""
    if extended:
        sets = (
            " A candidate the study did not train is judged against the runs whose loss is on the same "
            "held-out set (column 'held-out set'): on the study's split, with the dataset-level runs; on a set "
            "of its own, with the candidates sharing it."
        )
    lines = [
        "# Ranking SFT candidates before RL",
        "",
        f"Filter: drop a candidate whose held-out generalization loss is high, {cutoff} {rising}; losses are "
        "compared among dataset-level runs only (same data), other runs are not judged and stay candidates."
        f"{sets} Rank the rest by post-SFT pass@{k}. {fit}",
        "",
        f"| rank | run | loss |{' held-out set |' if extended else ''} high | rising | verdict | pass@{k} | "
        f"predicted post-RL [{level:.0%} PI] | post-RL {avg} |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if extended else ""),
    ]
    for row in ranking.itertuples(index=False):
        rank = "–" if row.rank is pd.NA else str(row.rank)
        interval = f" [{_num(row.interval_lo)}, {_num(row.interval_hi)}]" if math.isfinite(row.interval_lo) else ""
        run, heldout, post_rl = row.run, "", _num(row.post_rl)
        if extended:
            run = f"{row.run} (candidate)" if row.kind == CANDIDATE else row.run
            heldout = f" {row.heldout_set} |"
            post_rl += " (CSV)" if row.post_rl_source == FROM_CSV else ""
        lines.append(
            f"| {rank} | {run} | {_num(row.genloss)} |{heldout} {_flag(row.loss_high)} | {_flag(row.loss_rising)} | "
            f"{row.verdict} | {_num(row.pass_at_k_large)} | {_num(row.predicted_post_rl)}{interval} | "
            f"{post_rl} |"
        )
    if extended and (ranking["post_rl_source"] == FROM_CSV).any():
        lines += [
            "",
            "(CSV): a post-RL score measured outside the DAG (analysis.rank.calibration_csv); it joins the "
            "calibration and the leave-one-out like a GRPO run's.",
        ]
    lines += ["", "## Ranking quality (leave-one-out over the runs with RL results)", "", *quality_lines(quality)]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    """JSON-ready values: numpy scalars as Python ones, NaN, inf and NA as None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def ranking_figure(ranking: pd.DataFrame, calibration: Calibration, loo: pd.DataFrame, plot_settings: Any) -> Any:
    """Left: predicted post-RL against pass@k_large, interval bars, actuals where RL ran, dropped runs in grey.
    Right: leave-one-out predicted against actual post-RL, with the diagonal."""
    from quagmire.analysis.plots import new_figure, no_data

    k, avg = ranking.attrs["k_large"], ranking.attrs["avg_metric"]
    fig, axes = new_figure(plot_settings, 1, 2)
    left, right = axes[0]
    x = ranking["pass_at_k_large"].to_numpy(dtype=float)
    if calibration.fitted:
        grid = np.linspace(x.min(), x.max(), 50)
        line, lo, hi = calibration.predict(grid, ranking.attrs["interval_level"])
        left.plot(grid, line, color="0.3", linewidth=1, label="calibration")
        left.fill_between(grid, lo, hi, color="0.85", label=f"{ranking.attrs['interval_level']:.0%} PI")
        for dropped, color, label in ((False, "tab:blue", "predicted (kept)"), (True, "0.6", "predicted (dropped)")):
            part = ranking[ranking["verdict"].map(kept) != dropped]
            if len(part):
                y = part["predicted_post_rl"].to_numpy(dtype=float)
                err = np.vstack([y - part["interval_lo"].to_numpy(dtype=float),
                                 part["interval_hi"].to_numpy(dtype=float) - y])  # fmt: skip
                left.errorbar(part["pass_at_k_large"], y, yerr=err, fmt="o", color=color, capsize=3, label=label)
    else:
        no_data(left, "no calibration (< 3 runs with RL)")
    actual = ranking[ranking["post_rl"].notna()]
    left.scatter(actual["pass_at_k_large"], actual["post_rl"], marker="x", color="tab:red", label="actual", zorder=3)
    left.set_xlabel(f"post-SFT pass@{k}")
    left.set_ylabel(f"post-RL {avg}")
    left.set_title("Predicted post-RL score")
    left.legend(fontsize="small")
    usable = loo[np.isfinite(loo["predicted"].astype(float))] if len(loo) else loo
    if len(usable):
        y = usable["predicted"].to_numpy(dtype=float)
        err = np.vstack([y - usable["interval_lo"].to_numpy(dtype=float),
                         usable["interval_hi"].to_numpy(dtype=float) - y])  # fmt: skip
        right.errorbar(usable["post_rl"], y, yerr=err, fmt="o", color="tab:blue", capsize=3)
        lims = [min(usable["post_rl"].min(), y.min()), max(usable["post_rl"].max(), y.max())]
        right.plot(lims, lims, color="0.5", linestyle="--", linewidth=1)
        for run, xa, ya in zip(usable["run"], usable["post_rl"], y, strict=True):
            right.annotate(run, (xa, ya), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    else:
        no_data(right, "no leave-one-out (< 4 runs with RL)")
    right.set_xlabel(f"actual post-RL {avg}")
    right.set_ylabel("leave-one-out predicted")
    right.set_title("Leave-one-out")
    return fig


def rank_to_file(
    tidy: str | os.PathLike[str],
    recipes: str | os.PathLike[str],
    settings: Mapping[str, Any],
    plot_settings: Mapping[str, Any],
    out_csv: str | os.PathLike[str],
    out_md: str | os.PathLike[str],
    out_json: str | os.PathLike[str],
    out_figure: str | os.PathLike[str],
    loss_steps: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The `quagmire rank` step: rank a study's SFT candidates, measure the ranking by leave-one-out, write the
    table (CSV, Markdown), the quality (JSON) and the figure (PNG); print the Markdown. `settings` holds the
    study's `analysis.k_large` and `analysis.rank`; `plot_settings` its `plots` section (the figure is PNG whatever
    its format, since one rule writes it next to the tables)."""
    from quagmire.analysis.plots import PlotSettings, save_figure
    from quagmire.io import atomic_path
    from quagmire.provenance import step_manifest, write_sidecar

    rank_settings = settings_for(RANK_SECTION, settings.get("rank"), "rank settings")
    calibration_csv = rank_settings.get("calibration_csv")
    scores = read_calibration(calibration_csv) if calibration_csv else None
    steps = None
    if loss_steps is not None:
        try:
            steps = pd.read_csv(loss_steps, dtype={"run": str})
        except FileNotFoundError as exc:
            raise QuagmireError(f"loss series not found: {loss_steps}") from exc
    ranking, calibration = rank_candidates(
        read_tidy(tidy),
        read_recipes(recipes),
        rank_settings,
        k_large=settings.get("k_large"),
        loss_steps=steps,
        calibration_scores=scores,
    )
    loo = leave_one_out(ranking, rank_settings["interval_level"])
    quality = ranking_quality(loo, rank_settings["interval_level"])
    record = {
        "metric": ranking.attrs["avg_metric"],
        "k_large": ranking.attrs["k_large"],
        "settings": rank_settings,
        "calibration": dataclasses.asdict(calibration),
        "quality": quality,
        "leave_one_out": loo.to_dict(orient="records"),
    }
    if scores is not None:
        record["calibration_csv"] = {
            "path": str(calibration_csv),
            "runs": dict(zip(scores["run"], scores["post_rl"], strict=True)),
        }
    markdown = ranking_markdown(ranking, calibration, quality)
    with atomic_path(out_csv) as tmp:
        ranking.to_csv(tmp, index=False)
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(markdown)
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(_plain(record), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    figure_settings = dataclasses.replace(PlotSettings.from_config(plot_settings), format="png")
    save_figure(ranking_figure(ranking, calibration, loo, figure_settings), out_figure, figure_settings)
    inputs = [("tidy", tidy), ("recipes", recipes)]
    inputs += [("calibration", calibration_csv)] if scores is not None else []
    inputs += [("loss_steps", loss_steps)] if loss_steps is not None else []
    manifest = step_manifest("rank", inputs,
                             settings={"analysis": dict(settings), "plots": dict(plot_settings)})  # fmt: skip
    for path in (out_csv, out_md, out_json, out_figure):
        write_sidecar(path, manifest)
    print(markdown, end="")
    return quality


# ----------------------------------------------------------------------------------------------------
# a paper of several studies
# ----------------------------------------------------------------------------------------------------


def read_quality(path: str | os.PathLike[str], study: str) -> dict[str, Any]:
    """The leave-one-out quality block of one study's `ranking_quality.json` (as `rank_to_file` writes it)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise QuagmireError(f"study {study}: cannot read its ranking quality {path}: {exc}") from exc
    quality = record.get("quality") if isinstance(record, dict) else None
    missing = [k for k in ("n_runs_with_rl", "spearman", "top1_hit", "top3_hit", "coverage")
               if not isinstance(quality, dict) or k not in quality]  # fmt: skip
    if missing:
        raise QuagmireError(f"study {study}: {path} is not a ranking quality file (no quality.{', '.join(missing)})")
    return quality


def paper_ranking_markdown(per_study: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    """The ranking quality of each study, a row each, then the pooled line (`pooled_quality`)."""
    pooled = pooled_quality(per_study)
    lines = [
        "# Ranking SFT candidates before RL, across the paper's studies",
        "",
        "Each study's leave-one-out quality (its own calibration fit; tables/ranking.md of that study), then pooled "
        "without a cross-study fit: coverage over every run, hits as counts of studies, the mean Spearman ρ.",
        "",
        "| study | runs with RL | Spearman ρ | top-1 hit | top-3 hit | interval coverage | predicted best "
        "| actual best |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, q in per_study.items():
        coverage = "–" if q.get("coverage") is None else f"{q['coverage']:.0%}"
        cells = [labels.get(name, name), str(q["n_runs_with_rl"]), _num(q.get("spearman"), 2),
                 _flag(q.get("top1_hit")), _flag(q.get("top3_hit")), coverage,
                 str(q.get("predicted_best") or "–"), str(q.get("actual_best") or "–")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    judged = pooled["studies"]
    if judged:
        lines += [
            "",
            f"Pooled over {judged} of {len(per_study)} studies with a leave-one-out ({pooled['n_runs_with_rl']} runs "
            f"with RL): mean ρ {_num(pooled['mean_spearman'], 2)}, top-1 hit in {pooled['top1_hits']} of {judged}, "
            f"top-3 hit in {pooled['top3_hits']} of {judged}, interval coverage {pooled['coverage']:.0%}.",
        ]
    else:
        lines += ["", "No study has a leave-one-out (each needs at least 3 runs with RL results): nothing to pool."]
    return "\n".join(lines) + "\n"


def paper_ranking_to_file(
    studies: Sequence[tuple[str, str | os.PathLike[str]]],
    out_md: str | os.PathLike[str],
    out_json: str | os.PathLike[str],
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The `quagmire paper-ranking` step: every study's ranking quality (`ranking_quality.json`) side by side and
    pooled (`pooled_quality`), as Markdown and JSON; prints the Markdown. Fits stay per study: the models of a
    paper score on different scales, so one calibration line across them would mean nothing."""
    from quagmire.io import atomic_path
    from quagmire.provenance import step_manifest, write_sidecar

    labels = dict(labels or {})
    unknown = sorted(set(labels) - {name for name, _ in studies})
    if unknown:
        raise QuagmireError(f"--label for unknown stud(ies) {', '.join(unknown)}")
    per_study = {name: read_quality(path, name) for name, path in studies}
    if len(per_study) != len(studies):
        raise QuagmireError("a study is given twice")
    markdown = paper_ranking_markdown(per_study, labels)
    record = {"studies": per_study, "pooled": pooled_quality(per_study)}
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(markdown)
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(_plain(record), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    manifest = step_manifest("paper_ranking", [(name, path) for name, path in studies], settings={"labels": labels})
    for path in (out_md, out_json):
        write_sidecar(path, manifest)
    print(markdown, end="")
    return record
