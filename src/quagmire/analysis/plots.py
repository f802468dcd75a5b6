"""The study's figures, one function per figure, each reading only the tidy table and the recipes table.

Figures are drawn on plain `Figure` objects with the Agg canvas (no pyplot state, no display needed), so a
figure rule can run on a headless node and a change to a plot never forces anything upstream to rerun.
Missing pieces (a run without RL, an empty level) are drawn as what exists plus a "no data" note.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from quagmire.analysis import predictors, tables
from quagmire.config import settings_for
from quagmire.errors import QuagmireError
from quagmire.io import atomic_path
from quagmire.provenance import step_manifest, write_sidecar

NO_DATA = "no data"
BASE_COLOR = "black"
PREDICTOR_LABELS = {
    "post_sft": "post-SFT {avg}",
    "neg_genloss": "− generalization loss",
    "pass_at_k_large": "post-SFT pass@{k}",
    "avg_both": "average of both (z-scores)",
}
LEVEL_LABELS = {"dataset": "dataset-level runs", "instance": "instance-level runs", "all": "all runs"}
STAGE_LABELS = {"base": "base model (no training)", "sft": "after SFT", "rl": "after RL"}
_SAME_FORMAT = {"jpg": "jpeg", "tif": "tiff"}
PLOTS_SECTION = "plots"  # the config section of the plot settings; its schema holds every default and rule


@dataclasses.dataclass(frozen=True)
class PlotSettings:
    """How figures are rendered; `width` and `height` are the size of one panel in inches.

    No defaults and no checks here: `from_config` takes both from the config schema's `plots` section, the one
    place they live (a study config arrives filled and checked; a library call is filled and checked the same way).
    """

    dpi: int
    format: str
    width: float
    height: float
    style: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, where: str = "plot settings") -> PlotSettings:
        """Settings from a `plots` section (the per-study `figures` list is not a rendering setting); a bad key or
        value fails here, not mid-plot, naming it as a config file would (`plots.dpi: ...`)."""
        settings = settings_for(PLOTS_SECTION, config, where)
        styles = {"default", *matplotlib.style.available}
        if settings["style"] not in styles:  # what matplotlib has installed: the schema cannot know
            raise QuagmireError(
                f"config error in {where}: {PLOTS_SECTION}.style: {settings['style']!r} is not a matplotlib style "
                "(e.g. default, ggplot, seaborn-v0_8)"
            )
        return cls(**{field.name: settings[field.name] for field in dataclasses.fields(cls)})


FigureFunction = Callable[[pd.DataFrame, pd.DataFrame, PlotSettings], Figure]
FIGURES: dict[str, FigureFunction] = {}


def _figure(fn: FigureFunction) -> FigureFunction:
    """Register a figure function under its name and draw it inside the configured matplotlib style."""

    @functools.wraps(fn)
    def wrapper(tidy: pd.DataFrame, recipes: pd.DataFrame, settings: PlotSettings) -> Figure:
        with matplotlib.style.context(settings.style):
            return fn(tables.checked_tidy(tidy), tables.normalize_recipes(recipes), settings)

    FIGURES[fn.__name__] = wrapper
    return wrapper


def new_figure(settings: PlotSettings, nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """A pyplot-free figure sized per panel, with an Agg canvas attached."""
    fig = Figure(
        figsize=(settings.width * ncols, settings.height * nrows), dpi=settings.dpi, layout="constrained"
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def no_data(ax: Axes, note: str = NO_DATA) -> None:
    """Mark a panel as empty so a missing piece is visible rather than silently absent."""
    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="0.5", fontsize=12)


def _run_colors(runs: list[str]) -> dict[str, Any]:
    """A fixed colour per run (base in black), so a run looks the same in every panel."""
    others = [r for r in runs if r != tables.BASE_RUN]
    cmap = matplotlib.colormaps["tab10" if len(others) <= 10 else "tab20"]
    colors: dict[str, Any] = {r: cmap(i % cmap.N) for i, r in enumerate(others)}
    colors[tables.BASE_RUN] = BASE_COLOR
    return colors


def _fmt(value: float) -> str:
    """Two decimals, or an en dash for an undefined statistic."""
    return "–" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _recipe_group_label(n_unique: Any, lr: Any) -> str:
    """Short legend label for one (unique examples, learning rate) series."""
    return f"N={n_unique}, lr={lr:g}" if isinstance(lr, int | float) else f"N={n_unique}, lr={lr}"


def _base_reference_lines(ax: Axes, tidy: pd.DataFrame, avg: str) -> bool:
    """Draw the base model's own and post-RL scores as horizontal references; True if any was drawn."""
    drawn = False
    for stage, style, label in (("rl", ":", "RL from base"), ("base", "-.", "base (no training)")):
        series = tables.macro_metric(tidy, stage, avg)
        if tables.BASE_RUN in series.index and math.isfinite(series[tables.BASE_RUN]):
            ax.axhline(series[tables.BASE_RUN], color=BASE_COLOR, linestyle=style, linewidth=1, label=label)
            drawn = True
    return drawn


