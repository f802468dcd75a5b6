"""The paper's cross-model tables and figure, built from per-study predictors.csv files (no refitting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quagmire import cli
from quagmire.analysis import paper, plots, predictors
from quagmire.errors import QuagmireError

FAST = {"dpi": 40, "width": 3.0, "height": 2.0}


def synthetic_values(seed: int, n_dataset: int = 6, n_instance: int = 5) -> pd.DataFrame:
    """Per-run predictor values of one study: loss and pass@k track post-RL, post-SFT only loosely."""
    rng = np.random.default_rng(seed)
    n = n_dataset + n_instance
    post_rl = np.linspace(0.3, 0.7, n) + rng.normal(0, 0.02, n)
    genloss = 1.5 - post_rl + rng.normal(0, 0.03, n)
    frame = pd.DataFrame(
        {
            "run": [f"r{i}" for i in range(n)],
            "post_sft": 0.4 + rng.normal(0, 0.05, n),
            "genloss": genloss,
            "neg_genloss": -genloss,
            "pass_at_k_large": post_rl + 0.2 + rng.normal(0, 0.02, n),
            "post_rl": post_rl,
            "dataset_level": [True] * n_dataset + [False] * n_instance,
            "instance_level": [False] * n_dataset + [True] * n_instance,
        }
    )
    frame["avg_both"] = 0.0  # re-z-scored per level by predictor_quality
    return frame


def write_study(tmp_path: Path, name: str, seed: int, **kwargs: int) -> Path:
    quality = predictors.predictor_quality(synthetic_values(seed, **kwargs), n_splits=50, seed=0)
    path = tmp_path / name / "predictors.csv"
    path.parent.mkdir(parents=True)
    quality.to_csv(path, index=False)  # exactly as `quagmire predictors` writes it
    return path


@pytest.fixture()
def studies(tmp_path: Path) -> list[tuple[str, Path]]:
    return [
        ("llama", write_study(tmp_path, "llama", 1)),
        ("mistral", write_study(tmp_path, "mistral", 2)),
        ("qwen", write_study(tmp_path, "qwen", 3, n_dataset=2)),  # too few dataset-level runs: undefined stats
    ]


def test_long_table_rows_order_and_gains(studies: list[tuple[str, Path]]) -> None:
    table = paper.paper_table(studies)
    assert list(table.columns) == list(paper.PAPER_COLUMNS)
    assert len(table) == 3 * len(predictors.LEVELS) * len(predictors.PREDICTORS)
    assert list(dict.fromkeys(table["study"])) == ["llama", "mistral", "qwen"]
    first = table[table["study"] == "llama"]
    assert list(dict.fromkeys(first["level"])) == list(predictors.LEVELS)
    assert list(first["predictor"][:4]) == list(predictors.PREDICTORS)
    source = pd.read_csv(studies[0][1]).set_index(["level", "predictor"])
    row = first.set_index(["level", "predictor"]).loc[("dataset", "pass_at_k_large")]
    assert row["spearman"] == source.loc[("dataset", "pass_at_k_large"), "spearman"]  # read, not refitted
    base = first.set_index(["level", "predictor"]).loc[("dataset", "post_sft")]
    assert row["spearman_gain"] == pytest.approx(row["spearman"] - base["spearman"])
    assert row["r2_split_gain"] == pytest.approx(row["r2_split_mean"] - base["r2_split_mean"])
    assert base["spearman_gain"] == 0.0
    flags = table.set_index(["study", "level", "predictor"])["comparable"]
    assert not flags[("mistral", "instance", "neg_genloss")] and flags[("mistral", "dataset", "neg_genloss")]
    assert table.set_index(["study", "level", "predictor"]).loc[("qwen", "dataset", "post_sft"), "r2"] != 0
    assert np.isnan(table.set_index(["study", "level", "predictor"]).loc[("qwen", "dataset", "post_sft"), "r2"])


def test_markdown_has_a_table_per_level_with_rows_per_study(studies: list[tuple[str, Path]]) -> None:
    md = paper.markdown_tables(paper.paper_table(studies), {"llama": "Llama3-8B"})
    assert md.count("## ") == 3
    assert md.index("## Dataset level") < md.index("## Instance level") < md.index("## All runs")
    dataset = md.split("## Dataset level")[1].split("## Instance level")[0]
    rows = [line for line in dataset.splitlines() if line.startswith("| ")]
    # header + separator + 3 studies, then the gain table: header + separator + 3 studies
    assert len(rows) == 10
    assert rows[0].startswith("| model | n | post-SFT avg@n R² | post-SFT avg@n ρ | − gen. loss R²")
    assert rows[2].startswith("| Llama3-8B | 6 | ") and rows[3].startswith("| mistral | 6 | ")
    cells = rows[2].strip("| ").split(" | ")
    assert len(cells) == 2 + 2 * len(predictors.PREDICTORS)
    assert all(" ± " in cells[i] for i in (2, 4, 6, 8))
    assert "n/c" not in dataset.split("Table 1b")[0]
    qwen = rows[4].strip("| ").split(" | ")
    assert qwen[:3] == ["qwen", "2", "–"]  # two runs: no fit, no split
    gain_head = rows[5].strip("| ").split(" | ")
    assert gain_head[1] == "− gen. loss ΔR²" and len(gain_head) == 1 + 2 * 3
    assert rows[7].split(" | ")[1][0] in "+-"
    instance = md.split("## Instance level")[1].split("## All runs")[0]
    llama = next(line for line in instance.splitlines() if line.startswith("| Llama3-8B | 5 |"))
    cells = llama.strip("| ").split(" | ")
    assert cells[4:6] == ["n/c", "n/c"] and cells[8:10] == ["n/c", "n/c"]  # loss and avg of both
    assert " ± " in cells[6] and "n/c" not in cells[2:4]


def test_number_formatting() -> None:
    assert paper._num(0.123456) == "0.12"
    assert paper._num(-0.001) == "0.00" and paper._num(-0.001, sign=True) == "+0.00"
    assert paper._num(0.25, sign=True) == "+0.25" and paper._num(-1.5, sign=True) == "-1.50"
    assert paper._num(float("nan")) == "–" and paper._num(None) == "–"
    assert paper._r2_cell(0.5, 0.04) == "0.50 ± 0.04"
    assert paper._r2_cell(0.5, float("nan")) == "0.50"
    assert paper._r2_cell(float("nan"), 0.1) == "–"


def test_cli_writes_byte_identical_outputs_on_rerun(studies: list[tuple[str, Path]], tmp_path: Path) -> None:
    outs = []
    for attempt in ("a", "b"):
        csv, md, png = (tmp_path / attempt / f"paper.{ext}" for ext in ("csv", "md", "png"))
        args = ["--study", *(f"{name}={path}" for name, path in studies), "--label", "qwen=Qwen3-4B"]
        assert cli.main(["paper-tables", *args, "--out-csv", str(csv), "--out-md", str(md)]) == 0
        assert cli.main(["paper-figure", *args, "--settings", '{"dpi": 40, "format": "png"}', "--out", str(png)]) == 0
        outs.append([p.read_bytes() for p in (csv, md, png)])
    assert outs[0] == outs[1]
    csv_text = outs[0][0].decode()
    assert csv_text.splitlines()[0] == ",".join(paper.PAPER_COLUMNS)
    assert "\r" not in csv_text and ",0.000000," in csv_text  # fixed float format; the baseline's own gain
    back = pd.read_csv(tmp_path / "a" / "paper.csv")
    assert len(back) == 36 and back["comparable"].dtype == bool
    assert "| Qwen3-4B |" in outs[0][1].decode()


def test_figure_is_written_with_the_plot_settings(studies: list[tuple[str, Path]], tmp_path: Path) -> None:
    out = paper.render_figure(studies, tmp_path / "bars.png", {**FAST, "figures": ["predictor_scatter"]})
    assert out.stat().st_size > 5000
    from PIL import Image

    with Image.open(out) as image:
        width, height = image.size
    # three level columns and two rows of panels, each FAST width x height inches at 40 dpi (plus the legend)
    assert width >= 3 * 3.0 * 40 * 0.9 and height == pytest.approx(2 * 2.0 * 40, abs=2)
    assert len(np.unique(np.asarray(Image.open(out).convert("L")))) > 20  # not a blank canvas


def test_figure_with_one_level_and_svg_is_deterministic(studies: list[tuple[str, Path]], tmp_path: Path) -> None:
    table = paper.paper_table(studies)
    table = table[table["level"] == "dataset"]
    settings = paper.plots.PlotSettings.from_config({**FAST, "format": "svg"})
    first = plots.save_figure(paper.predictor_bars(table, settings), tmp_path / "a.svg", settings).read_bytes()
    second = plots.save_figure(paper.predictor_bars(table, settings), tmp_path / "b.svg", settings).read_bytes()
    assert first == second and b"<svg" in first
    with pytest.raises(QuagmireError, match="does not end in .svg"):
        plots.save_figure(paper.predictor_bars(table, settings), tmp_path / "c.png", settings)


def test_errors_name_the_problem(studies: list[tuple[str, Path]], tmp_path: Path) -> None:
    with pytest.raises(QuagmireError, match="not found"):
        paper.paper_table([("llama", tmp_path / "nope.csv")])
    with pytest.raises(QuagmireError, match="'llama' given more than once"):
        paper.paper_table([studies[0], studies[0]])
    with pytest.raises(QuagmireError, match="no studies"):
        paper.paper_table([])
    broken = tmp_path / "broken.csv"
    pd.read_csv(studies[0][1]).drop(columns=["spearman", "comparable"]).to_csv(broken, index=False)
    with pytest.raises(QuagmireError, match=r"study 'x'.*missing column\(s\) spearman, comparable"):
        paper.paper_table([("x", broken)])
    frame = pd.read_csv(studies[0][1])
    pd.concat([frame, frame.iloc[:1]]).to_csv(broken, index=False)
    with pytest.raises(QuagmireError, match="'dataset' predictor 'post_sft' given twice"):
        paper.paper_table([("x", broken)])
    frame.assign(predictor="loss").to_csv(broken, index=False)
    with pytest.raises(QuagmireError, match="unknown predictor"):
        paper.paper_table([("x", broken)])
    frame.assign(comparable="maybe").to_csv(broken, index=False)
    with pytest.raises(QuagmireError, match="comparable"):
        paper.paper_table([("x", broken)])
    frame.assign(spearman="high").to_csv(broken, index=False)
    with pytest.raises(QuagmireError, match="'spearman' must be numeric"):
        paper.paper_table([("x", broken)])
    with pytest.raises(QuagmireError, match="unknown study"):
        paper.write_tables(studies, tmp_path / "t.csv", tmp_path / "t.md", {"gemma": "Gemma"})
    assert not (tmp_path / "t.csv").exists()


def test_cli_reports_bad_arguments_as_one_line(studies: list[tuple[str, Path]], tmp_path: Path, capsys) -> None:
    code = cli.main(["paper-tables", "--study", str(studies[0][1]), "--out-csv", "x.csv", "--out-md", "x.md"])
    assert code == 2 and "NAME=PATH" in capsys.readouterr().err
    out = str(tmp_path / "f.png")
    code = cli.main(["paper-figure", "--study", f"a={studies[0][1]}", "--settings", '{"dpi": 0}', "--out", out])
    assert code == 2 and "dpi" in capsys.readouterr().err


def test_a_study_without_a_level_gets_a_row_of_dashes(studies: list[tuple[str, Path]], tmp_path: Path) -> None:
    quality = predictors.predictor_quality(synthetic_values(4), levels=("dataset",), n_splits=20)
    path = tmp_path / "dataset_only.csv"
    quality.to_csv(path, index=False)
    table = paper.paper_table([*studies[:1], ("gemma", path)])
    md = paper.markdown_tables(table)
    instance = md.split("## Instance level")[1].split("## All runs")[0]
    assert "| gemma | – | – | – | – | – | – | – | – | – |" in instance
    assert "| gemma | – | – | – | – | – | – |" in instance.split("Table 2b")[1]
    empty = paper.predictor_bars(table.iloc[:0], paper.plots.PlotSettings.from_config(FAST))
    assert len(empty.axes) == 2
