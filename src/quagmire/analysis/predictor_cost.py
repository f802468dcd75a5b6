"""What each predictor of the post-RL score costs, next to how well it predicts (issue 12, item 5).

A predictor is only useful if it is cheaper than running RL. This table puts each one's compute (samples drawn,
SFT checkpoints, RL steps and completions) beside its held-out-half R² and Spearman ρ against the post-RL score.
The fits, splits and levels are those of `quagmire.analysis.predictors` (`fit_predictor`, `split_r2`,
`values_at_level`), so every row is scored exactly like `tables/predictors.csv`.

Rows: post-SFT avg@n; pass@large k re-estimated from n' of the drawn samples (several seeded draws) and from all
of them; generalization loss; the minimum held-out loss along SFT (`--loss-along-sft`: the per-snapshot table of
the loss_along_sft rule); early-RL extrapolation (a saturating curve fitted to the first shares of the GRPO reward
history, extrapolated to the last step); the paper's average of loss and pass@large k; and, for reference, the
post-RL score itself. A row that cannot be had says why instead of a number.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quagmire.analysis.predictors import (
    LEVELS,
    fit_predictor,
    is_comparable,
    predictor_values,
    split_r2,
    values_at_level,
)
from quagmire.analysis.tables import read_recipes, read_tidy
from quagmire.errors import QuagmireError
from quagmire.eval.metrics import pass_at_ks
from quagmire.provenance import step_manifest, write_sidecar
from quagmire.statuses import GOLD_INVALID

log = logging.getLogger(__name__)

MIN_EARLY_POINTS = 3  # a 3-parameter curve through fewer logged points is not a fit
TAU_GRID = 400  # log-spaced time constants of the early-RL fit (then refined once around the best)
FLAT = 1e-12  # a reward window whose range is below this is flat: its prediction is its mean
COLUMNS = (
    "level", "predictor", "label", "available", "why_not", "samples_per_problem", "k", "samples",
    "sft_checkpoints", "rl_steps", "rl_completions", "heldout_examples", "n_runs", "draws", "r2",
    "r2_split_mean", "r2_split_std", "r2_split_draw_std", "spearman", "spearman_draw_std", "comparable",
)  # fmt: skip
LOSS_ALONG_SFT_MISSING = "not available until loss along SFT is measured (issue 12 item 2)"


# ----------------------------------------------------------------------------------------------------
# per-sample correctness and subsampled pass@k
# ----------------------------------------------------------------------------------------------------


def correct_matrix(grades: pd.DataFrame, where: str = "grades") -> np.ndarray:
    """Problems × samples booleans of one benchmark's grades, problems with a gold_invalid sample left out (as
    `quagmire.eval.metrics.benchmark_metrics` leaves them out), samples in sample_idx order."""
    missing = [c for c in ("problem_id", "sample_idx", "status", "correct") if c not in grades.columns]
    if missing:
        raise QuagmireError(f"{where} lacks column(s) {', '.join(missing)}")
    invalid = set(grades.loc[grades["status"] == GOLD_INVALID, "problem_id"])
    scored = grades[~grades["problem_id"].isin(invalid)]
    if scored.empty:
        raise QuagmireError(f"{where} has no scored problem")
    sizes = scored.groupby("problem_id", sort=True).size()
    if sizes.nunique() != 1:
        raise QuagmireError(f"{where}: every problem needs the same number of samples (found {sorted(set(sizes))})")
    ordered = scored.sort_values(["problem_id", "sample_idx"], kind="stable")
    return ordered["correct"].astype(bool).to_numpy().reshape(len(sizes), int(sizes.iloc[0]))


def subsample_k(n_sub: int, k_large: int | None) -> int:
    """The k of pass@large k for n' samples: the study's rule (`analysis.k_large`, else the largest k measured,
    which is n) applied to n': `k_large` capped at n', or n' when `k_large` is null."""
    return n_sub if k_large is None else min(int(k_large), n_sub)


