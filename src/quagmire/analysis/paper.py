"""The paper's cross-model outputs: Tables 1–4 (predictor quality, a row per model) and one comparison figure.

Each study's own analysis (`quagmire predictors`) is the single place where fits are made; this module only
reads those `predictors.csv` files, lays them side by side, and subtracts the post-SFT baseline. Output is
deterministic: a rerun on the same inputs writes byte-identical CSV, Markdown and PNG.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from quagmire.analysis import plots, predictors, tables
from quagmire.errors import QuagmireError
from quagmire.io import atomic_path
from quagmire.provenance import step_manifest, write_sidecar

log = logging.getLogger(__name__)

BASELINE = "post_sft"
QUALITY_COLUMNS = (
    "level",
    "predictor",
    "r2_split_mean",
    "r2_split_std",
    "r2",
    "spearman",
    "pearson",
    "n_runs",
    "comparable",
)
_NUMERIC = ("r2_split_mean", "r2_split_std", "r2", "spearman", "pearson", "n_runs")
PAPER_COLUMNS = ("study", *QUALITY_COLUMNS, "r2_split_gain", "spearman_gain")
# Column heads: the per-study files do not record n of avg@n or the large k, so the heads stay generic.
PREDICTOR_HEADS = {
    "post_sft": "post-SFT avg@n",
    "neg_genloss": "− gen. loss",
    "pass_at_k_large": "pass@large k",
    "avg_both": "avg. of both",
}
LEVEL_TITLES = {
    "dataset": "Dataset level (same SFT data distribution; generalization loss comparable)",
    "instance": "Instance level (SFT subsets by response length; generalization loss not comparable)",
    "all": "All runs (dataset- and instance-level runs together; generalization loss not comparable)",
}
LEVEL_PHRASES = {"dataset": "at the dataset level", "instance": "at the instance level", "all": "over all runs"}
NOT_COMPARABLE = "n/c"
MISSING = "–"
CSV_FLOAT_FORMAT = "%.6f"
R2_AXIS_FLOOR = -1.0  # split R² can be far below 0; the figure's axis stops here and labels what lies beyond


# ----------------------------------------------------------------------------------------------------
# reading and combining
# ----------------------------------------------------------------------------------------------------


def read_quality(path: str | Path, study: str) -> pd.DataFrame:
    """One study's predictors.csv (from `predictors.predictor_quality`), checked and typed.

    Raises a QuagmireError for a missing file or column, an unknown level or predictor, a non-numeric
    statistic, an unreadable `comparable` flag, or a (level, predictor) pair given twice.
    """
    source = f"study {study!r}: {path}"
    try:
        frame = pd.read_csv(
            path,
            dtype={"level": str, "predictor": str, "comparable": str},
            keep_default_na=False,
            na_values={c: ["", "nan", "NaN"] for c in _NUMERIC},
        )
    except FileNotFoundError as exc:
        raise QuagmireError(f"{source}: predictors table not found") from exc
    except pd.errors.EmptyDataError as exc:
        raise QuagmireError(f"{source}: predictors table is empty") from exc
    missing = [c for c in QUALITY_COLUMNS if c not in frame.columns]
    if missing:
        raise QuagmireError(
            f"{source}: missing column(s) {', '.join(missing)} (a predictors.csv from `quagmire predictors` "
            f"has {', '.join(QUALITY_COLUMNS)})"
        )
    frame = frame.loc[:, list(QUALITY_COLUMNS)].copy()
    for column, known in (("level", predictors.LEVELS), ("predictor", predictors.PREDICTORS)):
        unknown = sorted(set(frame[column]) - set(known))
        if unknown:
            raise QuagmireError(
                f"{source}: unknown {column}(s) {', '.join(map(repr, unknown))} (known: {', '.join(known)})"
            )
    for column in _NUMERIC:
        try:
            frame[column] = pd.to_numeric(frame[column]).astype(float)
        except (TypeError, ValueError) as exc:
            raise QuagmireError(f"{source}: column {column!r} must be numeric ({exc})") from exc
    frame["comparable"] = [tables.read_flag(v, f"{source}: column 'comparable'") for v in frame["comparable"]]
    dup = frame.duplicated(["level", "predictor"])
    if dup.any():
        first = frame.loc[dup].iloc[0]
        raise QuagmireError(f"{source}: level {first['level']!r} predictor {first['predictor']!r} given twice")
    return frame


def paper_table(studies: Sequence[tuple[str, str | Path]]) -> pd.DataFrame:
    """The long table of every study's predictor quality, with each predictor's gain over post-SFT avg@n.

    Rows come in the order the studies are given, then level (dataset, instance, all), then predictor;
    `r2_split_gain` and `spearman_gain` are the predictor's value minus the baseline's in the same study and
    level (0 for the baseline itself, NaN where either side is undefined).
    """
    if not studies:
        raise QuagmireError("no studies given (need at least one NAME=PREDICTORS_CSV)")
    names = [name for name, _ in studies]
    for name in names:
        if not name or not name.strip():
            raise QuagmireError("a study name may not be empty")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise QuagmireError(f"study name(s) {', '.join(map(repr, dup))} given more than once")
    parts = []
    for order, (name, path) in enumerate(studies):
        frame = read_quality(path, name)
        frame.insert(0, "study", name)
        frame["_study"] = order
        parts.append(frame)
    table = pd.concat(parts, ignore_index=True)
    table["_level"] = table["level"].map(predictors.LEVELS.index)
    table["_predictor"] = table["predictor"].map(predictors.PREDICTORS.index)
    table = table.sort_values(["_study", "_level", "_predictor"], kind="stable")
    base = table[table["predictor"] == BASELINE].set_index(["study", "level"])
    keys = pd.MultiIndex.from_frame(table[["study", "level"]])
    for column in ("r2_split_mean", "spearman"):
        gain = column.replace("_mean", "") + "_gain"
        table[gain] = table[column].to_numpy() - base[column].reindex(keys).to_numpy()
    table["n_runs"] = table["n_runs"].astype("Int64")
    return table.loc[:, list(PAPER_COLUMNS)].reset_index(drop=True)


def write_table_csv(table: pd.DataFrame, out: str | Path) -> Path:
    """The long table as CSV with fixed float formatting (NaN as an empty field)."""
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n")
    return Path(out)


# ----------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------


def _num(value: Any, *, sign: bool = False) -> str:
    """Two decimals (a leading + with `sign`), never "-0.00"; an en dash for NaN or a missing value."""
    if value is None or value is pd.NA or not math.isfinite(float(value)):
        return MISSING
    text = f"{float(value):+.2f}" if sign else f"{float(value):.2f}"
    if text == "-0.00":
        return "+0.00" if sign else "0.00"
    return text


def _r2_cell(mean: Any, std: Any) -> str:
    if _num(mean) == MISSING:
        return MISSING
    return f"{_num(mean)} ± {_num(std)}" if _num(std) != MISSING else _num(mean)


def _n_cell(rows: pd.DataFrame) -> str:
    counts = sorted({int(n) for n in rows["n_runs"].dropna()})
    if not counts:
        return MISSING
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def markdown_tables(table: pd.DataFrame, labels: Mapping[str, str] | None = None) -> str:
    """One Markdown table per level present (dataset, instance, all), a row per study in the given order.

    Each table shows, per predictor, split R² (mean ± std over random half splits) and Spearman ρ; a second
    table per level shows each predictor's gain over post-SFT avg@n. Cells of a predictor that is not
    comparable at that level (a generalization loss across SFT subsets) read "n/c"; undefined values "–".
    """
    labels = dict(labels or {})
    studies = list(dict.fromkeys(table["study"]))
    levels = [lv for lv in predictors.LEVELS if lv in set(table["level"])]
    lines = [
        "# Predictors of the post-RL score, by model",
        "",
        "R²: out-of-sample R² of the linear fit post-RL ≈ a·predictor + b, mean ± std over random half splits "
        "(fit on one half of the runs, score the other). ρ: Spearman rank correlation over all runs of the level. "
        f"Gain: the predictor's value minus post-SFT avg@n's. {NOT_COMPARABLE}: a loss-based predictor where "
        "held-out losses of different SFT subsets are not comparable (its numbers stay in the CSV, marked "
        f"comparable = False). {MISSING}: undefined (too few runs, or a constant predictor or outcome).",
    ]
    number = 0
    for level in levels:
        at = table[table["level"] == level]
        number += 1
        lines += ["", f"## {LEVEL_TITLES[level]}", ""]
        lines.append(
            f"Table {number}. Predictor quality {LEVEL_PHRASES[level]}: split R² (mean ± std) and Spearman ρ of "
            "each post-SFT predictor against the post-RL score; n = runs with both scores."
        )
        lines.append("")
        head = ["model", "n"]
        for predictor in predictors.PREDICTORS:
            head += [f"{PREDICTOR_HEADS[predictor]} R²", f"{PREDICTOR_HEADS[predictor]} ρ"]
        lines += [_md_row(head), _md_row(["---"] + ["---:"] * (len(head) - 1))]
        gain_rows = []
        for study in studies:
            rows = at[at["study"] == study].set_index("predictor")
            cells = [labels.get(study, study), _n_cell(rows)]
            gains = [labels.get(study, study)]
            for predictor in predictors.PREDICTORS:
                if predictor not in rows.index:
                    cells += [MISSING, MISSING]
                    if predictor != BASELINE:
                        gains += [MISSING, MISSING]
                    continue
                row = rows.loc[predictor]
                if not bool(row["comparable"]):
                    cells += [NOT_COMPARABLE, NOT_COMPARABLE]
                    gains += [NOT_COMPARABLE, NOT_COMPARABLE]
                    continue
                cells += [_r2_cell(row["r2_split_mean"], row["r2_split_std"]), _num(row["spearman"])]
                if predictor != BASELINE:
                    gains += [_num(row["r2_split_gain"], sign=True), _num(row["spearman_gain"], sign=True)]
            lines.append(_md_row(cells))
            gain_rows.append(_md_row(gains))
        lines += [
            "",
            f"Table {number}b. Gain over post-SFT avg@n {LEVEL_PHRASES[level]} (ΔR² of the split means, Δρ); "
            "positive means the predictor ranks or fits post-RL scores better than the post-SFT score does.",
            "",
        ]
        head = ["model"]
        for predictor in predictors.PREDICTORS[1:]:
            head += [f"{PREDICTOR_HEADS[predictor]} ΔR²", f"{PREDICTOR_HEADS[predictor]} Δρ"]
        lines += [_md_row(head), _md_row(["---"] + ["---:"] * (len(head) - 1)), *gain_rows]
    return "\n".join(lines) + "\n"


def write_tables(
    studies: Sequence[tuple[str, str | Path]],
    out_csv: str | Path,
    out_md: str | Path,
    labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Read every study's predictors.csv and write the long CSV and the Markdown tables: the CLI's entry point."""
    _check_labels(labels, [name for name, _ in studies])
    table = paper_table(studies)
    write_table_csv(table, out_csv)
    with atomic_path(out_md) as tmp:
        tmp.write_text(markdown_tables(table, labels), encoding="utf-8")
    manifest = step_manifest("paper_tables", [(f"predictors:{name}", path) for name, path in studies],
                             settings={"labels": dict(labels or {})})
    for path in (out_csv, out_md):
        write_sidecar(path, manifest)
    log.info("paper tables: %d rows from %d studies", len(table), len(studies))
    return table


