"""Predictors, fits and R² on a synthetic study where post-RL follows held-out loss, not the SFT score."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quagmire.analysis import predictors, tables
from quagmire.errors import QuagmireError

N = 16
KS = (1, 2, 4, 8, 16)
BENCHMARK_OFFSETS = {"add": -0.02, "sub": 0.02}

# run, subset, n_unique, epochs, dataset_level, instance_level, post_sft, genloss
RECIPES = [
    ("ep1", "all", 512, 1, True, False, 0.30, 0.80),
    ("ep2", "all", 512, 2, True, False, 0.38, 0.95),
    ("ep3", "all", 512, 3, True, False, 0.42, 1.10),
    ("ep4", "all", 512, 4, True, False, 0.36, 1.30),
    ("n256x2", "all", 256, 2, True, False, 0.44, 0.85),
    ("n1024x1", "all", 1024, 1, True, False, 0.27, 0.75),
    ("shortest", "shortest", 256, 2, False, True, 0.25, 0.60),
    ("longest", "longest", 256, 2, False, True, 0.40, 1.20),
    ("random", "random", 256, 2, False, True, 0.35, 0.90),
    ("mix", "mix", 256, 2, False, True, 0.37, 1.00),
]


def benchmark_entry(avg: float, pass_n: float, n: int = N) -> dict[str, Any]:
    """One benchmark's metrics as metrics.json writes them, pass@k rising from avg to pass_n."""
    entry: dict[str, Any] = {"n_problems": 100, "n_samples": n, f"avg@{n}": avg, f"maj@{n}": avg + 0.05}
    for k in KS:
        entry[f"pass@{k}"] = avg + (pass_n - avg) * math.log2(k) / math.log2(KS[-1])
    entry[f"avg@{n}_ci"] = [avg - 0.05, avg + 0.05]
    entry["status_counts"] = {"correct": round(avg * 100 * n), "incorrect": 100 * n - round(avg * 100 * n)}
    entry["n_gold_invalid_problems"] = 0
    return entry


def metrics_json(avg: float, pass_n: float, n: int = N) -> dict[str, Any]:
    """A metrics.json dict whose macro scores are exactly `avg` and `pass_n`."""
    benchmarks = {b: benchmark_entry(avg + d, pass_n + d, n) for b, d in BENCHMARK_OFFSETS.items()}
    macro_keys = [f"avg@{n}", f"maj@{n}", *(f"pass@{k}" for k in KS)]
    macro = {key: float(np.mean([benchmarks[b][key] for b in benchmarks])) for key in macro_keys}
    return {"n": n, "benchmarks": benchmarks, "macro": macro}


def synthetic_study(seed: int = 0) -> tuple[list, list, pd.DataFrame, dict[str, float]]:
    """Evals, genlosses and recipes of 10 SFT recipes + base; post-RL = 1 − 0.5·genloss + small noise."""
    rng = np.random.default_rng(seed)
    evals: list = [("base", "base", metrics_json(0.05, 0.30)), ("base", "rl", metrics_json(0.50, 0.80))]
    genlosses: list = []
    post_rl: dict[str, float] = {}
    for run, _subset, _n, _ep, _ds, _inst, post_sft, loss in RECIPES:
        post_rl[run] = 1.0 - 0.5 * loss + float(rng.normal(0, 0.005))
        evals.append((run, "sft", metrics_json(post_sft, post_rl[run] + 0.30)))
        evals.append((run, "rl", metrics_json(post_rl[run], min(post_rl[run] + 0.2, 1.0))))
        genlosses.append(
            (run, {"genloss": loss, "n_tokens": 5000, "n_examples": 200, "definition": "mean NLL"})
        )
    recipes = pd.DataFrame(
        [(r, s, n, e, 3e-3, ds, inst) for r, s, n, e, ds, inst, _sft, _loss in RECIPES],
        columns=list(tables.RECIPE_COLUMNS),
    )
    return evals, genlosses, recipes, post_rl


@pytest.fixture(scope="module")
def study() -> dict[str, Any]:
    evals, genlosses, recipes, post_rl = synthetic_study()
    tidy = tables.tidy_table(evals, genlosses)
    return {"evals": evals, "genlosses": genlosses, "recipes": recipes, "post_rl": post_rl, "tidy": tidy}


@pytest.fixture(scope="module")
def values(study: dict[str, Any]) -> pd.DataFrame:
    return predictors.predictor_values(study["tidy"], study["recipes"])