def subsampled_pass_at_k(correct: np.ndarray, n_sub: int, k: int, rng: np.random.Generator) -> float:
    """Mean over problems of unbiased pass@k from n' of each problem's samples, drawn without replacement."""
    problems, n = correct.shape
    if not 1 <= k <= n_sub <= n:
        raise QuagmireError(f"pass@{k} from {n_sub} of {n} samples per problem is not defined")
    picks = np.argsort(rng.random((problems, n)), axis=1)[:, :n_sub]
    c = np.take_along_axis(correct, picks, axis=1).sum(axis=1)
    return float(pass_at_ks(np.full(problems, n_sub), c, [k])[k].mean())


def macro_subsampled_pass_at_k(
    per_benchmark: Mapping[str, np.ndarray], n_sub: int, k: int, *, draws: int, seed: int
) -> np.ndarray:
    """One macro pass@k (mean over benchmarks) per draw; draw d of every run uses the same seed [seed, d]."""
    out = np.empty(draws)
    for d in range(draws):
        rng = np.random.default_rng([seed, d])
        out[d] = np.mean([subsampled_pass_at_k(per_benchmark[b], n_sub, k, rng) for b in sorted(per_benchmark)])
    return out


# ----------------------------------------------------------------------------------------------------
# early-RL extrapolation
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EarlyFit:
    """A saturating curve r(t) = a − b·exp(−t/τ) through a reward window, and its value at the last step."""

    predicted: float
    a: float = math.nan
    b: float = math.nan
    tau: float = math.nan
    flat: bool = False


def _fit_b(t: np.ndarray, r: np.ndarray, a: float, e: np.ndarray) -> tuple[float, float]:
    """Least-squares b for a fixed a and basis e = exp(−t/τ); returns (b, squared error)."""
    b = float(np.dot(a - r, e) / np.dot(e, e))
    return b, float(np.sum((a - b * e - r) ** 2))


def _fit_at(t: np.ndarray, r: np.ndarray, tau: float, a_max: float) -> tuple[float, float, float]:
    """(a, b, squared error) of the best curve with time constant τ, a kept in [0, a_max] (closed form)."""
    e = np.exp(-t / tau)
    design = np.column_stack([np.ones_like(e), -e])
    (a, b), *_ = np.linalg.lstsq(design, r, rcond=None)
    if 0.0 <= a <= a_max:
        return float(a), float(b), float(np.sum((a - b * e - r) ** 2))
    a = float(min(max(a, 0.0), a_max))
    b, sse = _fit_b(t, r, a, e)
    return a, b, sse


def fit_saturating(
    steps: Sequence[float], rewards: Sequence[float], last_step: float, *, a_max: float = 1.0
) -> EarlyFit:
    """Fit r(t) = a − b·exp(−t/τ) to (step, reward) points and extrapolate to `last_step`.

    Why this fit: rewards of GRPO rise fast and level off, and a − b·exp(−t/τ) is the simplest curve that does
    (monotone, with an asymptote a); b may be negative (a falling reward levels off too). It is fitted by a grid
    over τ (log-spaced, then refined once around the best) with a and b in closed form for each τ, a held in
    [0, a_max] (the reward's range): deterministic, no starting point, no convergence failure, and the
    prediction lies between the window's last fitted value and a. A flat window predicts its mean.
    """
    t = np.asarray(steps, dtype=float)
    r = np.asarray(rewards, dtype=float)
    if t.size < MIN_EARLY_POINTS:
        raise QuagmireError(f"a saturating fit needs at least {MIN_EARLY_POINTS} points (got {t.size})")
    if np.ptp(r) < FLAT:
        return EarlyFit(predicted=float(r.mean()), flat=True)
    spacing = float(np.min(np.diff(np.unique(t)))) if np.unique(t).size > 1 else 1.0
    low, high = spacing / 10.0, max(float(last_step), float(t.max())) * 10.0
    taus = np.geomspace(low, high, TAU_GRID)
    best = min(range(TAU_GRID), key=lambda i: (_fit_at(t, r, taus[i], a_max)[2], i))
    fine = np.geomspace(taus[max(best - 1, 0)], taus[min(best + 1, TAU_GRID - 1)], TAU_GRID)
    fits = [(*_fit_at(t, r, tau, a_max), tau) for tau in fine]
    a, b, _, tau = min(fits, key=lambda f: f[2])
    return EarlyFit(predicted=float(a - b * math.exp(-last_step / tau)), a=a, b=b, tau=float(tau))


