"""Ranking SFT candidates before RL: the loss filter, the order, the calibration and its interval, leave-one-out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from quagmire.analysis import ranking
from quagmire.cli import main
from quagmire.errors import QuagmireError

DEFAULTS = {"loss_quantile": 0.75, "loss_threshold": None, "interval_level": 0.95}


def tables(runs: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy and recipes tables from {run: {pass, rl (optional), loss (optional), dataset (bool), subset}}."""
    rows, recipes = [], []
    for run, r in runs.items():
        rows += [(run, "sft", "macro", "avg@4", r["pass"] / 2), (run, "sft", "macro", "pass@4", r["pass"]),
                 (run, "sft", "macro", "pass@2", r["pass"] / 3)]  # fmt: skip
        if r.get("rl") is not None:
            rows.append((run, "rl", "macro", "avg@4", r["rl"]))
        if r.get("loss") is not None:
            rows.append((run, "sft", "heldout", "genloss", r["loss"]))
        dataset = r.get("dataset", True)
        recipes.append({"run": run, "subset": r.get("subset", "random" if dataset else "shortest"), "n_unique": 64,
                        "epochs": 1, "lr": 1e-3, "dataset_level": dataset, "instance_level": not dataset})  # fmt: skip
    rows.append(("base", "base", "macro", "avg@4", 0.0))
    return pd.DataFrame(rows, columns=["run", "stage", "benchmark", "metric", "value"]), pd.DataFrame(recipes)


def rank(runs: dict[str, dict], loss_steps: pd.DataFrame | None = None, **settings):
    tidy, recipes = tables(runs)
    return ranking.rank_candidates(tidy, recipes, {**DEFAULTS, **settings}, loss_steps=loss_steps)


# --- the filter -----------------------------------------------------------------------------------------------


def test_a_loss_above_the_quantile_of_the_dataset_level_runs_is_dropped_and_other_runs_are_not_judged():
    runs = {f"r{i}": {"pass": 0.1 * i, "rl": 0.1 * i, "loss": loss} for i, loss in enumerate([1, 2, 3, 4, 10], 1)}
    runs["short"] = {"pass": 0.9, "rl": 0.5, "loss": 50.0, "dataset": False}  # a loss on other data: not comparable
    runs["noloss"] = {"pass": 0.05, "rl": None, "loss": None}
    table, _ = rank(runs)
    verdict = dict(zip(table["run"], table["verdict"], strict=True))
    assert verdict == {"r1": "keep", "r2": "keep", "r3": "keep", "r4": "keep", "r5": "drop",
                       "short": ranking.NOT_JUDGED_LEVEL, "noloss": ranking.NOT_JUDGED_NO_LOSS}  # fmt: skip
    # the 0.75 quantile of 1, 2, 3, 4, 10 is 4: only 10 is above it
    assert table.set_index("run").loc["r1", "loss_cutoff"] == pytest.approx(4.0)
    assert math.isnan(table.set_index("run").loc["short", "loss_cutoff"])
    assert set(table["loss_rising"]) == {ranking.NOT_MEASURED}
    # an absolute threshold replaces the quantile
    table, _ = rank(runs, loss_threshold=2.5)
    assert list(table.loc[table["verdict"] == "drop", "run"]) == ["r5", "r4", "r3"]


def test_fewer_than_three_comparable_losses_are_not_judged():
    runs = {"a": {"pass": 0.2, "loss": 1.0}, "b": {"pass": 0.3, "loss": 9.0}, "c": {"pass": 0.4, "loss": 5.0,
                                                                                    "dataset": False}}
    table, _ = rank(runs)
    assert set(table["verdict"]) == {ranking.NOT_JUDGED_FEW, ranking.NOT_JUDGED_LEVEL}
    assert table["rank"].tolist() == [1, 2, 3]


def test_a_per_step_loss_series_decides_rising_and_a_high_but_falling_loss_is_kept():
    runs = {f"r{i}": {"pass": 0.1 * i, "loss": loss} for i, loss in enumerate([1, 2, 3, 9, 10], 1)}
    steps = pd.DataFrame({"run": ["r4"] * 3 + ["r5"] * 3, "step": [10, 20, 30] * 2,
                          "genloss": [12.0, 10.0, 9.0, 8.0, 7.0, 10.0]})  # fmt: skip
    table, _ = rank(runs, loss_steps=steps, loss_threshold=5.0)
    by_run = table.set_index("run")
    assert by_run.loc["r4", "loss_rising"] is False and by_run.loc["r4", "verdict"] == "keep"  # high, falling
    assert by_run.loc["r5", "loss_rising"] is True and by_run.loc["r5", "verdict"] == "drop"  # high and rising
    assert by_run.loc["r1", "loss_rising"] == ranking.NOT_MEASURED  # no series for it
    with pytest.raises(QuagmireError, match="genloss"):
        rank(runs, loss_steps=pd.DataFrame({"run": ["r1"], "step": [1]}))


