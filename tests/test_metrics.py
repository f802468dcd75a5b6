"""pass@k, avg@n, maj@n and the bootstrap interval behave as the paper's definitions say."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from quagmire.errors import QuagmireError
from quagmire.eval.metrics import benchmark_metrics, bootstrap_ci, ks_for, maj_at_n, pass_at_k, score
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
