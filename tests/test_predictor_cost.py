"""The predictor cost table on a synthetic study: subsampled pass@k, seeded draws, rows that cannot be had and why,
the early-RL saturating fit, the compute column, and `quagmire predictor-cost` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quagmire.analysis import predictor_cost as pc
from quagmire.analysis.predictors import predictor_quality, predictor_values
from quagmire.cli import main
from quagmire.errors import QuagmireError
from quagmire.eval.metrics import score

N = 8  # samples drawn per problem
PROBLEMS = {"b1": 12, "b2": 9}
RUNS = {"r0": 0.1, "r1": 0.25, "r2": 0.4, "r3": 0.55, "r4": 0.7}  # each run's per-sample accuracy
STEPS, LOG_EVERY = 40, 2
SETTINGS = {
    "k_large": None, "n_splits": 50, "cost_sample_sizes": [4, 8, 16], "cost_draws": 3,
    "early_rl_fractions": [0.1, 0.25], "seed": 7, "prompts_per_step": 4, "group_size": 8, "format_reward": 0.0,
}  # fmt: skip


def grades_of(accuracy: float, benchmark: str, seed: int) -> pd.DataFrame:
    """One grades table: each problem's own accuracy around `accuracy`, N samples each."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(PROBLEMS[benchmark]):
        p_correct = float(np.clip(accuracy + rng.normal(0, 0.2), 0, 1))
        for s in range(N):
            ok = bool(rng.random() < p_correct)
            rows.append({"problem_id": f"{benchmark}-{p}", "sample_idx": s, "extracted": "1" if ok else "2",
                         "status": "correct" if ok else "incorrect", "correct": ok})  # fmt: skip
    return pd.DataFrame(rows)


def rewards(asymptote: float, tau: float = 8.0) -> list[dict[str, float]]:
    return [{"step": t, "reward": asymptote - 0.8 * asymptote * math.exp(-t / tau)} for t in range(2, STEPS + 1, 2)]


@pytest.fixture(scope="module")
def study() -> dict:
    grades = {run: {b: grades_of(acc, b, i * 10 + j) for j, b in enumerate(PROBLEMS)} for i, (run, acc) in
              enumerate(RUNS.items())}  # fmt: skip
    rows = []
    for i, run in enumerate(RUNS):
        macro = score(grades[run])["macro"]
        rows += [(run, "sft", "macro", metric, value) for metric, value in macro.items()]
        post_rl = 0.2 + 0.6 * macro["pass@8"] + 0.02 * (-1) ** i
        rows += [(run, "rl", "macro", "avg@8", post_rl), (run, "sft", "heldout", "genloss", 1.0 - macro["avg@8"]),
                 (run, "sft", "heldout", "genloss_n_examples", 64.0)]  # fmt: skip
    tidy = pd.DataFrame(rows, columns=["run", "stage", "benchmark", "metric", "value"])
    recipes = pd.DataFrame([{"run": r, "subset": "random", "n_unique": 100 * (i + 1), "epochs": 1, "lr": 1e-3,
                             "dataset_level": True, "instance_level": i % 2 == 0}
                            for i, r in enumerate(RUNS)])  # fmt: skip
    post_rl = tidy[(tidy["stage"] == "rl")].set_index("run")["value"]
    stats = {run: {"global_steps": STEPS, "history": rewards(float(post_rl[run]))} for run in RUNS}
    return {"tidy": tidy, "recipes": recipes, "grades": grades, "stats": stats}


def table(study: dict, **settings) -> pd.DataFrame:
    return pc.predictor_cost(study["tidy"], study["recipes"], study["grades"], study["stats"], {**SETTINGS, **settings})


def row(frame: pd.DataFrame, predictor: str, level: str = "all") -> pd.Series:
    return frame[(frame["level"] == level) & (frame["predictor"] == predictor)].iloc[0]


# ---- subsampled pass@k ------------------------------------------------------------------------------------------


def test_subsampling_all_n_samples_gives_the_full_pass_at_k_of_the_tidy_table(study) -> None:
    run = "r2"
    matrices = {b: pc.correct_matrix(g) for b, g in study["grades"][run].items()}
    full = pc.macro_subsampled_pass_at_k(matrices, N, N, draws=3, seed=1)
    tidy = study["tidy"]
    expected = tidy[(tidy["run"] == run) & (tidy["stage"] == "sft") & (tidy["metric"] == "pass@8")]["value"].item()
    assert full == pytest.approx([expected] * 3, abs=1e-12)
    frame = table(study)
    sub, whole = row(frame, "pass_at_k_large_n8"), row(frame, "pass_at_k_large")
    assert sub["k"] == whole["k"] == N
    for column in ("r2_split_mean", "r2_split_std", "spearman"):
        assert sub[column] == pytest.approx(whole[column], abs=1e-12)
    assert sub["spearman_draw_std"] == pytest.approx(0.0, abs=1e-12)