# --- ranking and calibration ----------------------------------------------------------------------------------


def test_kept_candidates_are_ranked_by_pass_at_k_large_and_dropped_ones_follow_unranked():
    runs = {"low": {"pass": 0.1, "loss": 1}, "high": {"pass": 0.9, "loss": 2}, "mid": {"pass": 0.5, "loss": 3},
            "tie_b": {"pass": 0.5, "loss": 1.5}, "bad": {"pass": 0.95, "loss": 9}}  # fmt: skip
    table, _ = rank(runs)
    assert table["run"].tolist() == ["high", "mid", "tie_b", "low", "bad"]
    assert table["rank"].tolist()[:4] == [1, 2, 3, 4] and table["rank"].isna().tolist() == [False] * 4 + [True]
    assert table.attrs["k_large"] == 4  # the largest k measured (pass@2 and pass@4)
    assert ranking.rank_candidates(*tables(runs), DEFAULTS, k_large=2)[0].attrs["k_large"] == 2


def test_calibration_and_prediction_interval_match_a_hand_computation():
    # x̄ = ȳ = 0.25, Sxx = 0.05, Sxy = 0.04: slope 0.8, intercept 0.05; residuals ∓0.03, ±0.09: SSR 0.018,
    # s = √(0.018 / 2); at x₀ = 0.5: ŷ = 0.45 ± t(0.975, 2) · s · √(1 + 1/4 + 0.25² / 0.05) = 0.45 ± 4.3027 · 0.15
    fit = ranking.calibrate([0.1, 0.2, 0.3, 0.4], [0.1, 0.3, 0.2, 0.4])
    assert (fit.n, fit.slope, fit.intercept) == (4, pytest.approx(0.8), pytest.approx(0.05))
    assert fit.residual_se == pytest.approx(math.sqrt(0.009))
    pred, lo, hi = fit.predict([0.5], 0.95)
    assert pred[0] == pytest.approx(0.45)
    assert hi[0] - pred[0] == pytest.approx(4.302653 * 0.15, rel=1e-6)
    assert pred[0] - lo[0] == pytest.approx(hi[0] - pred[0])
    narrower = fit.predict([0.5], 0.5)
    assert narrower[2][0] - narrower[0][0] == pytest.approx(stats.t.ppf(0.75, 2) * 0.15)


def test_candidates_without_rl_get_a_prediction_and_quality_counts_only_runs_with_rl():
    x = [0.1, 0.2, 0.3, 0.4]
    y = [0.1, 0.3, 0.2, 0.4]
    runs = {f"r{i}": {"pass": xi, "rl": yi, "loss": 1.0 + i} for i, (xi, yi) in enumerate(zip(x, y, strict=True))}
    runs["new"] = {"pass": 0.5, "rl": None, "loss": 0.5}
    table, fit = rank(runs)
    new = table.set_index("run").loc["new"]
    assert math.isnan(new["post_rl"]) and new["predicted_post_rl"] == pytest.approx(0.45)
    assert new["interval_hi"] == pytest.approx(0.45 + 4.302653 * 0.15, rel=1e-6) and fit.n == 4
    loo = ranking.leave_one_out(table, 0.95)
    assert sorted(loo["run"]) == ["r0", "r1", "r2", "r3"]
    assert ranking.ranking_quality(loo, 0.95)["n_runs_with_rl"] == 4


def test_fewer_than_three_calibration_runs_give_no_prediction_and_say_so():
    runs = {"a": {"pass": 0.1, "rl": 0.1, "loss": 1}, "b": {"pass": 0.2, "rl": 0.3, "loss": 2},
            "c": {"pass": 0.3, "loss": 3}}  # fmt: skip
    table, fit = rank(runs)
    assert not fit.fitted and table["predicted_post_rl"].isna().all() and table["interval_lo"].isna().all()
    quality = ranking.ranking_quality(ranking.leave_one_out(table, 0.95), 0.95)
    assert quality["coverage"] is None and quality["spearman"] is None and "at least 3" in quality["note"]
    text = ranking.ranking_markdown(table, fit, quality)
    assert "No calibration: 2 run(s) with RL results, at least 3 needed" in text
    same = ranking.calibrate([0.2, 0.2, 0.2], [0.1, 0.2, 0.3])
    assert not same.fitted and "the same for all 3" in same.reason


# --- leave-one-out ----------------------------------------------------------------------------------------------