def lookup(tidy: pd.DataFrame, run: str, stage: str, benchmark: str, metric: str) -> float:
    rows = tidy[
        (tidy["run"] == run)
        & (tidy["stage"] == stage)
        & (tidy["benchmark"] == benchmark)
        & (tidy["metric"] == metric)
    ]
    assert len(rows) == 1, (run, stage, benchmark, metric)
    return float(rows["value"].iloc[0])


# ---- tidy table ------------------------------------------------------------------------------------------


def test_tidy_table_flattens_benchmarks_macro_status_and_ci(study: dict[str, Any]) -> None:
    tidy = study["tidy"]
    assert list(tidy.columns) == ["run", "stage", "benchmark", "metric", "value"]
    assert tidy["value"].dtype == float
    assert lookup(tidy, "ep1", "sft", "add", "avg@16") == pytest.approx(0.28)
    assert lookup(tidy, "ep1", "sft", "add", "avg@16_ci_lo") == pytest.approx(0.23)
    assert lookup(tidy, "ep1", "sft", "add", "avg@16_ci_hi") == pytest.approx(0.33)
    assert lookup(tidy, "ep1", "sft", "add", "status:correct") == round(0.28 * 1600)
    assert lookup(tidy, "ep1", "sft", "macro", "avg@16") == pytest.approx(0.30)
    assert lookup(tidy, "ep1", "sft", "heldout", "genloss") == pytest.approx(0.80)
    assert lookup(tidy, "ep1", "sft", "heldout", "genloss_n_tokens") == 5000
    assert not tidy["metric"].isin(["avg@16_ci", "status_counts", "definition"]).any()
    assert set(tidy["stage"]) == {"base", "sft", "rl"}


def test_tidy_table_is_sorted_and_independent_of_input_order(study: dict[str, Any]) -> None:
    evals, genlosses = list(study["evals"]), list(study["genlosses"])
    random.Random(1).shuffle(evals)
    random.Random(2).shuffle(genlosses)
    again = tables.tidy_table(evals, genlosses)
    pd.testing.assert_frame_equal(again, study["tidy"])
    keys = list(zip(again["run"], again["stage"], again["benchmark"], again["metric"], strict=True))
    assert keys == sorted(keys)


def test_tidy_table_rejects_unknown_stage_and_duplicates() -> None:
    with pytest.raises(QuagmireError, match="stage must be one of"):
        tables.tidy_table([("ep1", "dpo", metrics_json(0.3, 0.8))], [])
    with pytest.raises(QuagmireError, match="given twice"):
        tables.tidy_table([("ep1", "sft", metrics_json(0.3, 0.8))] * 2, [])
    with pytest.raises(QuagmireError, match="no 'benchmarks'"):
        tables.tidy_table([("ep1", "sft", {"macro": {}})], [])


def test_tidy_csv_round_trip_keeps_run_names_as_text(study: dict[str, Any], tmp_path: Any) -> None:
    tidy = pd.concat(
        [study["tidy"], pd.DataFrame([["NA", "sft", "macro", "avg@16", 0.1]], columns=tables.TIDY_COLUMNS)]
    )
    tidy.to_csv(tmp_path / "tidy.csv", index=False)
    back = tables.read_tidy(tmp_path / "tidy.csv")
    assert "NA" in set(back["run"])
    pd.testing.assert_frame_equal(back.reset_index(drop=True), tidy.reset_index(drop=True), check_dtype=False)


def test_read_recipes_accepts_text_flags_and_a_base_row(tmp_path: Any) -> None:
    path = tmp_path / "recipes.csv"
    path.write_text(
        "run,subset,n_unique,epochs,lr,dataset_level,instance_level\n"
        "base,,,,,,\n"
        "ep1,all,512,1,0.003,true,false\n"
        "mix,mix,256,2,0.003,0,1\n"
    )
    recipes = tables.read_recipes(path)
    assert list(recipes["dataset_level"]) == [False, True, False]
    assert list(recipes["instance_level"]) == [False, False, True]
    with pytest.raises(QuagmireError, match="dataset_level"):
        path.write_text(
            "run,subset,n_unique,epochs,lr,dataset_level,instance_level\nep1,all,1,1,0.1,maybe,0\n"
        )
        tables.read_recipes(path)


# ---- predictor values ------------------------------------------------------------------------------------


