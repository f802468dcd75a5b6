"""The paper's findings (a)-(e), checked on synthetic tables where each is reproduced, not reproduced or not
applicable; the margins from the bootstrap intervals; the Markdown and JSON the `findings` rule writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from quagmire.analysis import findings as fd
from quagmire.cli import main
from quagmire.errors import QuagmireError

BENCHMARKS = ("b1", "b2")
HALF = 0.02  # each benchmark's 95% half-width: a run's macro half-width is HALF/√2, a difference's margin HALF


def tidy_of(scores: dict[tuple[str, str], float], half: float | None = HALF) -> pd.DataFrame:
    """A tidy table where every benchmark of (run, stage) scores `score` with interval ± `half` (None: none)."""
    rows = []
    for (run, stage), score in scores.items():
        for bench in BENCHMARKS:
            rows.append((run, stage, bench, "avg@8", score))
            if half is not None:
                rows += [(run, stage, bench, "avg@8_ci_lo", score - half),
                         (run, stage, bench, "avg@8_ci_hi", score + half)]
        rows.append((run, stage, "macro", "avg@8", score))
    return pd.DataFrame(rows, columns=["run", "stage", "benchmark", "metric", "value"])


def recipes_of(*rows: tuple[str, str, int, int]) -> pd.DataFrame:
    """(run, subset, n_unique, epochs) rows at lr 1e-3; the run names are deliberately uninformative."""
    return pd.DataFrame(
        [{"run": run, "subset": subset, "n_unique": n, "epochs": ep, "lr": 1e-3, "dataset_level": True,
          "instance_level": False} for run, subset, n, ep in rows]
    )


def scored(values: dict[str, tuple[float, float]], base_rl: float | None = 0.1) -> dict[tuple[str, str], float]:
    """{run: (post-SFT, post-RL)} as tidy keys, plus the base model and (unless None) RL from it."""
    out = {("base", "base"): 0.0}
    if base_rl is not None:
        out[("base", "rl")] = base_rl
    for run, (sft, rl) in values.items():
        out[(run, "sft")], out[(run, "rl")] = sft, rl
    return out


# ---- scores and margins ----------------------------------------------------------------------------------------


def test_the_macro_half_width_combines_the_benchmark_intervals_and_the_margin_adds_two_runs() -> None:
    tidy = tidy_of(scored({"x": (0.3, 0.5), "y": (0.2, 0.4)}))
    scores = fd.headline_scores(tidy)
    assert scores.attrs["metric"] == "avg@8"
    assert scores.loc[("sft", "x"), "score"] == pytest.approx(0.3)
    assert scores.loc[("sft", "x"), "half_width"] == pytest.approx(HALF / math.sqrt(2))
    c = fd.compare(scores, "sft", "x", "y", {})
    assert c["difference"] == pytest.approx(0.1) and c["margin"] == pytest.approx(HALF) and c["outcome"] == "higher"
    assert fd.compare(scores, "rl", "y", "x", {})["outcome"] == "lower"


def test_a_benchmark_without_an_interval_leaves_the_margin_unknown_and_scores_are_compared_as_they_are() -> None:
    tidy = tidy_of(scored({"x": (0.3001, 0.5), "y": (0.3, 0.4)}))
    tidy = tidy[~((tidy["run"] == "x") & (tidy["benchmark"] == "b2") & tidy["metric"].str.contains("_ci_"))]
    scores = fd.headline_scores(tidy)
    assert math.isnan(scores.loc[("sft", "x"), "half_width"])
    assert not math.isnan(scores.loc[("sft", "y"), "half_width"])
    c = fd.compare(scores, "sft", "x", "y", {})
    assert math.isnan(c["margin"]) and c["outcome"] == "higher"  # 0.0001 ahead: a win at face value


# ---- (a) compute-matched pairs ---------------------------------------------------------------------------------

PAIR = recipes_of(("p", "random", 50, 2), ("q", "random", 100, 1), ("r", "random", 50, 1))


def test_a_reproduced_when_n_half_twice_beats_n_once_after_sft_and_rl() -> None:
    f = fd.claim_a(tidy_of(scored({"p": (0.30, 0.50), "q": (0.20, 0.40), "r": (0.1, 0.1)})), PAIR)
    assert f.verdict == fd.REPRODUCED
    assert [(c["stage"], c["run"], c["versus"], c["outcome"]) for c in f.numbers] == [
        ("sft", "p", "q", "higher"), ("rl", "p", "q", "higher")]
    assert f.numbers[1]["score"] == pytest.approx(0.5) and f.numbers[1]["versus_score"] == pytest.approx(0.4)
    assert "random 50 × 2 ep" in f.reason


def test_a_a_tie_within_the_margin_after_rl_is_not_reproduced() -> None:
    f = fd.claim_a(tidy_of(scored({"p": (0.30, 0.41), "q": (0.20, 0.40), "r": (0.1, 0.1)})), PAIR)
    assert f.verdict == fd.NOT_REPRODUCED
    assert [c["outcome"] for c in f.numbers] == ["higher", "tie"]
    assert "post-RL" in f.reason and "tie" in f.reason and "post-SFT" not in f.reason


def test_a_pairs_come_from_the_recipes_table_not_from_names() -> None:
    values = {"p": (0.30, 0.50), "q": (0.20, 0.40), "r": (0.1, 0.1)}
    other_subset = PAIR.assign(subset=["random", "shortest", "random"])
    f = fd.claim_a(tidy_of(scored(values)), other_subset)
    assert f.verdict == fd.NOT_APPLICABLE and f.numbers == []
    other_lr = PAIR.assign(lr=[1e-3, 2e-3, 1e-3])
    assert fd.claim_a(tidy_of(scored(values)), other_lr).verdict == fd.NOT_APPLICABLE
    no_rl = {k: v for k, v in scored(values).items() if k != ("q", "rl")}
    assert fd.claim_a(tidy_of(no_rl), PAIR).verdict == fd.NOT_APPLICABLE


# ---- (b) epoch series ------------------------------------------------------------------------------------------

SERIES = recipes_of(("e1", "random", 64, 1), ("e2", "random", 64, 2), ("e4", "random", 64, 4))


def test_b_reproduced_when_sft_keeps_rising_and_rl_stalls_within_the_tolerance() -> None:
    f = fd.claim_b(tidy_of(scored({"e1": (0.1, 0.3), "e2": (0.2, 0.5), "e4": (0.3, 0.51)})), SERIES)
    assert f.verdict == fd.REPRODUCED
    steps = [(c["stage"], c["run"], c["versus"], c["outcome"]) for c in f.numbers]
    assert steps == [("sft", "e2", "e1", "higher"), ("sft", "e4", "e2", "higher"),
                     ("rl", "e2", "e1", "higher"), ("rl", "e4", "e2", "tie")]
    assert {c["series"] for c in f.numbers} == {"random 64"}


def test_b_a_post_rl_fall_at_the_last_step_reproduces_it_too() -> None:
    f = fd.claim_b(tidy_of(scored({"e1": (0.1, 0.3), "e2": (0.2, 0.5), "e4": (0.3, 0.4)})), SERIES)
    assert f.verdict == fd.REPRODUCED and f.numbers[-1]["outcome"] == "lower"


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"e1": (0.1, 0.3), "e2": (0.2, 0.4), "e4": (0.3, 0.5)}, "post-RL still rises"),
        ({"e1": (0.1, 0.3), "e2": (0.25, 0.5), "e4": (0.2, 0.5)}, "post-SFT does not rise"),
        ({"e1": (0.1, 0.3), "e2": (0.2, 0.5), "e4": (0.21, 0.5)}, "last step is within the margin"),
    ],
)
def test_b_not_reproduced_with_the_reason(values: dict, why: str) -> None:
    f = fd.claim_b(tidy_of(scored(values)), SERIES)
    assert f.verdict == fd.NOT_REPRODUCED and why in f.reason and "1 of 1 series" in f.reason


def test_b_not_applicable_on_the_smoke_grid_which_has_no_three_epoch_series() -> None:
    smoke = recipes_of(("random_n64_ep1", "random", 64, 1), ("random_n64_ep2", "random", 64, 2),
                       ("random_n128_ep1", "random", 128, 1), ("shortest_n64_ep1", "shortest", 64, 1))
    values = {run: (0.1, 0.2) for run in smoke["run"]}
    f = fd.claim_b(tidy_of(scored(values)), smoke)
    assert f.verdict == fd.NOT_APPLICABLE and f.numbers == []
    assert "random 64 (lr 0.001): 1, 2 ep" in f.reason


# ---- (c) shortest against random and mix -----------------------------------------------------------------------

LENGTHS = recipes_of(("s", "shortest", 64, 2), ("r", "random", 64, 2), ("m", "mix", 64, 2),
                     ("l", "longest", 64, 2), ("r1", "random", 64, 1))


def test_c_reproduced_when_shortest_is_higher_after_sft_and_lower_after_rl_than_each_partner() -> None:
    values = {"s": (0.4, 0.2), "r": (0.2, 0.4), "m": (0.25, 0.35), "l": (0.0, 0.0), "r1": (0.9, 0.0)}
    f = fd.claim_c(tidy_of(scored(values)), LENGTHS)
    assert f.verdict == fd.REPRODUCED
    assert {(c["stage"], c["versus"], c["outcome"]) for c in f.numbers} == {
        ("sft", "r", "higher"), ("rl", "r", "lower"), ("sft", "m", "higher"), ("rl", "m", "lower")}


def test_c_not_reproduced_when_shortest_also_wins_after_rl() -> None:
    values = {"s": (0.4, 0.5), "r": (0.2, 0.4), "m": (0.25, 0.35), "l": (0.0, 0.0), "r1": (0.0, 0.0)}
    f = fd.claim_c(tidy_of(scored(values)), LENGTHS)
    assert f.verdict == fd.NOT_REPRODUCED and "post-RL" in f.reason and "higher" in f.reason


def test_c_not_applicable_without_a_partner_of_the_same_n_and_epochs() -> None:
    grid = recipes_of(("s", "shortest", 64, 2), ("r", "random", 64, 1), ("m", "mix", 128, 2))
    f = fd.claim_c(tidy_of(scored({"s": (0.4, 0.2), "r": (0.2, 0.4), "m": (0.2, 0.4)})), grid)
    assert f.verdict == fd.NOT_APPLICABLE


# ---- (d) RL after SFT against RL from the base model -----------------------------------------------------------

GRID = recipes_of(("x", "random", 64, 1), ("y", "random", 64, 2))


def test_d_reproduced_when_some_sft_rl_run_ends_below_base_rl() -> None:
    f = fd.claim_d(tidy_of(scored({"x": (0.2, 0.05), "y": (0.3, 0.4)}, base_rl=0.1)), GRID)
    assert f.verdict == fd.REPRODUCED and "1 of 2" in f.reason
    assert [(c["run"], c["versus"], c["outcome"]) for c in f.numbers] == [("x", "base", "lower"),
                                                                          ("y", "base", "higher")]


def test_d_a_tie_with_base_rl_is_not_reproduced() -> None:
    f = fd.claim_d(tidy_of(scored({"x": (0.2, 0.09), "y": (0.3, 0.4)}, base_rl=0.1)), GRID)
    assert f.verdict == fd.NOT_REPRODUCED and "1 within the margin" in f.reason


def test_d_not_applicable_without_rl_from_the_base_model() -> None:
    f = fd.claim_d(tidy_of(scored({"x": (0.2, 0.05), "y": (0.3, 0.4)}, base_rl=None)), GRID)
    assert f.verdict == fd.NOT_APPLICABLE and "from_base" in f.reason


# ---- (e) predictors --------------------------------------------------------------------------------------------


def predictors_of(cells: dict[tuple[str, str], tuple[float, float]]) -> pd.DataFrame:
    """{(level, predictor): (split R², ρ)}; a loss across subsets (instance, all) is not comparable, as in
    predictors.csv."""
    rows = []
    for (level, predictor), (r2, rho) in cells.items():
        comparable = not (level != "dataset" and predictor == "neg_genloss")
        rows.append({"level": level, "predictor": predictor, "n_runs": 5, "r2": r2 + 0.5, "r2_split_mean": r2,
                     "spearman": rho, "comparable": comparable})
    return pd.DataFrame(rows)


def test_e_reproduced_when_loss_and_pass_at_k_gain_on_split_r2_and_rho() -> None:
    table = predictors_of({
        ("dataset", "post_sft"): (0.2, 0.6), ("dataset", "neg_genloss"): (0.7, 0.9),
        ("dataset", "pass_at_k_large"): (0.6, 0.8), ("instance", "post_sft"): (0.1, 0.5),
        ("instance", "neg_genloss"): (-5.0, -0.5), ("instance", "pass_at_k_large"): (0.5, 0.9),
        ("all", "post_sft"): (0.9, 0.9), ("all", "pass_at_k_large"): (0.1, 0.1),  # shown, not judged
    })
    f = fd.claim_e(table)
    assert f.verdict == fd.REPRODUCED and "all 3 judged" in f.reason
    by_cell = {(r["level"], r["predictor"]): r for r in f.numbers}
    assert by_cell[("dataset", "neg_genloss")]["r2_split_gain"] == pytest.approx(0.5)
    assert by_cell[("dataset", "neg_genloss")]["spearman_gain"] == pytest.approx(0.3)
    assert not by_cell[("instance", "neg_genloss")]["judged"]  # a loss across subsets is not comparable
    assert not by_cell[("all", "pass_at_k_large")]["judged"]


def test_e_a_tie_on_rho_is_no_gain() -> None:
    table = predictors_of({("dataset", "post_sft"): (0.2, 1.0), ("dataset", "neg_genloss"): (0.7, 1.0),
                           ("dataset", "pass_at_k_large"): (0.6, 1.0)})
    f = fd.claim_e(table)
    assert f.verdict == fd.NOT_REPRODUCED and "2 of 2" in f.reason and "Δ +0.00" in f.reason


def test_e_not_applicable_when_no_fit_is_defined() -> None:
    nan = float("nan")
    table = predictors_of({("dataset", "post_sft"): (nan, nan), ("dataset", "neg_genloss"): (nan, nan),
                           ("dataset", "pass_at_k_large"): (nan, nan)})
    f = fd.claim_e(table)
    assert f.verdict == fd.NOT_APPLICABLE and len(f.numbers) == 2
    assert f.as_dict()["numbers"][0]["r2_split"] is None  # NaN becomes null


def test_e_names_a_missing_column() -> None:
    with pytest.raises(QuagmireError, match="spearman"):
        fd.claim_e(pd.DataFrame({"level": ["dataset"], "predictor": ["post_sft"], "n_runs": [3], "r2": [0.1],
                                 "r2_split_mean": [0.1], "comparable": [True]}))


# ---- the written files and the CLI -----------------------------------------------------------------------------


def _write_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    recipes = recipes_of(("p", "random", 50, 2), ("q", "random", 100, 1))
    tidy = tidy_of(scored({"p": (0.3, 0.5), "q": (0.2, 0.4)}, base_rl=0.45))
    table = predictors_of({("dataset", "post_sft"): (0.2, 0.6), ("dataset", "pass_at_k_large"): (0.6, 0.8)})
    paths = tmp_path / "tidy.csv", tmp_path / "recipes.csv", tmp_path / "predictors.csv"
    for frame, path in zip((tidy, recipes, table), paths, strict=True):
        frame.to_csv(path, index=False)
    return paths


def test_the_cli_writes_markdown_and_json_with_every_verdict(tmp_path: Path) -> None:
    tidy, recipes, table = _write_inputs(tmp_path)
    md, js = tmp_path / "out" / "findings.md", tmp_path / "out" / "findings.json"
    assert main(["findings", "--tidy", str(tidy), "--recipes", str(recipes), "--predictors", str(table),
                 "--out-md", str(md), "--out-json", str(js)]) == 0
    record = json.loads(js.read_text())
    assert record["metric"] == "avg@8"
    verdicts = {f["claim"]: f["verdict"] for f in record["findings"]}
    assert verdicts == {"a": fd.REPRODUCED, "b": fd.NOT_APPLICABLE, "c": fd.NOT_APPLICABLE,
                        "d": fd.REPRODUCED, "e": fd.REPRODUCED}
    assert record["findings"][0]["numbers"][0]["run"] == "p" and record["findings"][0]["check"]
    text = md.read_text()
    assert text.startswith("# Paper findings, checked\n") and "macro avg@8" in text
    assert "| claim | the paper says | verdict | why |" in text
    for claim in "abcde":
        assert f"| ({claim}) |" in text and f"## ({claim}) " in text
    assert "**not applicable**" in text and "- post-RL random 100 × 1 ep 0.400 vs base model 0.450" in text


def test_a_missing_predictors_table_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tidy, recipes, _ = _write_inputs(tmp_path)
    md = tmp_path / "findings.md"
    assert main(["findings", "--tidy", str(tidy), "--recipes", str(recipes), "--predictors",
                 str(tmp_path / "none.csv"), "--out-md", str(md), "--out-json", str(tmp_path / "f.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "predictors table not found" in err[0]
    assert not md.exists()