def _loo_by_hand(x: list[float], y: list[float], i: int, level: float) -> tuple[float, float, float]:
    xs, ys = np.delete(np.array(x), i), np.delete(np.array(y), i)
    slope, intercept = np.polyfit(xs, ys, 1)
    n = xs.size
    s = math.sqrt(np.sum((ys - (slope * xs + intercept)) ** 2) / (n - 2))
    half = stats.t.ppf((1 + level) / 2, n - 2) * s * math.sqrt(1 + 1 / n + (x[i] - xs.mean()) ** 2 /
                                                               np.sum((xs - xs.mean()) ** 2))  # fmt: skip
    pred = slope * x[i] + intercept
    return pred, pred - half, pred + half


def test_leave_one_out_predicts_each_run_from_the_others_and_scores_the_ranking():
    x = [0.1, 0.2, 0.3, 0.4, 0.5]
    y = [0.10, 0.21, 0.29, 0.41, 0.50]  # the same order as x: every measure of the ranking is perfect
    runs = {f"r{i}": {"pass": xi, "rl": yi, "loss": 1.0} for i, (xi, yi) in enumerate(zip(x, y, strict=True))}
    table, _ = rank(runs)
    loo = ranking.leave_one_out(table, 0.95).set_index("run")
    for i in range(5):
        assert loo.loc[f"r{i}", ["predicted", "interval_lo", "interval_hi"]].tolist() == pytest.approx(
            _loo_by_hand(x, y, i, 0.95))
    quality = ranking.ranking_quality(loo.reset_index(), 0.95)
    assert quality["spearman"] == pytest.approx(1.0)
    assert quality["top1_hit"] is True and quality["top3_hit"] is True and quality["actual_best"] == "r4"
    assert quality["predicted_top3"] == ["r4", "r3", "r2"]
    inside = [lo <= yi <= hi for yi, (_, lo, hi) in ((y[i], _loo_by_hand(x, y, i, 0.95)) for i in range(5))]
    assert quality["coverage"] == pytest.approx(sum(inside) / 5)


def test_the_actual_best_in_the_middle_is_a_top3_hit_but_no_top1_hit_and_dropping_it_fails_both():
    x = [0.1, 0.2, 0.3, 0.4, 0.5]
    y = [0.1, 0.2, 0.6, 0.4, 0.5]  # r2 (third highest pass@k) is the actual best
    runs = {f"r{i}": {"pass": xi, "rl": yi, "loss": 1.0 + i / 10} for i, (xi, yi) in enumerate(zip(x, y, strict=True))}
    table, _ = rank(runs, loss_threshold=5.0)  # nothing dropped
    quality = ranking.ranking_quality(ranking.leave_one_out(table, 0.95), 0.95)
    assert quality["actual_best"] == "r2" and quality["predicted_best"] == "r4"
    assert quality["top1_hit"] is False and quality["top3_hit"] is True and quality["note"] == ""
    table, _ = rank(runs, loss_threshold=1.15)  # drops r2, r3, r4 (losses 1.2, 1.3, 1.4)
    quality = ranking.ranking_quality(ranking.leave_one_out(table, 0.95), 0.95)
    assert quality["predicted_top3"] == ["r1", "r0"]
    assert quality["top1_hit"] is False and quality["top3_hit"] is False
    assert "dropped the actual best" in quality["note"]


def test_pooled_quality_adds_runs_and_hits_without_a_cross_study_fit():
    a = {"n_runs_with_rl": 4, "coverage": 1.0, "top1_hit": True, "top3_hit": True, "spearman": 0.8}
    b = {"n_runs_with_rl": 6, "coverage": 0.5, "top1_hit": False, "top3_hit": True, "spearman": 0.4}
    c = {"n_runs_with_rl": 2, "coverage": None, "top1_hit": None, "top3_hit": None, "spearman": None}
    pooled = ranking.pooled_quality({"a": a, "b": b, "c": c})
    assert pooled == {"studies": 2, "n_runs_with_rl": 10, "coverage": pytest.approx(0.7), "top1_hits": 1,
                      "top3_hits": 2, "mean_spearman": pytest.approx(0.6)}  # fmt: skip