def _check_labels(labels: Mapping[str, str] | None, names: Sequence[str]) -> None:
    unknown = sorted(set(labels or {}) - set(names))
    if unknown:
        raise QuagmireError(f"label(s) for unknown study(ies) {', '.join(map(repr, unknown))}")


# ----------------------------------------------------------------------------------------------------
# the figure
# ----------------------------------------------------------------------------------------------------


def predictor_bars(
    table: pd.DataFrame, settings: plots.PlotSettings, labels: Mapping[str, str] | None = None
) -> Figure:
    """Grouped bars, one column of panels per level: Spearman ρ (top) and split R² ± std (bottom) of each
    predictor (x), one bar per model. Non-comparable predictors are left out and marked "n/c" on the axis;
    split R² below -1 is cut at -1 and labelled with its value."""
    labels = dict(labels or {})
    studies = list(dict.fromkeys(table["study"]))
    levels = [lv for lv in predictors.LEVELS if lv in set(table["level"])]
    with matplotlib.style.context(settings.style):
        fig, axes = plots.new_figure(settings, 2, max(len(levels), 1), sharey="row")
        if not levels:
            for ax in axes.flat:
                plots.no_data(ax)
            return fig
        r2_low = 0.0
        for col, level in enumerate(levels):
            at = table[table["level"] == level]
            for row, (stat, title) in enumerate((("spearman", "Spearman ρ"), ("r2_split_mean", "split R²"))):
                ax = axes[row, col]
                low = _bar_panel(ax, at, studies, stat, labels)
                r2_low = min(r2_low, low) if stat == "r2_split_mean" else r2_low
                ax.set_title(f"{plots.LEVEL_LABELS[level]}: {title}", fontsize=10)
                if col == 0:
                    ax.set_ylabel(title)
        axes[0, 0].set_ylim(-1.05, 1.05)
        axes[1, 0].set_ylim(max(r2_low, R2_AXIS_FLOOR) - 0.05, 1.05)
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, fontsize=8, loc="outside right upper")
        fig.suptitle("Which post-SFT measurement predicts the post-RL score? (by model)")
    return fig


