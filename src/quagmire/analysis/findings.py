"""The paper's findings, each checked against this study's own tables: reproduced, not reproduced or not applicable.

"Quagmires in SFT-RL Post-Training" argues from five observations (a)-(e). A reproduction is only worth as much as
its honesty about them, so each claim here is a function of the study's tables alone (the tidy table, the recipes
table and, for (e), the predictors table): which runs it compares is read from the recipes table (subset, unique
examples, epochs, lr), never from run names, and its verdict comes with the numbers it rests on.

"The score" is the study's headline metric, macro avg@n, found the way the predictors are (`avg_metric_name`,
`macro_metric`). One run *beats* another when its score is higher by more than the margin of the difference:
m = √(h₁² + h₂²), where h is a run's 95% half-width of its macro score, √(Σ_b h_b²) / B over its B benchmarks,
each h_b half the width of that benchmark's bootstrap interval (`avg@n_ci_lo`, `avg@n_ci_hi`; a normal
approximation for a mean of B independent benchmark means). The two runs are treated as independent evaluations,
which over-states the noise of a difference on a shared problem set: the margin errs towards "not reproduced". A
difference within the margin is a tie, and a claim that needs a win is not reproduced by a tie. Without intervals
in the tidy table the margin is unknown and scores are compared as they are (the reason says so).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quagmire.analysis.tables import (
    BASE_RUN,
    HELDOUT,
    MACRO,
    avg_metric_name,
    checked_tidy,
    macro_metric,
    normalize_recipes,
    read_flag,
    read_recipes,
    read_tidy,
)
from quagmire.errors import QuagmireError

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_APPLICABLE = "not applicable"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_APPLICABLE)

HIGHER, LOWER, TIE = "higher", "lower", "tie"
STAGE_WORDS = {"sft": "post-SFT", "rl": "post-RL"}

# The paper's claims, in its words, shortened.
CLAIMS: dict[str, str] = {
    "a": "At equal compute, SFT on N/2 unique examples for 2 epochs beats N examples for 1 epoch, after SFT and "
    "after RL.",
    "b": "More SFT epochs keep raising the post-SFT score, while the post-RL score saturates or falls.",
    "c": "SFT on the shortest responses gives a higher post-SFT but a lower post-RL score than random or mixed "
    "lengths.",
    "d": "RL after SFT can end below RL from the base model.",
    "e": "Generalization loss and pass@large k predict the post-RL score better than the post-SFT score does "
    "(higher R² and Spearman ρ).",
}

# (b): a series is one subset, N and lr trained for at least this many different epoch counts.
MIN_EPOCH_VALUES = 3
# How each claim is checked: which runs (by the recipes table) and what counts. Shown with the verdict.
CHECKS: dict[str, str] = {
    "a": "Pairs of one subset and lr: N/2 unique × 2 ep against N unique × 1 ep (equal n_unique × epochs). "
    "Reproduced when the 2-epoch run beats its partner beyond the margin after SFT and after RL, in every pair.",
    "b": f"Series of one subset, N and lr at {MIN_EPOCH_VALUES} or more epoch counts, step by step. Reproduced "
    "when post-SFT rises at every step and beyond the margin at the last one, while post-RL's last step gains no "
    "more than its margin (the tolerance: a gain the bootstrap noise could produce is no measured gain), in every "
    "series.",
    "c": "Each shortest-subset run against the random and mix runs of the same N, epochs and lr. Reproduced when "
    "it beats every one after SFT and falls below every one after RL, beyond the margin.",
    "d": "Every SFT→RL run against RL from the base model. Reproduced when at least one ends below it beyond the "
    "margin.",
    "e": "predictors.csv at the paper's two levels (dataset, instance; 'all' shown, not judged): − generalization "
    "loss (where comparable) and pass@large k against post-SFT avg@n. Reproduced when every judged fit gains on "
    "both the held-out-half R² and Spearman ρ (a tie, e.g. ρ = 1 on both sides, is no gain).",
}

# (c): what the shortest subset is held against, at the same N, epochs and lr.
SHORTEST = "shortest"
LENGTH_BASELINES = ("random", "mix")
# (e): the levels of the paper's tables (dataset: same data, loss comparable; instance: subsets by length). The
# "all" level mixes both kinds of runs; it is this project's addition and is shown in predictors.csv, not judged.
JUDGED_LEVELS = ("dataset", "instance")
SHOWN_LEVELS = (*JUDGED_LEVELS, "all")
BASELINE_PREDICTOR = "post_sft"
CHALLENGERS = {"neg_genloss": "− generalization loss", "pass_at_k_large": "pass@large k"}
PREDICTOR_COLUMNS = ("level", "predictor", "n_runs", "r2", "r2_split_mean", "spearman", "comparable")


@dataclass
class Finding:
    """One claim of the paper and what this study's tables say about it."""

    claim: str  # "a" ... "e"
    statement: str  # the paper's wording, short
    verdict: str  # one of VERDICTS
    reason: str  # one line, with the deciding numbers
    numbers: list[dict[str, Any]] = field(default_factory=list)  # every comparison or fit the verdict rests on
    check: str = ""  # which runs are compared and what counts (CHECKS)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS} (got {self.verdict!r})")
        self.check = self.check or CHECKS[self.claim]

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON values (NaN becomes null)."""
        return _plain(asdict(self))


# ----------------------------------------------------------------------------------------------------
# scores and their margins
# ----------------------------------------------------------------------------------------------------


def headline_scores(tidy: pd.DataFrame) -> pd.DataFrame:
    """Macro headline score and its 95% half-width per (stage, run), as the module docstring defines them.

    Columns `score` and `half_width` (NaN where some benchmark of that model has no bootstrap interval), indexed by
    (stage, run); `attrs["metric"]` holds the metric's name (avg@n).
    """
    tidy = checked_tidy(tidy)
    metric = avg_metric_name(tidy)
    parts = []
    for stage in ("base", "sft", "rl"):
        scores = macro_metric(tidy, stage, metric)
        parts.append(pd.DataFrame({"stage": stage, "run": scores.index, "score": scores.to_numpy()}))
    frame = pd.concat(parts, ignore_index=True).set_index(["stage", "run"])
    per = tidy[~tidy["benchmark"].isin([MACRO, HELDOUT])]
    keys = ["stage", "run", "benchmark"]
    lo = per[per["metric"] == f"{metric}_ci_lo"].set_index(keys)["value"]
    hi = per[per["metric"] == f"{metric}_ci_hi"].set_index(keys)["value"]
    half = ((hi - lo.reindex(hi.index)) / 2.0).dropna()
    n = per[per["metric"] == metric].groupby(["stage", "run"]).size().reindex(frame.index)
    with_ci = half.groupby(level=["stage", "run"]).count().reindex(frame.index)
    sum_sq = (half**2).groupby(level=["stage", "run"]).sum().reindex(frame.index)
    complete = (with_ci == n) & (n > 0)
    frame["half_width"] = np.where(complete, np.sqrt(sum_sq) / n, np.nan)
    frame.attrs["metric"] = metric
    return frame


def _score(scores: pd.DataFrame, stage: str, run: str) -> float | None:
    if (stage, run) not in scores.index:
        return None
    value = float(scores.loc[(stage, run), "score"])
    return value if math.isfinite(value) else None


def compare(scores: pd.DataFrame, stage: str, run: str, versus: str, labels: dict[str, str]) -> dict[str, Any]:
    """`run` against `versus` at `stage`: both scores, their difference, its margin and the outcome.

    The outcome is "higher" or "lower" when the difference exceeds the margin, else "tie"; an unknown margin (no
    intervals) counts as 0, and `margin` is then null in the record.
    """
    a, b = scores.loc[(stage, run)], scores.loc[(stage, versus)]
    diff = float(a["score"] - b["score"])
    margin = float(math.hypot(a["half_width"], b["half_width"]))
    bar = margin if math.isfinite(margin) else 0.0
    outcome = HIGHER if diff > bar else LOWER if diff < -bar else TIE
    return {
        "stage": stage,
        "run": run,
        "label": labels.get(run, run),
        "score": float(a["score"]),
        "versus": versus,
        "versus_label": labels.get(versus, versus),
        "versus_score": float(b["score"]),
        "difference": diff,
        "margin": margin,
        "outcome": outcome,
    }


def _labels(recipes: pd.DataFrame) -> dict[str, str]:
    """A recipe by what it is (subset, N × epochs, lr when the grid varies it), for reasons a reader follows."""
    many_lr = recipes["lr"].nunique() > 1
    out = {BASE_RUN: "base model"}
    for row in recipes.itertuples():
        text = f"{row.subset} {row.n_unique} × {row.epochs} ep"
        out[row.run] = f"{text} (lr {row.lr:g})" if many_lr else text
    return out


def _series_name(recipes: pd.DataFrame, run: str) -> str:
    """An epoch series by what its runs share: subset and N (and lr when the grid varies it)."""
    row = recipes.set_index("run").loc[run]
    name = f"{row['subset']} {row['n_unique']}"
    return f"{name} (lr {row['lr']:g})" if recipes["lr"].nunique() > 1 else name


def _scored(recipes: pd.DataFrame, scores: pd.DataFrame, stages: Sequence[str] = ("sft", "rl")) -> pd.DataFrame:
    """Recipes with a finite score at every one of `stages`, in the recipes table's order."""
    keep = [all(_score(scores, s, run) is not None for s in stages) for run in recipes["run"]]
    return recipes[keep].reset_index(drop=True)