def test_predictor_values_reads_macro_scores_and_negates_the_loss(
    study: dict[str, Any], values: pd.DataFrame
) -> None:
    assert list(values["run"]) == [r[0] for r in RECIPES]  # recipe order, base excluded (it has no SFT stage)
    assert values.attrs == {"avg_metric": "avg@16", "k_large": 16}
    row = values.set_index("run").loc["ep2"]
    assert row["post_sft"] == pytest.approx(0.38)
    assert row["genloss"] == pytest.approx(0.95)
    assert row["neg_genloss"] == pytest.approx(-0.95)
    assert row["pass_at_k_large"] == pytest.approx(study["post_rl"]["ep2"] + 0.30)
    assert row["post_rl"] == pytest.approx(study["post_rl"]["ep2"])
    assert row["epochs"] == 2 and bool(row["dataset_level"]) and not bool(row["instance_level"])
    z = (values["neg_genloss"] - values["neg_genloss"].mean()) / values["neg_genloss"].std(ddof=0)
    zp = (values["pass_at_k_large"] - values["pass_at_k_large"].mean()) / values["pass_at_k_large"].std(
        ddof=0
    )
    np.testing.assert_allclose(values["avg_both"], (z + zp) / 2)


def test_predictor_values_skips_runs_without_rl_and_honours_k_large(study: dict[str, Any]) -> None:
    tidy = study["tidy"]
    no_rl = tidy[~((tidy["run"] == "mix") & (tidy["stage"] == "rl"))]
    values = predictors.predictor_values(no_rl, study["recipes"], k_large=4)
    assert "mix" not in set(values["run"]) and len(values) == len(RECIPES) - 1
    assert values.attrs["k_large"] == 4
    expected = lookup(tidy, "ep1", "sft", "macro", "pass@4")
    assert values.set_index("run").loc["ep1", "pass_at_k_large"] == pytest.approx(expected)


def test_predictor_values_errors_name_what_is_missing(study: dict[str, Any]) -> None:
    tidy, recipes = study["tidy"], study["recipes"]
    with pytest.raises(QuagmireError, match=r"pass@64.*k present: 1, 2, 4, 8, 16"):
        predictors.predictor_values(tidy, recipes, k_large=64)
    no_loss = tidy[~((tidy["run"] == "ep2") & (tidy["metric"] == "genloss"))]
    with pytest.raises(QuagmireError, match="ep2.*generalization loss"):
        predictors.predictor_values(no_loss, recipes)
    with pytest.raises(QuagmireError, match="ep1.*no row in the recipes"):
        predictors.predictor_values(tidy, recipes[recipes["run"] != "ep1"])
    mixed = tables.tidy_table(
        [("ep1", "sft", metrics_json(0.3, 0.8)), ("ep1", "rl", metrics_json(0.4, 0.8, n=32))], []
    )
    with pytest.raises(QuagmireError, match="avg@16, avg@32"):
        predictors.predictor_values(mixed, recipes)


# ---- fits ------------------------------------------------------------------------------------------------


def test_fit_predictor_recovers_an_exact_line() -> None:
    x = np.array([0.1, 0.4, 0.2, 0.9, 0.5])
    fit = predictors.fit_predictor(x, 2.0 * x + 1.0)
    assert fit["slope"] == pytest.approx(2.0) and fit["intercept"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1.0) and fit["pearson"] == pytest.approx(1.0)
    assert fit["spearman"] == pytest.approx(1.0) and fit["n"] == 5


def test_fit_predictor_recovers_a_noisy_slope_and_ignores_nan_pairs() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, 200)
    y = -0.7 * x + 0.2 + rng.normal(0, 0.02, 200)
    x[5] = np.nan
    fit = predictors.fit_predictor(x, y)
    assert fit["n"] == 199
    assert fit["slope"] == pytest.approx(-0.7, abs=0.02)
    assert 0.95 < fit["r2"] < 1.0 and fit["spearman"] < -0.95


def test_fit_predictor_gives_nan_not_errors_when_a_fit_is_meaningless() -> None:
    assert math.isnan(predictors.fit_predictor([1.0, 2.0], [3.0, 4.0])["r2"])
    constant = predictors.fit_predictor([1.0, 1.0, 1.0, 1.0], [0.1, 0.2, 0.3, 0.4])
    assert math.isnan(constant["slope"]) and math.isnan(constant["spearman"])


def test_lower_loss_higher_rl_gives_positive_spearman_for_neg_genloss(values: pd.DataFrame) -> None:
    dataset = predictors.values_at_level(values, "dataset")
    assert predictors.fit_predictor(dataset["genloss"], dataset["post_rl"])["spearman"] < 0
    assert predictors.fit_predictor(dataset["neg_genloss"], dataset["post_rl"])["spearman"] > 0.9


