"""Every figure renders from the tidy and recipes tables, also when RL results or whole levels are missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure

from quagmire.analysis import plots
from quagmire.analysis import tables as tidy_tables
from quagmire.errors import QuagmireError

FAST = {"dpi": 40, "width": 3.0, "height": 2.0}
KS = (1, 2, 4, 8)

# run, subset, n_unique, epochs, dataset_level, instance_level, post_sft, genloss
RECIPES = [
    ("ep1", "all", 512, 1, True, False, 0.30, 0.80),
    ("ep2", "all", 512, 2, True, False, 0.38, 0.95),
    ("ep4", "all", 512, 4, True, False, 0.36, 1.30),
    ("n256x2", "all", 256, 2, True, False, 0.44, 0.85),
    ("shortest", "shortest", 256, 2, False, True, 0.25, 0.60),
    ("longest", "longest", 256, 2, False, True, 0.40, 1.20),
    ("random", "random", 256, 2, False, True, 0.35, 0.90),
    ("mix", "mix", 256, 2, False, True, 0.37, 1.00),
]


def metrics(avg: float, top: float) -> dict[str, Any]:
    """A one-benchmark metrics.json dict (avg@8, pass@1..8)."""
    entry: dict[str, Any] = {
        "avg@8": avg,
        "avg@8_ci": [avg - 0.05, avg + 0.05],
        "status_counts": {"correct": 3},
    }
    entry.update({f"pass@{k}": avg + (top - avg) * i / (len(KS) - 1) for i, k in enumerate(KS)})
    macro = {
        key: value for key, value in entry.items() if key.startswith(("avg@8", "pass@")) and "_ci" not in key
    }
    return {"n": 8, "benchmarks": {"add": entry}, "macro": macro}


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    evals: list = [("base", "base", metrics(0.05, 0.3)), ("base", "rl", metrics(0.5, 0.8))]
    genlosses: list = []
    for run, _s, _n, _e, _d, _i, post_sft, loss in RECIPES:
        post_rl = 1.0 - 0.5 * loss
        evals += [
            (run, "sft", metrics(post_sft, post_rl + 0.3)),
            (run, "rl", metrics(post_rl, post_rl + 0.2)),
        ]
        genlosses.append((run, {"genloss": loss, "n_tokens": 100, "n_examples": 10}))
    recipes = pd.DataFrame(
        [(r, s, n, e, 3e-3, d, i) for r, s, n, e, d, i, _sft, _loss in RECIPES],
        columns=list(tidy_tables.RECIPE_COLUMNS),
    )
    return tidy_tables.tidy_table(evals, genlosses), recipes


def without(tidy: pd.DataFrame, stage: str, runs: list[str] | None = None) -> pd.DataFrame:
    """The tidy table minus the `stage` rows of `runs` (all runs when None)."""
    drop = tidy["stage"] == stage
    if runs is not None:
        drop &= tidy["run"].isin(runs)
    return tidy[~drop]


def scenario(name: str, tidy: pd.DataFrame, recipes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Partial studies a figure must still draw: some or all RL missing, an empty level."""
    if name == "some_rl_missing":
        return without(tidy, "rl", ["ep2", "mix", "base"]), recipes
    if name == "no_rl":
        return without(tidy, "rl"), recipes
    if name == "no_instance_level":
        return tidy, recipes.assign(instance_level=False)
    if name == "no_dataset_level":
        return tidy, recipes.assign(dataset_level=False)
    raise AssertionError(name)


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def write_tables(tmp_path: Path, tidy: pd.DataFrame, recipes: pd.DataFrame) -> tuple[Path, Path]:
    tidy.to_csv(tmp_path / "tidy.csv", index=False)
    recipes.to_csv(tmp_path / "recipes.csv", index=False)
    return tmp_path / "tidy.csv", tmp_path / "recipes.csv"


def test_the_registry_holds_every_figure_of_the_study() -> None:
    assert set(plots.FIGURES) == {
        "predictor_scatter", "sft_vs_rl_by_epochs", "subset_bars",
        "genloss_teaser", "passk_sweep", "passk_curves",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(plots.FIGURES))
def test_every_figure_renders_to_a_png(name: str, tables: Any, tmp_path: Path) -> None:
    tidy_csv, recipes_csv = write_tables(tmp_path, *tables)
    out = plots.render(name, tidy_csv, recipes_csv, tmp_path / "figs" / f"{name}.png", FAST)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # no temp file left behind; beside the figure its manifest (the image's bytes do not carry it)
    assert sorted(p.name for p in out.parent.iterdir()) == [f"{name}.png", f"{name}.png.manifest.json"]