def _level_handles() -> list[Line2D]:
    """Legend entries for the marker shapes alone (colours belong to runs, not levels)."""
    style = {"color": "none", "markerfacecolor": "0.8", "markeredgecolor": "black"}
    return [
        Line2D([], [], marker="o", label="dataset-level", **style),
        Line2D([], [], marker="s", label="instance-level", **style),
    ]


def _log2_axis(ax: Axes) -> None:
    """A log2 k axis labelled with plain integers (1, 2, 4, …) rather than powers."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))


@_figure
def predictor_scatter(tidy: pd.DataFrame, recipes: pd.DataFrame, settings: PlotSettings) -> Figure:
    """Post-RL accuracy against each post-SFT predictor, with the linear fit, R² and Spearman ρ per panel.

    Loss-based predictors are shown over dataset-level runs only, where held-out losses are comparable;
    the others over all runs.
    """
    values = predictors.predictor_values(tidy, recipes)
    avg, k = values.attrs["avg_metric"], values.attrs["k_large"]
    colors = _run_colors(list(recipes["run"]))
    fig, axes = new_figure(settings, 2, 2)
    for ax, predictor in zip(axes.flat, predictors.PREDICTORS, strict=True):
        level = "all" if predictors.is_comparable("all", predictor) else "dataset"
        frame = predictors.values_at_level(values, level)
        label = PREDICTOR_LABELS[predictor].format(avg=avg, k=k)
        ax.set_xlabel(label)
        ax.set_ylabel(f"post-RL {avg} (macro)")
        finite = frame[np.isfinite(frame[predictor]) & np.isfinite(frame["post_rl"])]
        if finite.empty:
            ax.set_title(f"{label}\n{LEVEL_LABELS[level]}")
            no_data(ax)
            continue
        for marker, mask in (("o", finite["dataset_level"]), ("s", ~finite["dataset_level"])):
            part = finite[mask]
            if not part.empty:
                ax.scatter(
                    part[predictor],
                    part["post_rl"],
                    c=[colors[r] for r in part["run"]],
                    marker=marker,
                    edgecolors="black",
                    linewidths=0.5,
                    zorder=3,
                )
        for run, x, y in zip(finite["run"], finite[predictor], finite["post_rl"], strict=True):
            ax.annotate(run, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        fit = predictors.fit_predictor(finite[predictor], finite["post_rl"])
        if math.isfinite(fit["slope"]):
            xs = np.linspace(finite[predictor].min(), finite[predictor].max(), 50)
            ax.plot(xs, fit["slope"] * xs + fit["intercept"], linestyle="--", color="0.4", zorder=2)
        ax.set_title(
            f"{label}\n{LEVEL_LABELS[level]}: "
            f"R²={_fmt(fit['r2'])}, ρ={_fmt(fit['spearman'])}, n={int(fit['n'])}"
        )
        ax.margins(0.12)
        if level == "all" and finite["dataset_level"].nunique() > 1:
            ax.legend(handles=_level_handles(), fontsize=8, loc="best")
    fig.suptitle("Does the post-SFT model predict the post-RL score?")
    return fig


@_figure
def sft_vs_rl_by_epochs(tidy: pd.DataFrame, recipes: pd.DataFrame, settings: PlotSettings) -> Figure:
    """Post-SFT and post-RL macro accuracy against SFT epochs for the dataset-level runs.

    One colour per (unique examples, learning rate) series; the base model's scores are horizontal references.
    """
    avg = tables.avg_metric_name(tidy)
    sft = tables.macro_metric(tidy, "sft", avg)
    rl = tables.macro_metric(tidy, "rl", avg)
    runs = predictors.select_level(recipes, "dataset")
    fig, axes = new_figure(settings)
    ax = axes[0, 0]
    groups = list(runs.groupby(["n_unique", "lr"], sort=True, dropna=False))
    cmap = matplotlib.colormaps["tab10"]
    drawn = False
    for i, ((n_unique, lr), group) in enumerate(groups):
        group = group.sort_values("epochs", kind="stable")
        suffix = f" ({_recipe_group_label(n_unique, lr)})" if len(groups) > 1 else ""
        for scores, style, name in ((sft, "o-", "post-SFT"), (rl, "s--", "post-RL")):
            y = scores.reindex(group["run"]).to_numpy(dtype=float)
            keep = np.isfinite(y)
            if keep.any():
                ax.plot(
                    group["epochs"].to_numpy()[keep],
                    y[keep],
                    style,
                    color=cmap(i % cmap.N),
                    label=f"{name}{suffix}",
                )
                drawn = True
    drawn = _base_reference_lines(ax, tidy, avg) or drawn
    ax.set_xlabel("SFT epochs")
    ax.set_ylabel(f"macro {avg}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("SFT vs RL by epochs (dataset level)")
    if drawn:
        ax.legend(fontsize=8, loc="best")
    else:
        no_data(ax)
    return fig


@_figure
def subset_bars(tidy: pd.DataFrame, recipes: pd.DataFrame, settings: PlotSettings) -> Figure:
    """Grouped bars of post-SFT and post-RL macro accuracy per instance-level subset strategy."""
    avg = tables.avg_metric_name(tidy)
    sft = tables.macro_metric(tidy, "sft", avg)
    rl = tables.macro_metric(tidy, "rl", avg)
    runs = predictors.select_level(recipes, "instance")
    runs = runs[runs["run"].isin(sft.index) | runs["run"].isin(rl.index)]
    fig, axes = new_figure(settings)
    ax = axes[0, 0]
    ax.set_ylabel(f"macro {avg}")
    ax.set_title("SFT vs RL by subset (instance level)")
    if runs.empty:
        no_data(ax)
        return fig
    x = np.arange(len(runs), dtype=float)
    width = 0.38
    for offset, scores, name, color in (
        (-width / 2, sft, "post-SFT", "tab:blue"),
        (width / 2, rl, "post-RL", "tab:orange"),
    ):
        y = scores.reindex(runs["run"]).to_numpy(dtype=float)
        keep = np.isfinite(y)
        if keep.any():
            bars = ax.bar(x[keep] + offset, y[keep], width, label=name, color=color)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        for xi in x[~keep]:
            ax.text(
                xi + offset,
                0.5,
                f"no {name[5:]}",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="center",
                va="center",
                fontsize=8,
                color="0.5",
            )
    _base_reference_lines(ax, tidy, avg)
    labels = [s if s == r else f"{s}\n({r})" for s, r in zip(runs["subset"], runs["run"], strict=True)]
    ax.set_xticks(x, labels)
    ax.set_xlim(-0.6, len(runs) - 0.4)
    ax.legend(fontsize=8, loc="best")
    return fig


def _epoch_sweep(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The largest group of dataset-level runs sharing unique examples and lr: the cleanest epochs series."""
    if runs.empty:
        return runs, ""
    sizes = runs.groupby(["n_unique", "lr"], sort=True, dropna=False).size()
    n_unique, lr = sizes.index[int(np.argmax(sizes.to_numpy()))]
    group = runs[(runs["n_unique"] == n_unique) & (runs["lr"] == lr)]
    return group.sort_values("epochs", kind="stable"), _recipe_group_label(n_unique, lr)