def reward_window(stats: Mapping[str, Any], fraction: float, where: str) -> tuple[list[float], list[float], int]:
    """The logged (step, reward) points at or before `fraction` of the run's steps, and its last step."""
    history = stats.get("history")
    last = stats.get("global_steps")
    if not isinstance(history, list) or not isinstance(last, int) or last < 1:
        raise QuagmireError(f"{where} needs a 'history' list and a positive integer 'global_steps'")
    cut = fraction * last
    points = [(float(h["step"]), float(h["reward"])) for h in history if "reward" in h and "step" in h]
    window = sorted(p for p in points if p[0] <= cut + 1e-9)
    return [p[0] for p in window], [p[1] for p in window], last


# ----------------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One predictor: how to compute it per run (a column of the values frame, one per draw), and its cost."""

    predictor: str
    label: str
    columns: list[str] = field(default_factory=list)  # one column per draw; empty when not available
    why_not: str = ""
    samples_per_problem: int = 0
    k: int | None = None
    samples: int = 0
    sft_checkpoints: int = 1
    rl_steps: int = 0
    rl_completions: int = 0
    heldout_examples: int = 0
    comparable_as: str | None = None  # the predictors.py name whose comparability it shares


def _stats(frame: pd.DataFrame, columns: Sequence[str], n_splits: int, seed: int) -> dict[str, float]:
    """Split R² pooled over draws (law of total variance), in-sample R² and ρ averaged, their spread over draws."""
    means, stds, rhos, r2s = [], [], [], []
    for column in columns:
        fit = fit_predictor(frame[column], frame["post_rl"])
        mean, std = split_r2(frame[column], frame["post_rl"], n_splits=n_splits, seed=seed)
        means.append(mean)
        stds.append(std)
        rhos.append(fit["spearman"])
        r2s.append(fit["r2"])
    m, s = np.asarray(means), np.asarray(stds)
    pooled = float(np.sqrt(np.mean(s**2 + (m - m.mean()) ** 2))) if np.all(np.isfinite(m)) else math.nan
    return {
        "n_runs": int(frame[list(columns)].notna().all(axis=1).sum()),
        "r2": float(np.mean(r2s)),
        "r2_split_mean": float(m.mean()),
        "r2_split_std": pooled,
        "r2_split_draw_std": float(m.std()) if len(columns) > 1 else math.nan,
        "spearman": float(np.mean(rhos)),
        "spearman_draw_std": float(np.std(rhos)) if len(columns) > 1 else math.nan,
    }


