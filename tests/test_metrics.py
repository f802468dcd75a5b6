"""pass@k, avg@n, maj@n and the bootstrap interval behave as the paper's definitions say."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from quagmire.errors import QuagmireError
from quagmire.eval.metrics import (
    benchmark_metrics,
    bootstrap_ci,
    grading_report,
    ks_for,
    maj_at_n,
    pass_at_k,
    report_markdown,
    score,
    score_to_file,
)
from quagmire.verify_pool import STATUSES


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """The definition itself, in exact rational arithmetic."""
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def make_grades(
    correct_by_problem: dict[str, list[bool]], extracted: dict[str, list[str | None]] | None = None
) -> pd.DataFrame:
    """A grades table from per-problem correctness lists (extracted answers default to '1'/'0')."""
    rows = []
    for pid, flags in correct_by_problem.items():
        answers = extracted[pid] if extracted else ["1" if f else "0" for f in flags]
        for idx, (flag, answer) in enumerate(zip(flags, answers, strict=True)):
            status = "correct" if flag else ("incorrect" if answer is not None else "no_answer")
            rows.append((pid, idx, answer, status, flag))
    return pd.DataFrame(rows, columns=["problem_id", "sample_idx", "extracted", "status", "correct"])


def test_pass_at_k_matches_exact_fractions():
    cases = [(n, c, k) for n in (1, 2, 5, 16) for c in range(n + 1) for k in range(1, n + 1)]
    cases += [(1024, 1, 1), (1024, 1, 512), (1024, 3, 1000), (1024, 500, 64), (1024, 1023, 2), (256, 17, 64)]
    n, c, k_cases = (np.array(col) for col in zip(*cases, strict=True))
    for k in sorted(set(k_cases.tolist())):
        rows = k_cases == k
        got = pass_at_k(n[rows], c[rows], int(k))
        want = [float(exact_pass_at_k(int(a), int(b), int(k))) for a, b in zip(n[rows], c[rows], strict=True)]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_pass_at_1_is_the_fraction_correct_and_pass_at_n_is_any_correct():
    n = np.full(6, 8)
    c = np.array([0, 1, 2, 4, 7, 8])
    np.testing.assert_allclose(pass_at_k(n, c, 1), c / n, rtol=1e-15)
    np.testing.assert_array_equal(pass_at_k(n, c, 8), (c > 0).astype(float))


def test_pass_at_k_grows_with_k():
    rng = np.random.default_rng(1)
    n = np.full(200, 64)
    c = rng.integers(0, 65, size=200)
    curves = np.stack([pass_at_k(n, c, k) for k in range(1, 65)])
    assert np.all(np.diff(curves, axis=0) >= -1e-12)


def test_vectorized_pass_at_k_equals_a_plain_loop():
    rng = np.random.default_rng(2)
    n = np.full(1000, 256)
    c = rng.integers(0, 257, size=1000)
    for k in (1, 16, 64, 256):
        loop = [1.0 - math.comb(256 - ci, k) / math.comb(256, k) for ci in c.tolist()]
        np.testing.assert_allclose(pass_at_k(n, c, k), loop, rtol=1e-12, atol=1e-15)


def test_pass_at_k_refuses_k_above_n():
    with pytest.raises(QuagmireError, match="pass@9"):
        pass_at_k(np.array([8]), np.array([3]), 9)


def test_ks_are_powers_of_two_plus_n_plus_extras():
    assert ks_for(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert ks_for(12, extra=(3, 12, 40)) == [1, 2, 3, 4, 8, 12]
    assert ks_for(1) == [1]


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_problems():
    rng = np.random.default_rng(3)
    small = rng.random(30)
    large = rng.random(3000)
    lo_s, hi_s = bootstrap_ci(small, seed=0)
    lo_l, hi_l = bootstrap_ci(large, seed=0)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3
    assert bootstrap_ci(small, seed=0) == (lo_s, hi_s)  # seeded: the same interval every run


def test_majority_vote_ignores_missing_answers_and_breaks_ties_by_first_sample():
    grades = make_grades(
        {
            "p0": [False, True, True, False],  # "7" twice beats "5" once
            "p1": [False, False, True, True],  # "3" vs "4" tie: "3" came first, and it is wrong
            "p2": [False, False, False, False],  # no answer at all
            "p3": [False, True, False, False],  # one vote for the right answer beats three Nones
        },
        extracted={
            "p0": ["5", "7", "7", None],
            "p1": ["3", "3", "4", "4"],
            "p2": [None, None, None, None],
            "p3": [None, "9", None, None],
        },
    )
    assert maj_at_n(grades) == pytest.approx(2 / 4)
    assert maj_at_n(grades.sample(frac=1, random_state=0)) == pytest.approx(2 / 4)  # row order is irrelevant


def test_unparseable_gold_is_excluded_from_denominators_but_counted():
    grades = make_grades({"a": [True, False], "b": [False, False], "bad": [False, False]})
    grades.loc[grades.problem_id == "bad", ["status", "extracted"]] = ["gold_invalid", "x"]
    metrics = benchmark_metrics(grades, n_boot=200)
    assert metrics["n_problems"] == 2
    assert metrics["n_gold_invalid_problems"] == 1
    assert metrics["avg@2"] == pytest.approx(0.25)
    assert metrics["pass@2"] == pytest.approx(0.5)
    assert metrics["maj@2"] == pytest.approx(0.5)  # "a" ties 1 vs 0 and the first answer is correct
    assert metrics["status_counts"]["gold_invalid"] == 2


def test_benchmark_metrics_hold_every_key_as_plain_json():
    rng = np.random.default_rng(4)
    grades = make_grades({f"p{i}": list(rng.random(8) < 0.3) for i in range(20)})
    grades.loc[3, "status"] = "timeout"
    metrics = benchmark_metrics(grades, extra_ks=(3,), n_boot=200)
    assert set(metrics) == {
        "n_problems", "n_samples", "n_gold_invalid_problems", "avg@8", "pass@1", "pass@2", "pass@3",
        "pass@4", "pass@8", "maj@8", "status_counts", "avg@8_ci",
    }  # fmt: skip
    assert metrics["pass@1"] == pytest.approx(metrics["avg@8"])
    assert metrics["avg@8"] == pytest.approx(grades["correct"].mean())
    assert list(metrics["status_counts"]) == list(STATUSES)
    assert sum(metrics["status_counts"].values()) == len(grades)
    lo, hi = metrics["avg@8_ci"]
    assert lo <= metrics["avg@8"] <= hi
    assert json.loads(json.dumps(metrics)) == metrics


def test_unequal_samples_per_problem_raise():
    grades = make_grades({"a": [True, False], "b": [True, False, True]})
    with pytest.raises(QuagmireError, match="same number of samples"):
        benchmark_metrics(grades)


def test_macro_scores_weigh_each_benchmark_equally():
    easy = make_grades({f"e{i}": [True, True, True, False] for i in range(10)})
    hard = make_grades({"h0": [False, False, False, False], "h1": [True, False, False, False]})
    result = score({"easy": easy, "hard": hard}, n_boot=100)
    assert result["n"] == 4
    assert set(result["benchmarks"]) == {"easy", "hard"}
    assert result["macro"]["avg@4"] == pytest.approx((0.75 + 0.125) / 2)
    assert result["macro"]["pass@4"] == pytest.approx((1.0 + 0.5) / 2)
    assert set(result["macro"]) == {"avg@4", "pass@1", "pass@2", "pass@4", "maj@4"}
    json.dumps(result)


def test_benchmarks_with_different_n_cannot_be_macro_averaged():
    with pytest.raises(QuagmireError, match="same samples per problem"):
        score({"a": make_grades({"p": [True, False]}), "b": make_grades({"p": [True, False, False, True]})})


def test_pass_at_ks_with_mixed_sample_counts_matches_exact_fractions() -> None:
    from fractions import Fraction
    from math import comb

    from quagmire.eval.metrics import pass_at_ks

    rng = np.random.default_rng(3)
    n = rng.choice([8, 16, 33], size=60)
    c = rng.integers(0, n + 1)
    got = pass_at_ks(n, c, [1, 3, 8])
    for k, values in got.items():
        for ni, ci, v in zip(n, c, values, strict=True):
            exact = 1 - Fraction(comb(int(ni - ci), k), comb(int(ni), k))
            assert abs(v - float(exact)) < 1e-12


# --------------------------------------------------------------------------- grading report


def _report_grades(statuses: list[str], n_boxes: list[int], finish: list[str | None]) -> pd.DataFrame:
    """A grades table of one problem per two samples with the report's extra columns."""
    rows = [
        (f"p{i // 2}", i % 2, None if s == "no_answer" else "1", s, s == "correct", b, f)
        for i, (s, b, f) in enumerate(zip(statuses, n_boxes, finish, strict=True))
    ]
    columns = ["problem_id", "sample_idx", "extracted", "status", "correct", "n_boxes", "finish_reason"]
    return pd.DataFrame(rows, columns=columns)