@_figure
def genloss_teaser(tidy: pd.DataFrame, recipes: pd.DataFrame, settings: PlotSettings) -> Figure:
    """SFT accuracy, held-out loss (right axis) and post-RL accuracy vs epochs: the paper's teaser figure."""
    avg = tables.avg_metric_name(tidy)
    sft = tables.macro_metric(tidy, "sft", avg)
    rl = tables.macro_metric(tidy, "rl", avg)
    loss = tables.heldout_genloss(tidy)
    group, label = _epoch_sweep(predictors.select_level(recipes, "dataset"))
    fig, axes = new_figure(settings)
    ax = axes[0, 0]
    ax.set_xlabel("SFT epochs")
    ax.set_ylabel(f"macro {avg}")
    ax.set_title("Held-out loss and the RL outcome" + (f"\n{label}" if label else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    epochs = group["epochs"].to_numpy()
    handles = []
    for scores, style, name, color in (
        (sft, "o-", "post-SFT accuracy", "tab:blue"),
        (rl, "s-", "post-RL accuracy", "tab:green"),
    ):
        y = scores.reindex(group["run"]).to_numpy(dtype=float)
        keep = np.isfinite(y)
        if keep.any():
            handles += ax.plot(epochs[keep], y[keep], style, color=color, label=name)
    y = loss.reindex(group["run"]).to_numpy(dtype=float)
    keep = np.isfinite(y)
    if keep.any():
        twin = ax.twinx()
        handles += twin.plot(epochs[keep], y[keep], "^--", color="tab:red", label="held-out loss")
        twin.set_ylabel("generalization loss (nats/token)", color="tab:red")
    if handles:
        fig.legend(
            handles=handles,
            labels=[h.get_label() for h in handles],
            fontsize=8,
            loc="outside lower center",
            ncols=len(handles),
        )
    else:
        no_data(ax)
    return fig


@_figure
def passk_sweep(tidy: pd.DataFrame, recipes: pd.DataFrame, settings: PlotSettings) -> Figure:
    """Spearman ρ of post-SFT pass@k with post-RL accuracy as k grows: where coverage starts to rank runs."""
    fig, axes = new_figure(settings)
    ax = axes[0, 0]
    avg = tables.avg_metric_name(tidy)
    ax.set_xlabel("k (post-SFT pass@k)")
    ax.set_ylabel(f"Spearman ρ with post-RL {avg}")
    ax.set_title("post-SFT pass@k vs the RL outcome")
    drawn = False
    for level, marker in zip(predictors.LEVELS, ("o", "s", "D"), strict=True):
        sweep = predictors.passk_correlation_sweep(tidy, recipes, level=level)
        sweep = sweep[np.isfinite(sweep["spearman"].to_numpy(dtype=float))]
        if not sweep.empty:
            n = int(sweep["n_runs"].max())
            ax.plot(sweep["k"], sweep["spearman"], marker=marker, label=f"{LEVEL_LABELS[level]} (n={n})")
            drawn = True
    if drawn:
        _log2_axis(ax)
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0.0, color="0.7", linewidth=0.8)
        ax.legend(fontsize=8, loc="best")
    else:
        no_data(ax)
    return fig


@_figure
def passk_curves(tidy: pd.DataFrame, recipes: pd.DataFrame, settings: PlotSettings) -> Figure:
    """Macro pass@k against k for every run, one panel per stage (base, SFT, RL), on a log2 k axis."""
    stages = [s for s in tables.STAGES if tables.pass_ks(tidy, s)]
    order = list(dict.fromkeys([tables.BASE_RUN, *recipes["run"]]))
    runs = order + sorted(set(tidy["run"]) - set(order))
    colors = _run_colors(runs)
    fig, axes = new_figure(settings, 1, max(len(stages), 1), sharey=True)
    if not stages:
        axes[0, 0].set_title("pass@k curves")
        no_data(axes[0, 0])
        return fig
    handles: dict[str, Any] = {}
    for ax, stage in zip(axes[0], stages, strict=True):
        ks = tables.pass_ks(tidy, stage)
        curves = pd.DataFrame({k: tables.macro_metric(tidy, stage, f"pass@{k}") for k in ks})
        for run in [r for r in runs if r in curves.index]:
            y = curves.loc[run].to_numpy(dtype=float)
            keep = np.isfinite(y)
            if keep.any():
                (handles[run],) = ax.plot(
                    np.asarray(ks)[keep], y[keep], marker=".", color=colors[run], label=run
                )
        _log2_axis(ax)
        ax.set_xlabel("k")
        ax.set_title(STAGE_LABELS[stage])
    axes[0, 0].set_ylabel("macro pass@k")
    ordered = [handles[r] for r in runs if r in handles]  # one legend: a run has one colour in every panel
    fig.legend(
        handles=ordered, labels=[h.get_label() for h in ordered], fontsize=8, loc="outside right upper"
    )
    return fig


def loss_along_sft(along: pd.DataFrame, recipes: pd.DataFrame, settings: PlotSettings) -> Figure:
    """Held-out loss (left) and post-SFT accuracy (right) against SFT steps, a line per recipe: the paper's loss
    teaser per step. Not one of FIGURES (those read the tidy table alone): it reads tables/loss_along_sft.csv."""
    with matplotlib.style.context(settings.style):
        fig, axes = new_figure(settings, 1, 2)
        left, right = axes[0]
        order = list(dict.fromkeys([*recipes["run"].astype(str), *sorted(set(along["run"].astype(str)))]))
        colors = _run_colors(order)
        handles: dict[str, Any] = {}
        accuracy_drawn = False
        for run in order:
            series = along[along["run"].astype(str) == run].sort_values("step")
            if series.empty:
                continue
            (handles[run],) = left.plot(series["step"], series["genloss"], marker="o", color=colors[run], label=run)
            accuracy = series["accuracy"].to_numpy(dtype=float)
            keep = np.isfinite(accuracy)
            if keep.any():
                right.plot(series["step"].to_numpy()[keep], accuracy[keep], marker="s", color=colors[run])
                accuracy_drawn = True
        for ax, title, label in ((left, "Held-out loss along SFT", "generalization loss (nats/token)"),
                                 (right, "Post-SFT accuracy along SFT", "macro avg@n")):  # fmt: skip
            ax.set_xlabel("SFT step")
            ax.set_ylabel(label)
            ax.set_title(title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        n = along["n"].max() if len(along) else 0
        if accuracy_drawn:
            right.set_ylabel(f"macro avg@{int(n)}")
        else:
            no_data(right, "accuracy not measured (along_sft.n = 0)" if len(along) else NO_DATA)
        if handles:
            ordered = [handles[r] for r in order if r in handles]
            fig.legend(handles=ordered, labels=[h.get_label() for h in ordered], fontsize=8,
                       loc="outside right upper")  # fmt: skip
        else:
            no_data(left)
    return fig


def render_loss_along_sft(
    along_csv: str | Path, recipes_csv: str | Path, out: str | Path, settings_dict: Mapping[str, Any] | None = None
) -> Path:
    """Draw the loss-along-SFT figure from its table and the recipes table (the `quagmire plot-loss-along-sft`
    step), with its manifest beside it."""
    from quagmire.eval.along_table import read_along

    settings = PlotSettings.from_config(settings_dict)
    figure = loss_along_sft(read_along(along_csv), tables.read_recipes(recipes_csv), settings)
    path = save_figure(figure, out, settings)
    write_sidecar(path, step_manifest("plot", [("loss_along_sft", along_csv), ("recipes", recipes_csv)],
                                      settings={"figure": "loss_along_sft", "plots": dict(settings_dict or {})}))
    return path


# Fixed file metadata, so a rerun writes the same bytes in every format: no creation dates (PDF, SVG), and SVG's
# element ids drawn from a fixed salt instead of a random one. PNG carries no date.
_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}
_SVG_SALT = "quagmire"


def save_figure(fig: Figure, path: str | Path, settings: PlotSettings) -> Path:
    """Write the figure atomically in `settings.format` (fixed metadata), then release it; the suffix must match."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix and _SAME_FORMAT.get(suffix, suffix) != _SAME_FORMAT.get(settings.format, settings.format):
        _close(fig)
        raise QuagmireError(
            f"figure path {path} does not end in .{settings.format} (plot format is {settings.format})"
        )
    try:
        with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": _SVG_SALT}):
            fig.savefig(tmp, format=settings.format, dpi=settings.dpi, metadata=_METADATA.get(settings.format))
    finally:
        _close(fig)
    return path


def _close(fig: Figure) -> None:
    """Free the figure; figures made through pyplot elsewhere are also unregistered from it."""
    if getattr(fig.canvas, "manager", None) is not None:
        from matplotlib import pyplot

        pyplot.close(fig)
    else:
        fig.clear()


def render(
    name: str,
    tidy_csv: str | Path,
    recipes_csv: str | Path,
    out: str | Path,
    settings_dict: Mapping[str, Any] | None = None,
) -> Path:
    """Draw figure `name` from the tidy and recipes CSVs and save it to `out`: the CLI's one entry point."""
    if name not in FIGURES:
        raise QuagmireError(f"unknown figure {name!r} (known: {', '.join(sorted(FIGURES))})")
    settings = PlotSettings.from_config(settings_dict)
    tidy = tables.read_tidy(tidy_csv)
    recipes = tables.read_recipes(recipes_csv)
    path = save_figure(FIGURES[name](tidy, recipes, settings), out, settings)
    write_sidecar(path, step_manifest("plot", [("tidy", tidy_csv), ("recipes", recipes_csv)],
                                      settings={"figure": name, "plots": dict(settings_dict or {})}))
    return path