def predictor_cost(
    tidy: pd.DataFrame,
    recipes: pd.DataFrame,
    grades: Mapping[str, Mapping[str, pd.DataFrame]],
    train_stats: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    *,
    loss_along_sft: pd.DataFrame | None = None,
    levels: Sequence[str] = LEVELS,
) -> pd.DataFrame:
    """The predictor cost table: one row per level × predictor (see the module docstring and `COLUMNS`).

    `grades`: run -> benchmark -> post-SFT grades; `train_stats`: run -> its GRPO train_stats.json;
    `settings`: the analysis keys (k_large, n_splits, cost_sample_sizes, cost_draws, early_rl_fractions), the
    study's seed and its rl prompts_per_step, group_size and format_reward. `loss_along_sft` (columns run, step,
    genloss: one row per SFT checkpoint) adds the minimum held-out loss along SFT; without it that row says why.
    """
    values = predictor_values(tidy, recipes, k_large=settings.get("k_large"))
    runs = list(values["run"])
    if not runs:
        raise QuagmireError("no run has both a post-SFT and a post-RL score: nothing to predict")
    matrices = _matrices(grades, runs)
    first = matrices[runs[0]]
    n_drawn = next(iter(first.values())).shape[1]
    problems = sum(m.shape[0] for m in first.values())
    drawn = sum(int(len(grades[runs[0]][b])) for b in grades[runs[0]])  # every sample drawn, gold_invalid too
    total_problems = drawn // n_drawn
    draws, seed = int(settings["cost_draws"]), int(settings["seed"])
    heldout = _heldout_examples(tidy, runs)
    rows: list[Row] = [
        Row("post_sft", f"post-SFT avg@{n_drawn}", ["post_sft"], samples_per_problem=n_drawn,
            samples=total_problems * n_drawn),
    ]  # fmt: skip
    k_full = int(values.attrs["k_large"])
    for n_sub in sorted(int(n) for n in settings["cost_sample_sizes"]):
        k = subsample_k(n_sub, settings.get("k_large"))
        row = Row(f"pass_at_k_large_n{n_sub}", f"pass@{k} from n' = {n_sub}", samples_per_problem=n_sub, k=k,
                  samples=total_problems * n_sub, comparable_as="pass_at_k_large")  # fmt: skip
        if n_sub > n_drawn:
            row.why_not = f"not available: n = {n_drawn} drawn"
        else:
            for run in runs:
                per_draw = macro_subsampled_pass_at_k(matrices[run], n_sub, k, draws=draws, seed=seed)
                for d, value in enumerate(per_draw):
                    values.loc[values["run"] == run, f"{row.predictor}_d{d}"] = value
            row.columns = [f"{row.predictor}_d{d}" for d in range(draws)]
        rows.append(row)
    rows.append(Row("pass_at_k_large", f"pass@{k_full} from all n = {n_drawn}", ["pass_at_k_large"],
                    samples_per_problem=n_drawn, k=k_full, samples=total_problems * n_drawn))  # fmt: skip
    rows.append(Row("neg_genloss", "generalization loss (final checkpoint)", ["neg_genloss"],
                    heldout_examples=heldout))  # fmt: skip
    rows.append(_loss_along_sft_row(values, loss_along_sft, heldout))
    rows.extend(_early_rl_rows(values, train_stats, settings))
    rows.append(Row("avg_both", f"average of loss and pass@{k_full} (the paper's)", ["avg_both"],
                    samples_per_problem=n_drawn, k=k_full, samples=total_problems * n_drawn,
                    heldout_examples=heldout))  # fmt: skip
    steps = max(int(s["global_steps"]) for s in train_stats.values()) if train_stats else 0
    rows.append(Row("post_rl", f"reference: the post-RL avg@{n_drawn} itself", ["post_rl"],
                    samples_per_problem=n_drawn, samples=total_problems * n_drawn, rl_steps=steps,
                    rl_completions=steps * _completions_per_step(settings)))  # fmt: skip
    log.info("%d runs, n = %d drawn, %d problems (%d scored)", len(runs), n_drawn, total_problems, problems)
    return _score_rows(values, rows, levels, settings)


def _score_rows(values: pd.DataFrame, rows: Sequence[Row], levels: Sequence[str], settings: Mapping[str, Any]):
    out: list[dict[str, Any]] = []
    for level in levels:
        frame = values_at_level(values, level)
        for row in rows:
            record: dict[str, Any] = {c: getattr(row, c, None) for c in COLUMNS if hasattr(row, c)}
            record.update(level=level, available=bool(row.columns) and not row.why_not,
                          draws=len(row.columns) if len(row.columns) > 1 else 1,
                          comparable=is_comparable(level, row.comparable_as or row.predictor))  # fmt: skip
            if record["available"] and row.predictor != "post_rl":
                record.update(_stats(frame, row.columns, int(settings["n_splits"]), int(settings["seed"])))
            else:
                record.update(n_runs=len(frame), r2=math.nan, r2_split_mean=math.nan, r2_split_std=math.nan,
                              r2_split_draw_std=math.nan, spearman=math.nan, spearman_draw_std=math.nan)  # fmt: skip
            out.append(record)
    return pd.DataFrame(out, columns=list(COLUMNS))


def _matrices(
    grades: Mapping[str, Mapping[str, pd.DataFrame]], runs: Sequence[str]
) -> dict[str, dict[str, np.ndarray]]:
    lacking = [r for r in runs if r not in grades]
    if lacking:
        raise QuagmireError(f"no post-SFT grades for run(s) {', '.join(lacking)}")
    out = {run: {b: correct_matrix(g, f"grades of {run}/{b}") for b, g in grades[run].items()} for run in runs}
    shapes = {run: {b: m.shape for b, m in per.items()} for run, per in out.items()}
    if len({json.dumps(s, sort_keys=True) for s in shapes.values()}) != 1:
        raise QuagmireError(f"post-SFT grades differ in benchmarks, problems or samples across runs: {shapes}")
    return out