def _same_lr(a: float, b: float) -> bool:
    return bool(math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0))


def _say(c: dict[str, Any]) -> str:
    """One comparison in words: 'post-RL X 0.147 vs Y 0.195 (Δ −0.048 ± 0.012: lower)'."""
    margin = "± ?" if not math.isfinite(c["margin"]) else f"± {c['margin']:.3f}"
    return (
        f"{STAGE_WORDS.get(c['stage'], c['stage'])} {c['label']} {c['score']:.3f} vs {c['versus_label']} "
        f"{c['versus_score']:.3f} (Δ {c['difference']:+.3f} {margin}: {c['outcome']})"
    )


def _prepare(tidy: pd.DataFrame, recipes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    scores = headline_scores(tidy)
    recipes = normalize_recipes(recipes)
    return scores, recipes, _labels(recipes)


# ----------------------------------------------------------------------------------------------------
# the claims
# ----------------------------------------------------------------------------------------------------


def claim_a(tidy: pd.DataFrame, recipes: pd.DataFrame) -> Finding:
    """(a) Compute-matched pairs: (subset s, N/2 unique, 2 epochs) against (s, N unique, 1 epoch) at the same lr.

    Equal compute means the same n_unique × epochs. Reproduced when every such pair's 2-epoch run beats its
    1-epoch partner both after SFT and after RL; not applicable when the grid has no pair scored at both stages.
    """
    scores, recipes, labels = _prepare(tidy, recipes)
    runs = _scored(recipes, scores)
    numbers = []
    for twice in runs.itertuples():
        if twice.epochs != 2:
            continue
        for once in runs.itertuples():
            if (once.subset == twice.subset and once.epochs == 1 and once.n_unique == 2 * twice.n_unique
                    and _same_lr(once.lr, twice.lr)):
                numbers += [compare(scores, stage, twice.run, once.run, labels) for stage in ("sft", "rl")]
    if not numbers:
        return Finding("a", CLAIMS["a"], NOT_APPLICABLE, "no compute-matched pair (N/2 unique × 2 ep and N × 1 ep "
                       "of one subset and lr) is scored after SFT and after RL in this grid")
    failing = [c for c in numbers if c["outcome"] != HIGHER]
    if not failing:
        pairs = len(numbers) // 2
        return Finding("a", CLAIMS["a"], REPRODUCED, f"in {pairs} of {pairs} pair(s) the 2-epoch run wins at both "
                       f"stages: " + "; ".join(_say(c) for c in numbers), numbers)
    return Finding("a", CLAIMS["a"], NOT_REPRODUCED, "the 2-epoch run does not win: "
                   + "; ".join(_say(c) for c in failing), numbers)


def claim_b(tidy: pd.DataFrame, recipes: pd.DataFrame) -> Finding:
    """(b) Epoch series: runs of one subset, N and lr at ≥ 3 epoch values, compared step by step.

    A series reproduces the claim when its post-SFT score rises at every step (each Δ > 0) and still rises beyond
    the margin at the last step, while its post-RL score gains no more than the tolerance at that last step. The
    tolerance is the margin of that post-RL difference: a gain the evaluation's own bootstrap noise could produce
    is not a measured gain, so "saturates" means "no gain beyond the margin, or a loss". Reproduced when every
    series reproduces it; a repeated (subset, N, epochs, lr) keeps its first run.
    """
    scores, recipes, labels = _prepare(tidy, recipes)
    runs = _scored(recipes, scores).drop_duplicates(["subset", "n_unique", "lr", "epochs"])
    series = []
    for _, group in runs.groupby(["subset", "n_unique", "lr"], sort=False):
        if group["epochs"].nunique() >= MIN_EPOCH_VALUES:
            series.append(group.sort_values("epochs", kind="stable")["run"].tolist())
    if not series:
        have = "; ".join(
            f"{s} {n} (lr {lr:g}): {', '.join(map(str, sorted(g['epochs'])))} ep"
            for (s, n, lr), g in runs.groupby(["subset", "n_unique", "lr"], sort=False)
        )
        return Finding("b", CLAIMS["b"], NOT_APPLICABLE, f"no subset × N × lr is trained for {MIN_EPOCH_VALUES} or "
                       f"more epoch counts and scored after SFT and RL (grid: {have or 'no scored recipe'})")
    numbers: list[dict[str, Any]] = []
    failures, successes = [], []
    for chain in series:
        steps = {
            stage: [compare(scores, stage, later, earlier, labels) for earlier, later in itertools.pairwise(chain)]
            for stage in ("sft", "rl")
        }
        name = _series_name(recipes, chain[0])
        for stage in ("sft", "rl"):
            numbers += [{**c, "series": name} for c in steps[stage]]
        sft, rl_last = steps["sft"], steps["rl"][-1]
        problems = []
        falls = [c for c in sft if c["difference"] <= 0]
        if falls:
            problems.append("post-SFT does not rise at " + ", ".join(f"{c['label']} ({c['difference']:+.3f})"
                                                                        for c in falls))
        elif sft[-1]["outcome"] != HIGHER:
            problems.append(f"post-SFT's last step is within the margin ({_say(sft[-1])})")
        if rl_last["outcome"] == HIGHER:
            problems.append(f"post-RL still rises beyond the tolerance at the last step ({_say(rl_last)})")
        if problems:
            failures.append(f"{name}: " + "; ".join(problems))
        else:
            successes.append(f"{name}: {_say(sft[-1])}, while {_say(rl_last)}")
    if failures:
        return Finding("b", CLAIMS["b"], NOT_REPRODUCED,
                       f"{len(failures)} of {len(series)} series do not show it: " + " | ".join(failures), numbers)
    return Finding("b", CLAIMS["b"], REPRODUCED, " | ".join(successes), numbers)


def claim_c(tidy: pd.DataFrame, recipes: pd.DataFrame) -> Finding:
    """(c) Each shortest-subset run against the random and mix runs of the same N, epochs and lr.

    Reproduced when the shortest run beats every such partner after SFT and falls below every one after RL (each
    beyond the margin); not applicable when no shortest run has a partner scored at both stages.
    """
    scores, recipes, labels = _prepare(tidy, recipes)
    runs = _scored(recipes, scores)
    numbers = []
    for short in runs[runs["subset"] == SHORTEST].itertuples():
        for other in runs[runs["subset"].isin(LENGTH_BASELINES)].itertuples():
            if other.n_unique == short.n_unique and other.epochs == short.epochs and _same_lr(other.lr, short.lr):
                numbers += [compare(scores, stage, short.run, other.run, labels) for stage in ("sft", "rl")]
    if not numbers:
        return Finding("c", CLAIMS["c"], NOT_APPLICABLE, "no shortest-subset run has a random or mix run of the "
                       "same N, epochs and lr scored after SFT and after RL")
    expected = {"sft": HIGHER, "rl": LOWER}
    failing = [c for c in numbers if c["outcome"] != expected[c["stage"]]]
    if failing:
        return Finding("c", CLAIMS["c"], NOT_REPRODUCED, "not as claimed: " + "; ".join(_say(c) for c in failing),
                       numbers)
    return Finding("c", CLAIMS["c"], REPRODUCED, "; ".join(_say(c) for c in numbers), numbers)


def claim_d(tidy: pd.DataFrame, recipes: pd.DataFrame) -> Finding:
    """(d) Every SFT→RL run's post-RL score against RL from the base model.

    Reproduced when at least one ends below base→RL beyond the margin; not applicable without a base→RL score or
    without any scored SFT→RL run.
    """
    scores, recipes, labels = _prepare(tidy, recipes)
    if _score(scores, "rl", BASE_RUN) is None:
        return Finding("d", CLAIMS["d"], NOT_APPLICABLE, "this study has no RL run from the base model "
                       "(rl.from_base) to compare with")
    runs = _scored(recipes, scores, stages=("rl",))
    if runs.empty:
        return Finding("d", CLAIMS["d"], NOT_APPLICABLE, "no SFT→RL run is scored")
    numbers = [compare(scores, "rl", run, BASE_RUN, labels) for run in runs["run"]]
    below = [c for c in numbers if c["outcome"] == LOWER]
    if below:
        return Finding("d", CLAIMS["d"], REPRODUCED, f"{len(below)} of {len(numbers)} SFT→RL run(s) end below: "
                       + "; ".join(_say(c) for c in below), numbers)
    lowest = min(numbers, key=lambda c: c["difference"])
    ties = sum(c["outcome"] == TIE for c in numbers)
    tied = f" ({ties} within the margin)" if ties else ""
    return Finding("d", CLAIMS["d"], NOT_REPRODUCED, f"none of {len(numbers)} SFT→RL runs ends below base→RL"
                   f"{tied}; the lowest: {_say(lowest)}", numbers)


def checked_predictors(predictors: pd.DataFrame, *, source: str = "predictors table") -> pd.DataFrame:
    """The predictors table's columns that (e) reads, or a QuagmireError naming the missing one."""
    missing = [c for c in PREDICTOR_COLUMNS if c not in predictors.columns]
    if missing:
        raise QuagmireError(f"{source}: missing column(s) {', '.join(missing)} (need {', '.join(PREDICTOR_COLUMNS)})")
    frame = predictors.loc[:, list(PREDICTOR_COLUMNS)].copy()
    for column in ("n_runs", "r2", "r2_split_mean", "spearman"):
        try:
            frame[column] = pd.to_numeric(frame[column]).astype(float)
        except (TypeError, ValueError) as exc:
            raise QuagmireError(f"{source}: column {column!r} must be numeric ({exc})") from exc
    frame["comparable"] = [read_flag(v, f"{source}: column 'comparable'") for v in frame["comparable"]]
    dup = frame.duplicated(["level", "predictor"])
    if dup.any():
        first = frame.loc[dup].iloc[0]
        raise QuagmireError(f"{source}: level {first['level']!r} predictor {first['predictor']!r} given twice")
    return frame


def claim_e(predictors: pd.DataFrame) -> Finding:
    """(e) At the paper's levels (dataset, instance): each of generalization loss and pass@large k against the
    post-SFT score, by split R² (the paper's R²: fit on half the runs, scored on the rest) and Spearman ρ.

    A fit is judged where the predictor is comparable at that level (a loss across SFT subsets is not) and both it
    and the baseline have a finite split R² and ρ. Reproduced when every judged fit gains on both (Δ > 0; a tie,
    such as ρ = 1 on both sides, is no gain); not applicable when no fit can be judged.
    """
    frame = checked_predictors(predictors).set_index(["level", "predictor"])
    numbers, failing = [], []
    for level in SHOWN_LEVELS:
        if (level, BASELINE_PREDICTOR) not in frame.index:
            continue
        base = frame.loc[(level, BASELINE_PREDICTOR)]
        for predictor, words in CHALLENGERS.items():
            if (level, predictor) not in frame.index:
                continue
            row = frame.loc[(level, predictor)]
            record = {
                "level": level,
                "predictor": predictor,
                "n_runs": row["n_runs"],
                "r2_split": row["r2_split_mean"],
                "baseline_r2_split": base["r2_split_mean"],
                "r2_split_gain": row["r2_split_mean"] - base["r2_split_mean"],
                "spearman": row["spearman"],
                "baseline_spearman": base["spearman"],
                "spearman_gain": row["spearman"] - base["spearman"],
                "r2": row["r2"],
                "baseline_r2": base["r2"],
                "comparable": bool(row["comparable"]),
            }
            finite = all(math.isfinite(float(record[k])) for k in ("r2_split_gain", "spearman_gain"))
            record["judged"] = bool(level in JUDGED_LEVELS and record["comparable"] and finite)
            record["better"] = bool(record["judged"] and record["r2_split_gain"] > 0 and record["spearman_gain"] > 0)
            numbers.append(record)
            if record["judged"] and not record["better"]:
                failing.append(
                    f"{level}: {words} split R² {record['r2_split']:.2f} vs {record['baseline_r2_split']:.2f} "
                    f"(Δ {record['r2_split_gain']:+.2f}), ρ {record['spearman']:.2f} vs "
                    f"{record['baseline_spearman']:.2f} (Δ {record['spearman_gain']:+.2f})"
                )
    judged = [r for r in numbers if r["judged"]]
    if not judged:
        return Finding("e", CLAIMS["e"], NOT_APPLICABLE, "no comparable fit with a finite split R² and ρ at the "
                       "dataset or instance level (too few runs of a level, or a constant predictor or outcome)",
                       numbers)
    if failing:
        return Finding("e", CLAIMS["e"], NOT_REPRODUCED, f"{len(failing)} of {len(judged)} judged fit(s) do not gain "
                       "on both R² and ρ: " + "; ".join(failing), numbers)
    return Finding("e", CLAIMS["e"], REPRODUCED, f"all {len(judged)} judged fit(s) gain on both: " + "; ".join(
        f"{r['level']}: {CHALLENGERS[r['predictor']]} ΔR² {r['r2_split_gain']:+.2f}, Δρ {r['spearman_gain']:+.2f}"
        for r in judged), numbers)


def findings(tidy: pd.DataFrame, recipes: pd.DataFrame, predictors: pd.DataFrame) -> list[Finding]:
    """Every claim (a)-(e), in order."""
    return [
        claim_a(tidy, recipes),
        claim_b(tidy, recipes),
        claim_c(tidy, recipes),
        claim_d(tidy, recipes),
        claim_e(predictors),
    ]


# ----------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready values: numpy scalars as Python ones, NaN and inf as None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number_line(record: dict[str, Any]) -> str:
    if "outcome" in record:
        series = f"{record['series']}: " if "series" in record else ""
        return f"- {series}{_say(record)}"
    if record["judged"]:
        verdict = "better" if record["better"] else "not better"
    elif record["level"] not in JUDGED_LEVELS:
        verdict = "shown, not judged"
    else:
        verdict = "not judged (not comparable)" if not record["comparable"] else "not judged (undefined)"
    return (
        f"- {record['level']} level, {CHALLENGERS[record['predictor']]} (n = {record['n_runs']:g}): split R² "
        f"{record['r2_split']:.2f} vs {record['baseline_r2_split']:.2f} (Δ {record['r2_split_gain']:+.2f}), "
        f"ρ {record['spearman']:.2f} vs {record['baseline_spearman']:.2f} (Δ {record['spearman_gain']:+.2f}), "
        f"in-sample R² {record['r2']:.2f} vs {record['baseline_r2']:.2f}: {verdict}"
    )


def findings_markdown(found: Sequence[Finding], metric: str) -> str:
    """The findings as Markdown: a summary table, then one paragraph per claim with every number it rests on."""
    lines = [
        "# Paper findings, checked",
        "",
        f"Each claim of the paper, checked against this study's tables. The score is macro {metric}. A run beats "
        "another when its score is higher by more than the margin ± √(h₁² + h₂²), h being each run's 95% "
        "half-width of its macro score from the per-benchmark bootstrap intervals; a smaller difference is a tie. "
        "R² is the held-out-half R² of predictors.csv. *not applicable*: the grid lacks the runs the claim needs.",
        "",
        "| claim | the paper says | verdict | why |",
        "| --- | --- | --- | --- |",
    ]
    for f in found:
        lines.append(f"| ({f.claim}) | {_cell(f.statement)} | **{f.verdict}** | {_cell(f.reason)} |")
    for f in found:
        lines += ["", f"## ({f.claim}) {f.statement}", "", f"{f.check} **{f.verdict.capitalize()}:** {f.reason}."]
        if f.numbers:
            lines += ["", *(_number_line(r) for r in f.numbers)]
    return "\n".join(lines) + "\n"


def findings_to_file(
    tidy: str | os.PathLike[str],
    recipes: str | os.PathLike[str],
    predictors: str | os.PathLike[str],
    out_md: str | os.PathLike[str],
    out_json: str | os.PathLike[str],
) -> list[Finding]:
    """Check claims (a)-(e) against a study's tidy, recipes and predictors tables; write the Markdown and the JSON
    records: the `quagmire findings` step of the DAG."""
    from quagmire.io import atomic_path

    tidy_frame, recipes_frame = read_tidy(tidy), read_recipes(recipes)
    try:
        predictor_frame = pd.read_csv(predictors, dtype={"level": str, "predictor": str})
    except FileNotFoundError as exc:
        raise QuagmireError(f"predictors table not found: {predictors}") from exc
    predictor_frame = checked_predictors(predictor_frame, source=str(predictors))
    found = findings(tidy_frame, recipes_frame, predictor_frame)
    metric = avg_metric_name(tidy_frame)
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(findings_markdown(found, metric))
    record = {"metric": metric, "findings": [f.as_dict() for f in found]}
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return found