def _bar_panel(ax: Any, at: pd.DataFrame, studies: list[str], stat: str, labels: Mapping[str, str]) -> float:
    """One level's bars of `stat` (x = predictor, a bar per study); returns the lowest bar or error-bar end."""
    cmap = matplotlib.colormaps["tab10" if len(studies) <= 10 else "tab20"]
    x = np.arange(len(predictors.PREDICTORS), dtype=float)
    width = 0.8 / max(len(studies), 1)
    is_r2 = stat == "r2_split_mean"
    low = 0.0
    for i, study in enumerate(studies):
        rows = at[at["study"] == study].set_index("predictor").reindex(list(predictors.PREDICTORS))
        comparable = rows["comparable"].fillna(False).astype(bool).to_numpy()
        values = rows[stat].to_numpy(dtype=float)
        shown = np.where(comparable & np.isfinite(values), values, np.nan)
        err = None
        if is_r2:
            shown = np.maximum(shown, R2_AXIS_FLOOR)
            err = np.where(np.isfinite(shown) & (values > R2_AXIS_FLOOR), rows["r2_split_std"].to_numpy(float), np.nan)
            bottoms = shown - np.nan_to_num(err)
            if np.isfinite(bottoms).any():
                low = min(low, float(np.nanmin(bottoms)))
        pos = x - 0.4 + width * (i + 0.5)
        color = cmap(i % cmap.N)
        label = labels.get(study, study)
        ax.bar(
            pos,
            np.nan_to_num(shown),
            width,
            yerr=err,
            capsize=2,
            color=color,
            edgecolor="black",
            linewidth=0.5,
            label=label,
        )
        for p, value, ok in zip(pos, values, comparable, strict=True):
            if not ok:
                ax.text(p, 0, NOT_COMPARABLE, ha="center", va="bottom", fontsize=7, color="0.4", rotation=90)
            elif not math.isfinite(value):
                ax.text(p, 0, MISSING, ha="center", va="bottom", fontsize=8, color="0.4")
            elif is_r2 and value < R2_AXIS_FLOOR:
                ax.text(p, R2_AXIS_FLOOR, f"{value:.1f}", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [PREDICTOR_HEADS[p] for p in predictors.PREDICTORS], fontsize=8)
    return low


def render_figure(
    studies: Sequence[tuple[str, str | Path]],
    out: str | Path,
    settings_dict: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Read every study's predictors.csv and save the comparison figure to `out`: the CLI's entry point."""
    settings = plots.PlotSettings.from_config(settings_dict)  # a whole `plots:` section; its `figures` are per study
    _check_labels(labels, [name for name, _ in studies])
    path = plots.save_figure(predictor_bars(paper_table(studies), settings, labels), out, settings)
    write_sidecar(path, step_manifest("paper_figure", [(f"predictors:{name}", p) for name, p in studies],
                                      settings={"labels": dict(labels or {}), "plots": dict(settings_dict or {})}))
    return path