def test_grading_report_counts_statuses_and_shares_per_benchmark_and_macro() -> None:
    mixed = _report_grades(
        ["correct", "incorrect", "no_answer", "timeout", "gold_invalid", "gold_invalid", "correct", "no_answer"],
        [1, 3, 0, 1, 1, 1, 2, 0],
        ["stop", "stop", "length", "stop", "stop", "stop", "stop", "length"],
    )
    all_cut = _report_grades(["no_answer"] * 4, [0, 0, 0, 1], ["length"] * 4)
    report = grading_report({"mixed": mixed, "cut": all_cut})
    entry = report["benchmarks"]["mixed"]
    assert entry["n_completions"] == 8 and entry["n_problems"] == 4 and entry["n_gold_invalid_problems"] == 1
    assert entry["status_counts"] == {"correct": 2, "incorrect": 1, "no_answer": 2, "timeout": 1, "gold_invalid": 2}
    assert (entry["no_box"], entry["several_boxes"], entry["truncated"]) == (2, 2, 2)
    assert entry["share_no_box"] == entry["share_several_boxes"] == entry["share_truncated"] == pytest.approx(0.25)
    cut = report["benchmarks"]["cut"]
    assert cut["share_truncated"] == 1.0 and cut["share_no_box"] == 0.75 and cut["share_several_boxes"] == 0.0
    assert cut["status_counts"]["no_answer"] == 4
    assert report["macro"]["share_truncated"] == pytest.approx((0.25 + 1.0) / 2)
    assert report["macro"]["share_no_box"] == pytest.approx((0.25 + 0.75) / 2)
    json.dumps(report)  # plain JSON