def _heldout_examples(tidy: pd.DataFrame, runs: Sequence[str]) -> int:
    rows = tidy[(tidy["metric"] == "genloss_n_examples") & tidy["run"].isin(runs)]
    return int(rows["value"].max()) if len(rows) else 0


def _completions_per_step(settings: Mapping[str, Any]) -> int:
    return int(settings["prompts_per_step"]) * int(settings["group_size"])


def _loss_along_sft_row(values: pd.DataFrame, loss: pd.DataFrame | None, heldout: int) -> Row:
    """Minus the smallest held-out loss over each run's SFT checkpoints (a table of run, step, genloss)."""
    row = Row("neg_min_genloss_along_sft", "minimum held-out loss along SFT", heldout_examples=heldout,
              comparable_as="neg_genloss")  # fmt: skip
    if loss is None:
        row.why_not = LOSS_ALONG_SFT_MISSING
        return row
    missing = [c for c in ("run", "step", "genloss") if c not in loss.columns]
    if missing:
        raise QuagmireError(f"loss-along-SFT table lacks column(s) {', '.join(missing)}")
    lacking = sorted(set(values["run"]) - set(loss["run"]))
    if lacking:
        raise QuagmireError(f"loss-along-SFT table has no checkpoint of run(s) {', '.join(lacking)}")
    values["neg_min_genloss_along_sft"] = -values["run"].map(loss.groupby("run")["genloss"].min())
    row.columns = ["neg_min_genloss_along_sft"]
    row.sft_checkpoints = int(loss.groupby("run")["step"].nunique().max())
    return row


def _early_rl_rows(values: pd.DataFrame, train_stats: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any]):
    a_max = 1.0 + float(settings.get("format_reward", 0.0))
    rows = []
    for fraction in sorted(float(f) for f in settings["early_rl_fractions"]):
        name = f"early_rl_{round(100 * fraction):g}pct"
        row = Row(name, f"early-RL extrapolation from the first {100 * fraction:g}% of GRPO steps")
        lacking = [r for r in values["run"] if r not in train_stats]
        if lacking:
            raise QuagmireError(f"no GRPO train_stats for run(s) {', '.join(lacking)}")
        predicted, shortest, steps = {}, None, 0
        for run in values["run"]:
            t, r, last = reward_window(train_stats[run], fraction, f"train_stats of GRPO run {run!r}")
            steps = max(steps, last)
            shortest = len(t) if shortest is None else min(shortest, len(t))
            if len(t) >= MIN_EARLY_POINTS:
                predicted[run] = fit_saturating(t, r, last, a_max=a_max).predicted
        row.rl_steps = math.floor(fraction * steps + 1e-9)
        row.rl_completions = row.rl_steps * _completions_per_step(settings)
        if shortest is not None and shortest < MIN_EARLY_POINTS:
            row.why_not = (f"not available: {shortest} logged reward point(s) in the first {row.rl_steps} of "
                           f"{steps} steps (need {MIN_EARLY_POINTS})")  # fmt: skip
        else:
            values[name] = values["run"].map(predicted)
            row.columns = [name]
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------
# Markdown and the DAG step
# ----------------------------------------------------------------------------------------------------