def test_the_paper_ranking_lays_the_studies_side_by_side_and_pools_them(tmp_path: Path, capsys):
    """`quagmire paper-ranking` reads each study's ranking_quality.json: a row per study, the pooled line."""
    from quagmire.cli import main

    qualities = {
        "qwen": {"n_runs_with_rl": 4, "coverage": 1.0, "top1_hit": True, "top3_hit": True, "spearman": 0.8,
                 "predicted_best": "r1", "actual_best": "r1", "interval_level": 0.95},
        "llama": {"n_runs_with_rl": 6, "coverage": 0.5, "top1_hit": False, "top3_hit": True, "spearman": 0.4,
                  "predicted_best": "r2", "actual_best": "r3", "interval_level": 0.95},
        "tiny": {"n_runs_with_rl": 2, "coverage": None, "top1_hit": None, "top3_hit": None, "spearman": None},
    }  # fmt: skip
    pairs = []
    for name, quality in qualities.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"quality": quality, "calibration": {}}))
        pairs.append(f"{name}={path}")
    md, out_json = tmp_path / "paper_ranking.md", tmp_path / "paper_ranking.json"
    main(["paper-ranking", "--study", *pairs, "--label", "qwen=Qwen 2.5 7B", "--out-md", str(md),
          "--out-json", str(out_json)])  # fmt: skip
    text = md.read_text()
    assert "| Qwen 2.5 7B | 4 | 0.80 | yes | yes | 100% | r1 | r1 |" in text
    assert "| llama | 6 | 0.40 | no | yes | 50% | r2 | r3 |" in text
    assert "| tiny | 2 | – | – | – | – | – | – |" in text
    assert "Pooled over 2 of 3 studies" in text and "mean ρ 0.60" in text and "coverage 70%" in text
    record = json.loads(out_json.read_text())
    assert record["pooled"]["top3_hits"] == 2 and list(record["studies"]) == ["qwen", "llama", "tiny"]
    assert text in capsys.readouterr().out

    (tmp_path / "bad.json").write_text(json.dumps({"calibration": {}}))
    with pytest.raises(QuagmireError, match=r"study bad: .*not a ranking quality file"):
        ranking.paper_ranking_to_file([("bad", tmp_path / "bad.json")], md, out_json)
    with pytest.raises(QuagmireError, match="unknown stud"):
        ranking.paper_ranking_to_file([("qwen", tmp_path / "qwen.json")], md, out_json, labels={"x": "y"})


# --- the command ----------------------------------------------------------------------------------------------


def _write(tmp_path: Path, runs: dict[str, dict]) -> tuple[Path, Path]:
    tidy, recipes = tables(runs)
    tidy.to_csv(tmp_path / "tidy.csv", index=False)
    recipes.to_csv(tmp_path / "recipes.csv", index=False)
    return tmp_path / "tidy.csv", tmp_path / "recipes.csv"


def _argv(tmp_path: Path, tidy: Path, recipes: Path, settings: dict) -> list[str]:
    return ["rank", "--tidy", str(tidy), "--recipes", str(recipes), "--settings", json.dumps(settings),
            "--plot-settings", json.dumps({"dpi": 40, "format": "pdf"}), "--out-csv", str(tmp_path / "r.csv"),
            "--out-md", str(tmp_path / "r.md"), "--out-json", str(tmp_path / "q.json"),
            "--out-figure", str(tmp_path / "r.png")]  # fmt: skip


def test_rank_command_writes_the_table_markdown_quality_and_figure_and_prints_the_ranking(tmp_path, capsys):
    runs = {f"r{i}": {"pass": 0.1 * i, "rl": 0.1 * i + 0.01 * (-1) ** i, "loss": 1.0 + i} for i in range(1, 6)}
    runs["new"] = {"pass": 0.35, "loss": 1.5}
    tidy, recipes = _write(tmp_path, runs)
    assert main(_argv(tmp_path, tidy, recipes, {"k_large": None, "rank": {"interval_level": 0.9}})) == 0
    printed = capsys.readouterr().out
    text = (tmp_path / "r.md").read_text()
    assert printed == text and text.startswith("# Ranking SFT candidates before RL")
    assert "## Ranking quality" in text and "90% interval coverage" in text and "| – | r5 |" in text
    table = pd.read_csv(tmp_path / "r.csv")
    # losses 1.5, 2, ..., 6: the 0.75 quantile is 4.75, so r4 (5) and r5 (6) are dropped and listed last
    assert table["run"].tolist() == ["new", "r3", "r2", "r1", "r5", "r4"]
    record = json.loads((tmp_path / "q.json").read_text())
    assert record["k_large"] == 4 and record["settings"]["interval_level"] == 0.9
    assert record["quality"]["n_runs_with_rl"] == 5 and len(record["leave_one_out"]) == 5
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"  # PNG whatever the plots format


def test_rank_command_with_a_bad_setting_exits_2_naming_the_key(tmp_path, capsys):
    tidy, recipes = _write(tmp_path, {"a": {"pass": 0.1, "loss": 1.0}})
    assert main(_argv(tmp_path, tidy, recipes, {"k_large": None, "rank": {"interval_level": 1.5}})) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert line.startswith("quagmire rank:") and "analysis.rank.interval_level" in line
    assert not (tmp_path / "r.csv").exists()
    assert main(_argv(tmp_path, tidy, recipes, {"k_large": 8, "rank": {}})) == 2
    assert "lack macro pass@8" in capsys.readouterr().err