def test_grading_report_of_an_empty_benchmark_and_of_grades_without_the_report_columns() -> None:
    empty = _report_grades([], [], [])
    old = make_grades({"p": [True, False]})  # written before n_boxes / finish_reason were columns
    unfinished = _report_grades(["correct", "incorrect"], [1, 1], [None, None])  # samples had no finish reason
    report = grading_report({"empty": empty, "old": old, "unfinished": unfinished})
    assert report["benchmarks"]["empty"]["n_completions"] == 0
    assert report["benchmarks"]["empty"]["share_no_box"] is None
    assert report["benchmarks"]["empty"]["status_counts"] == dict.fromkeys(STATUSES, 0)
    assert report["benchmarks"]["old"]["no_box"] is None and report["benchmarks"]["old"]["share_truncated"] is None
    assert report["benchmarks"]["old"]["status_counts"]["correct"] == 1
    assert report["benchmarks"]["unfinished"]["truncated"] is None
    assert report["benchmarks"]["unfinished"]["share_no_box"] == 0.0
    assert report["macro"] == {"share_no_box": 0.0, "share_several_boxes": 0.0, "share_truncated": None}
    text = report_markdown(report)
    assert "| empty | 0 |" in text and "n/a" in text


def test_score_to_file_writes_the_report_beside_the_metrics_and_keeps_the_tidy_table(tmp_path, caplog) -> None:
    from quagmire.analysis.tables import tidy_table
    from quagmire.io import read_json

    grades = _report_grades(["correct", "no_answer", "incorrect", "correct"], [1, 0, 2, 1],
                            ["stop", "length", "stop", "stop"])
    plain = grades[["problem_id", "sample_idx", "extracted", "status", "correct"]]
    grades.to_parquet(tmp_path / "with.parquet")
    plain.to_parquet(tmp_path / "without.parquet")
    out = tmp_path / "eval" / "metrics.json"
    with caplog.at_level("INFO", logger="quagmire.eval.metrics"):
        result = score_to_file({"b": tmp_path / "with.parquet"}, out, [], 10)
    report = read_json(tmp_path / "eval" / "grading_report.json")
    assert report["benchmarks"]["b"]["share_truncated"] == 0.25
    assert report["benchmarks"]["b"]["share_several_boxes"] == 0.25
    markdown = (tmp_path / "eval" / "grading_report.md").read_text()
    assert "| b | 4 | 2 | 1 | 1 | 0 | 0 | 25.0% | 25.0% | 25.0% |" in markdown
    assert any(r.getMessage().startswith("b: 4 completions (correct 2") for r in caplog.records)
    assert read_json(out) == json.loads(json.dumps(result))
    # The report's columns and files change nothing the tidy table reads.
    other = tmp_path / "other"
    score_to_file({"b": tmp_path / "without.parquet"}, other / "metrics.json", [], 10, report=other / "r.json")
    assert (other / "r.json").is_file() and (other / "r.md").is_file()
    first, second = read_json(out), read_json(other / "metrics.json")
    assert first.pop("manifest")["inputs"][0]["path"] == str(tmp_path / "with.parquet")  # what each was made from
    assert second.pop("manifest")["inputs"][0]["path"] == str(tmp_path / "without.parquet")
    assert first == second
    tidy = tidy_table([("r", "base", read_json(out))], [])
    assert not tidy["metric"].str.contains("box|truncat|share").any()