def _cell(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if np.isfinite(std) else f"{mean:.2f}"


def _compute(record: Mapping[str, Any]) -> str:
    parts = []
    if record["samples"]:
        parts.append(f"{int(record['samples']):,} samples (n' = {int(record['samples_per_problem'])})")
    if record["heldout_examples"]:
        parts.append(f"held-out loss on {int(record['heldout_examples'])} examples")
    parts.append(f"{int(record['sft_checkpoints'])} SFT checkpoint(s)")
    if record["rl_steps"]:
        parts.append(f"{int(record['rl_steps'])} RL steps ({int(record['rl_completions']):,} completions)")
    return "; ".join(parts)


def cost_markdown(table: pd.DataFrame, settings: Mapping[str, Any]) -> str:
    """The table as a reader wants it: one section per level, compute in words, R² ± std, ρ, why not."""
    lines = ["# What each predictor costs", ""]
    for level in [lv for lv in ("all", "dataset", "instance") if lv in set(table["level"])]:
        part = table[table["level"] == level]
        lines += [f"## Level: {level} ({int(part['n_runs'].max())} runs)", "",
                  "| predictor | compute per run | R² held-out half (mean ± std) | ρ | note |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for _, rec in part.iterrows():
            note = rec["why_not"] or ""
            if rec["available"] and rec["draws"] > 1:
                note = (f"{int(rec['draws'])} draws: ρ ± {rec['spearman_draw_std']:.2f}, "
                        f"R² ± {rec['r2_split_draw_std']:.2f} across draws")
            if rec["available"] and not rec["comparable"]:
                note = (note + "; " if note else "") + "mixes SFT subsets: not comparable"
            rho = f"{rec['spearman']:.2f}" if np.isfinite(rec["spearman"]) else "–"
            lines.append(f"| {rec['label']} | {_compute(rec)} | {_cell(rec['r2_split_mean'], rec['r2_split_std'])} "
                         f"| {rho} | {note} |")  # fmt: skip
        lines.append("")
    k_rule = "n' (analysis.k_large is null: the largest k measured)"
    if settings.get("k_large"):
        k_rule = f"analysis.k_large = {settings['k_large']}, capped at n'"
    lines += [
        "Notes.",
        "- pass@large k from n' samples: n' of each problem's drawn samples without replacement, "
        f"{settings['cost_draws']} draws seeded [seed {settings['seed']}, draw]; k = {k_rule}. "
        "Each draw is fitted and split like the others; "
        "the split R² of all draws are pooled (mean, and std by the law of total variance), ρ is the draws' mean.",
        "- R²: held-out-half R² of a line fitted on half the runs and scored on the rest "
        f"({settings['n_splits']} random splits, as tables/predictors.csv); ρ: Spearman over all runs of the level.",
        "- Early-RL: r(t) = a − b·exp(−t/τ) fitted to the logged GRPO rewards (each the mean over its logging window) "
        f"at or before the share of steps, by a grid over τ with a, b in closed form (a in [0, max reward]); "
        f"at least {MIN_EARLY_POINTS} points, a flat window predicts its mean; extrapolated to the run's last step.",
        "- Compute is per SFT run: samples = problems (all benchmarks) × n'; RL completions = steps × "
        "prompts_per_step × group_size.",
        "",
    ]
    return "\n".join(lines)


def cost_to_file(
    tidy: str | os.PathLike[str],
    recipes: str | os.PathLike[str],
    grades: Sequence[tuple[str, str]],
    rl: Sequence[tuple[str, str]],
    settings: Mapping[str, Any],
    out: str | os.PathLike[str],
    out_md: str | os.PathLike[str],
    loss_along_sft: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """The `quagmire predictor-cost` step: `grades` as RUN/BENCHMARK=PATH of post-SFT grades files, `rl` as
    RUN=DIR of GRPO run folders (their train_stats.json); writes the CSV and its Markdown."""
    from quagmire.io import atomic_path

    per_run: dict[str, dict[str, pd.DataFrame]] = {}
    for key, path in grades:
        run, sep, benchmark = key.partition("/")
        if not sep or not run or not benchmark:
            raise QuagmireError(f"--grades must look like RUN/BENCHMARK=PATH (got {key!r})")
        columns = ["problem_id", "sample_idx", "status", "correct"]
        per_run.setdefault(run, {})[benchmark] = pd.read_parquet(path, columns=columns)
    stats, stats_files = {}, []
    for run, folder in rl:
        path = Path(folder) / "train_stats.json" if Path(folder).is_dir() else Path(folder)
        if not path.is_file():
            raise QuagmireError(f"GRPO run {run!r}: no {path}")
        stats[run] = json.loads(path.read_text())
        stats_files.append((f"rl:{run}", path))
    loss = pd.read_csv(loss_along_sft) if loss_along_sft else None
    table = predictor_cost(read_tidy(tidy), read_recipes(recipes), per_run, stats, settings, loss_along_sft=loss)
    inputs = [("tidy", tidy), ("recipes", recipes), *((f"grades:{k}", p) for k, p in grades), *stats_files,
              *([("loss_along_sft", loss_along_sft)] if loss_along_sft else [])]
    manifest = step_manifest("predictor_cost", inputs, settings=settings)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    write_sidecar(out, manifest)
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(cost_markdown(table, settings))
    log.info("predictor cost (all runs):\n%s", table[table["level"] == "all"].to_string(index=False))
    return table