def test_the_main_figure_renders_to_pdf(tables: Any, tmp_path: Path) -> None:
    tidy_csv, recipes_csv = write_tables(tmp_path, *tables)
    out = plots.render(
        "predictor_scatter", tidy_csv, recipes_csv, tmp_path / "scatter.pdf", {**FAST, "format": "pdf"}
    )
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 1000


def test_predictor_scatter_titles_carry_fit_statistics(tables: Any) -> None:
    fig = plots.predictor_scatter(*tables, plots.PlotSettings.from_config(FAST))
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 4 and all("R²=" in t and "ρ=" in t for t in titles)
    assert (
        "dataset-level runs" in titles[1] and "n=4" in titles[1]
    )  # the loss is only compared within a level
    assert "all runs" in titles[0] and "n=8" in titles[0]


@pytest.mark.parametrize("case", ["some_rl_missing", "no_rl", "no_instance_level", "no_dataset_level"])
@pytest.mark.parametrize("name", sorted(plots.FIGURES))
def test_figures_draw_what_exists_when_pieces_are_missing(
    name: str, case: str, tables: Any, tmp_path: Path
) -> None:
    tidy, recipes = scenario(case, *tables)
    settings = plots.PlotSettings.from_config(FAST)
    fig = plots.FIGURES[name](tidy, recipes, settings)
    assert isinstance(fig, Figure)
    if case == "no_rl" and name in {"predictor_scatter", "passk_sweep"}:
        assert plots.NO_DATA in texts(fig)
    out = plots.save_figure(fig, tmp_path / f"{name}.png", settings)
    assert out.stat().st_size > 0


def test_empty_panels_say_no_data(tables: Any) -> None:
    tidy, recipes = scenario("no_rl", *tables)
    fig = plots.predictor_scatter(tidy, recipes, plots.PlotSettings.from_config(FAST))
    assert texts(fig).count(plots.NO_DATA) == 4
    tidy, recipes = scenario("no_instance_level", *tables)
    assert plots.NO_DATA in texts(plots.subset_bars(tidy, recipes, plots.PlotSettings.from_config(FAST)))


def test_plot_settings_come_from_config_and_reject_unknown_keys() -> None:
    from quagmire.config import section_defaults

    defaults = section_defaults("plots")
    assert plots.PlotSettings.from_config(None) == plots.PlotSettings.from_config({}) == plots.PlotSettings(
        **{k: defaults[k] for k in ("dpi", "format", "width", "height", "style")}
    )
    assert plots.PlotSettings.from_config({"dpi": 300, "format": "pdf"}).dpi == 300
    assert plots.PlotSettings.from_config({"figures": ["subset_bars"]}).dpi == defaults["dpi"]  # a whole section
    with pytest.raises(QuagmireError, match=r"unknown key plots\.colour \(allowed: dpi, figures, format"):
        plots.PlotSettings.from_config({"dpi": 100, "colour": "red"})
    for bad, key in (({"dpi": "many"}, "dpi"), ({"format": "docx"}, "format"), ({"width": -1}, "width")):
        with pytest.raises(QuagmireError, match=rf"^config error in plot settings: plots\.{key}: "):
            plots.PlotSettings.from_config(bad)
    with pytest.raises(QuagmireError, match=r"plots\.style: 'no-such-style' is not a matplotlib style"):
        plots.PlotSettings.from_config({"style": "no-such-style"})


def test_render_and_save_refuse_mistakes_before_writing(tables: Any, tmp_path: Path) -> None:
    tidy_csv, recipes_csv = write_tables(tmp_path, *tables)
    with pytest.raises(QuagmireError, match="unknown figure 'scatter'.*predictor_scatter"):
        plots.render("scatter", tidy_csv, recipes_csv, tmp_path / "x.png", FAST)
    with pytest.raises(QuagmireError, match=r"does not end in \.pdf"):
        plots.render("passk_curves", tidy_csv, recipes_csv, tmp_path / "x.png", {**FAST, "format": "pdf"})
    with pytest.raises(QuagmireError, match="not found"):
        plots.render("passk_curves", tmp_path / "missing.csv", recipes_csv, tmp_path / "x.png", FAST)
    assert not (tmp_path / "x.png").exists()