def test_split_r2_is_deterministic_given_a_seed() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=12)
    y = x + rng.normal(0, 0.3, 12)
    assert predictors.split_r2(x, y, seed=5) == predictors.split_r2(x, y, seed=5)
    assert predictors.split_r2(x, y, seed=5) != predictors.split_r2(x, y, seed=6)
    mean, std = predictors.split_r2(x, 3 * x - 1, n_splits=50)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_split_r2_is_nan_when_no_split_can_be_scored() -> None:
    assert all(math.isnan(v) for v in predictors.split_r2([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]))
    assert all(math.isnan(v) for v in predictors.split_r2([1.0] * 6, [1.0, 2, 3, 4, 5, 6]))
    mean, _ = predictors.split_r2([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0], n_splits=20)
    assert math.isfinite(mean)  # four points: fit on two, score on two


# ---- predictor quality -----------------------------------------------------------------------------------


def test_predictor_quality_levels_and_comparable_flags(values: pd.DataFrame) -> None:
    quality = predictors.predictor_quality(values, n_splits=50)
    assert list(quality.columns) == [
        "level", "predictor", "n_runs", "slope", "intercept", "r2",
        "r2_split_mean", "r2_split_std", "spearman", "pearson", "comparable",
    ]  # fmt: skip
    assert len(quality) == len(predictors.LEVELS) * len(predictors.PREDICTORS)
    flags = {(r.level, r.predictor): r.comparable for r in quality.itertuples()}
    assert all(flags[("dataset", p)] for p in predictors.PREDICTORS)
    for level in ("instance", "all"):
        assert flags[(level, "post_sft")] and flags[(level, "pass_at_k_large")]
        assert not flags[(level, "neg_genloss")] and not flags[(level, "avg_both")]
    n_runs = quality.groupby("level")["n_runs"].first()
    assert n_runs.to_dict() == {"all": 10, "dataset": 6, "instance": 4}


def test_generalization_loss_beats_the_sft_score_at_dataset_level(values: pd.DataFrame) -> None:
    quality = predictors.predictor_quality(values, levels=("dataset",), n_splits=50).set_index("predictor")
    assert quality.loc["neg_genloss", "spearman"] > 0.9 > 0.5 > quality.loc["post_sft", "spearman"]
    assert quality.loc["neg_genloss", "r2"] > 0.9 > 0.5 > quality.loc["post_sft", "r2"]
    assert quality.loc["neg_genloss", "r2_split_mean"] > quality.loc["post_sft", "r2_split_mean"]
    assert quality.loc["pass_at_k_large", "spearman"] > 0.9


def test_avg_both_is_zscored_within_each_level(values: pd.DataFrame) -> None:
    dataset = predictors.values_at_level(values, "dataset")
    assert dataset["avg_both"].mean() == pytest.approx(0.0, abs=1e-12)
    overall = values.set_index("run").loc[dataset["run"], "avg_both"].to_numpy()
    assert not np.allclose(dataset["avg_both"].to_numpy(), overall)
    quality = predictors.predictor_quality(values, levels=("dataset",), n_splits=10).set_index("predictor")
    direct = predictors.fit_predictor(dataset["avg_both"], dataset["post_rl"])
    assert quality.loc["avg_both", "slope"] == pytest.approx(direct["slope"])


def test_small_or_empty_levels_give_nan_statistics(values: pd.DataFrame) -> None:
    two_instance = values[~values["run"].isin(["random", "mix"])]
    quality = predictors.predictor_quality(two_instance, levels=("instance",), n_splits=10)
    assert (quality["n_runs"] == 2).all()
    assert quality[["slope", "r2", "r2_split_mean", "spearman", "pearson"]].isna().all().all()
    empty = predictors.predictor_quality(values[values["run"] == "none"], n_splits=10)
    assert (empty["n_runs"] == 0).all() and empty["r2"].isna().all()
    with pytest.raises(QuagmireError, match="unknown level 'paper'"):
        predictors.predictor_quality(values, levels=("paper",))


def test_passk_correlation_sweep_has_one_row_per_k(study: dict[str, Any]) -> None:
    sweep = predictors.passk_correlation_sweep(study["tidy"], study["recipes"])
    assert list(sweep.columns) == ["k", "spearman", "pearson", "n_runs"]
    assert list(sweep["k"]) == list(KS)
    assert (sweep["n_runs"] == len(RECIPES)).all()
    # pass@1 is the SFT score (uninformative here); pass@16 tracks the RL outcome
    assert sweep["spearman"].iloc[-1] > 0.9 > sweep["spearman"].iloc[0]
    dataset = predictors.passk_correlation_sweep(study["tidy"], study["recipes"], level="dataset")
    assert (dataset["n_runs"] == 6).all()