def test_the_full_n_rows_match_the_predictors_table(study) -> None:
    values = predictor_values(study["tidy"], study["recipes"])
    quality = predictor_quality(values, n_splits=SETTINGS["n_splits"], seed=SETTINGS["seed"]).set_index(
        ["level", "predictor"])
    frame = table(study)
    for level in ("all", "dataset", "instance"):
        for name in ("post_sft", "pass_at_k_large", "neg_genloss", "avg_both"):
            got, want = row(frame, name, level), quality.loc[(level, name)]
            assert got["spearman"] == pytest.approx(want["spearman"], nan_ok=True)
            assert got["r2_split_mean"] == pytest.approx(want["r2_split_mean"], nan_ok=True)


def test_draws_are_seeded_reproducible_and_differ_from_each_other(study) -> None:
    matrices = {b: pc.correct_matrix(g) for b, g in study["grades"]["r1"].items()}
    a = pc.macro_subsampled_pass_at_k(matrices, 4, 4, draws=4, seed=3)
    b = pc.macro_subsampled_pass_at_k(matrices, 4, 4, draws=4, seed=3)
    c = pc.macro_subsampled_pass_at_k(matrices, 4, 4, draws=4, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.ptp(a) > 0  # a subsample of 4 of 8 samples varies from draw to draw
    pd.testing.assert_frame_equal(table(study), table(study))
    assert row(table(study), "pass_at_k_large_n4")["draws"] == SETTINGS["cost_draws"]


def test_k_for_a_subsample_follows_the_studys_rule() -> None:
    assert pc.subsample_k(16, None) == 16  # the largest k measured: n' itself
    assert pc.subsample_k(16, 8) == 8 and pc.subsample_k(4, 8) == 4  # k_large, capped at n'
    with pytest.raises(QuagmireError, match="not defined"):
        pc.subsampled_pass_at_k(np.ones((2, 4), bool), 8, 8, np.random.default_rng(0))


def test_gold_invalid_problems_are_left_out_as_scoring_leaves_them_out() -> None:
    grades = grades_of(0.5, "b1", 0)
    grades.loc[grades["problem_id"] == "b1-0", "status"] = "gold_invalid"
    assert pc.correct_matrix(grades).shape == (PROBLEMS["b1"] - 1, N)


# ---- rows that cannot be had --------------------------------------------------------------------------------------


def test_unavailable_rows_say_why(study) -> None:
    frame = table(study)
    big = row(frame, "pass_at_k_large_n16")
    assert not big["available"] and big["why_not"] == f"not available: n = {N} drawn"
    assert math.isnan(big["spearman"]) and math.isnan(big["r2_split_mean"])
    loss = row(frame, "neg_min_genloss_along_sft")
    assert not loss["available"] and loss["why_not"] == pc.LOSS_ALONG_SFT_MISSING
    early = row(frame, "early_rl_10pct")  # 10% of 40 steps: steps 2 and 4 logged, 2 points
    assert not early["available"] and "2 logged reward point(s)" in early["why_not"] and "need 3" in early["why_not"]
    assert row(frame, "early_rl_25pct")["available"]  # 25%: steps 2..10, 5 points
    md = pc.cost_markdown(frame, SETTINGS)
    assert "not available: n = 8 drawn" in md and pc.LOSS_ALONG_SFT_MISSING in md


def test_a_loss_along_sft_table_fills_its_row(study) -> None:
    post_rl = study["tidy"][study["tidy"]["stage"] == "rl"].set_index("run")["value"]  # a loss that ranks as RL
    loss = pd.DataFrame([{"run": r, "step": s, "genloss": 2.0 - post_rl[r] + 0.1 * (s - 2) ** 2} for r in RUNS
                         for s in (1, 2, 3)])  # fmt: skip
    frame = pc.predictor_cost(study["tidy"], study["recipes"], study["grades"], study["stats"], SETTINGS,
                              loss_along_sft=loss)  # fmt: skip
    got = row(frame, "neg_min_genloss_along_sft")
    assert got["available"] and got["sft_checkpoints"] == 3 and got["spearman"] == pytest.approx(1.0)
    with pytest.raises(QuagmireError, match="no checkpoint of run"):
        pc.predictor_cost(study["tidy"], study["recipes"], study["grades"], study["stats"], SETTINGS,
                          loss_along_sft=loss[loss["run"] != "r0"])  # fmt: skip


# ---- early-RL extrapolation ---------------------------------------------------------------------------------------


def test_the_saturating_fit_recovers_the_asymptote_from_the_first_quarter() -> None:
    t = np.arange(5, 101, 5, dtype=float)
    r = 0.6 - 0.5 * np.exp(-t / 20.0)
    window = t <= 25
    fit = pc.fit_saturating(t[window], r[window], 100.0)
    assert fit.a == pytest.approx(0.6, abs=2e-3) and fit.tau == pytest.approx(20.0, rel=0.02)
    assert fit.predicted == pytest.approx(0.6 - 0.5 * math.exp(-5), abs=2e-3)
    assert pc.fit_saturating(t[window], r[window], 100.0) == fit  # deterministic


def test_the_fit_is_bounded_and_flat_rewards_predict_their_mean() -> None:
    flat = pc.fit_saturating([2, 4, 6], [0.0, 0.0, 0.0], 40)
    assert flat.flat and flat.predicted == 0.0
    assert pc.fit_saturating([2, 4, 6], [0.3, 0.3, 0.3], 40).predicted == pytest.approx(0.3)
    steep = pc.fit_saturating([1, 2, 3], [0.1, 0.5, 0.9], 1000)  # linear growth would pass 1 by far
    assert 0.9 <= steep.predicted <= 1.0 and steep.a <= 1.0
    with pytest.raises(QuagmireError, match="at least 3"):
        pc.fit_saturating([1, 2], [0.1, 0.2], 10)


def test_the_early_rl_row_predicts_post_rl_when_rewards_saturate_toward_it(study) -> None:
    got = row(table(study), "early_rl_25pct")
    assert got["spearman"] == pytest.approx(1.0) and got["r2_split_mean"] > 0.99


# ---- compute ------------------------------------------------------------------------------------------------------


def test_the_compute_column_counts_samples_checkpoints_and_rl_completions(study) -> None:
    frame = table(study)
    problems = sum(PROBLEMS.values())
    assert row(frame, "post_sft")["samples"] == problems * N
    assert row(frame, "pass_at_k_large_n4")["samples"] == problems * 4
    assert row(frame, "pass_at_k_large_n16")["samples"] == problems * 16  # what it would cost
    assert row(frame, "neg_genloss")[["samples", "sft_checkpoints", "heldout_examples"]].tolist() == [0, 1, 64]
    early = row(frame, "early_rl_25pct")
    assert early["rl_steps"] == 10 and early["rl_completions"] == 10 * 4 * 8 and early["samples"] == 0
    assert row(frame, "early_rl_10pct")["rl_steps"] == 4
    ref = row(frame, "post_rl")
    assert ref["rl_steps"] == STEPS and ref["rl_completions"] == STEPS * 32 and math.isnan(ref["spearman"])
    assert set(frame["level"]) == {"all", "dataset", "instance"}


# ---- the CLI -------------------------------------------------------------------------------------------------------


def test_cli_end_to_end_on_files(study, tmp_path: Path) -> None:
    study["tidy"].to_csv(tmp_path / "tidy.csv", index=False)
    study["recipes"].to_csv(tmp_path / "recipes.csv", index=False)
    grades, rl = [], []
    for run, per in study["grades"].items():
        for bench, frame in per.items():
            path = tmp_path / "eval" / run / f"{bench}.grades.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(path)
            grades.append(f"{run}/{bench}={path}")
        folder = tmp_path / "rl" / run
        folder.mkdir(parents=True)
        (folder / "train_stats.json").write_text(json.dumps(study["stats"][run]))
        rl.append(f"{run}={folder}")
    out, md = tmp_path / "tables" / "predictor_cost.csv", tmp_path / "tables" / "predictor_cost.md"
    main(["predictor-cost", "--tidy", str(tmp_path / "tidy.csv"), "--recipes", str(tmp_path / "recipes.csv"),
          "--grades", *grades, "--rl", *rl, "--settings", json.dumps(SETTINGS), "--out", str(out),
          "--out-md", str(md)])  # fmt: skip
    written = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(written.columns) == list(pc.COLUMNS)
    pd.testing.assert_series_equal(written["spearman"], table(study)["spearman"], check_exact=False)
    assert md.read_text().startswith("# What each predictor costs")
    assert Path(f"{out}.manifest.json").exists()
    code = main(["predictor-cost", "--tidy", str(tmp_path / "tidy.csv"), "--recipes", str(tmp_path / "recipes.csv"),
              "--grades", "r0=x.parquet", "--rl", *rl, "--settings", json.dumps(SETTINGS), "--out", str(out),
              "--out-md", str(md)])  # fmt: skip
    assert code == 2  # one clear line on stderr, no traceback
