"""Numbers become answer text as plain decimals, on every path: benchmark golds, training golds, grading, reward.

Why: a float gold written with `repr` reached math-verify as `1e-07`, which it reads as e − 7, so the right
answer `\\boxed{0.0000001}` was graded incorrect and `\\boxed{e-7}` correct.
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quagmire.answers import as_text, completion_text, number_text
from quagmire.cli import main
from quagmire.config import load_config
from quagmire.data import spec
from quagmire.train.rewards import make_correctness_reward
from quagmire.verify_pool import CORRECT, GradingPool
from quagmire.world.data import build_world

ROOT = Path(__file__).resolve().parents[1]
GOLDS = [1e-07, 27.0, 2.5e20]  # as a JSONL or Parquet float column stores them
PLAIN = ["0.0000001", "27", "250000000000000000000"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (27.0, "27"),
        (27, "27"),
        (1e-07, "0.0000001"),
        (2.5e20, "250000000000000000000"),
        (2.5e-20, "0.000000000000000000025"),
        (1e16, "10000000000000000"),
        (1e-05, "0.00001"),
        (-0.5, "-0.5"),
        (0.1, "0.1"),  # the shortest round-trip digits, not 0.1000000000000000055511151231257827
        (0.1 + 0.2, "0.30000000000000004"),  # a different float from 0.3: its own shortest digits, nothing lost
        (1 / 3, "0.3333333333333333"),
        (123456789.123456789, "123456789.12345679"),
        (-0.0, "0"),
        (0.0, "0"),
        (-1.5e-10, "-0.00000000015"),
        (10**40, "1" + "0" * 40),
        (-(10**40) - 7, "-1" + "0" * 35 + "00007"),
        (np.int64(-3), "-3"),
        (np.int8(7), "7"),
        (np.uint64(2**64 - 1), "18446744073709551615"),
        (np.float64(1e-07), "0.0000001"),
        (np.float64(-0.0), "0"),
        (np.float32(0.1), "0.1"),  # float32's own shortest digits, not float64's 0.10000000149011612
        (np.float32(1e-07), "0.0000001"),
        (np.float32(3.0), "3"),
        (np.float16(2.5e4), "25000"),
        (Decimal("1.50"), "1.5"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0.000"), "0"),
        (Decimal("12345678901234567890.123456789012345"), "12345678901234567890.123456789012345"),
        (Fraction(6, 3), "2"),
        (Fraction(1, 4), "0.25"),
        (True, None),  # a bool is not a number: the data stage drops such a gold rather than guess 1
        (np.bool_(False), None),
        (float("nan"), None),
        (float("inf"), None),
        (float("-inf"), None),
        (np.float32("nan"), None),
        (Decimal("NaN"), None),
        (Decimal("Infinity"), None),
        (1 + 2j, None),
        ("5", None),
        (None, None),
        ([1], None),
    ],
)
def test_number_text_writes_a_plain_decimal(value, text: str | None) -> None:
    assert number_text(value) == text


@pytest.mark.parametrize("value", [0.1, 1e-07, 2.5e20, 1 / 3, 5e-324, 1.7976931348623157e308, -123.456e-30])
def test_a_plain_decimal_has_no_exponent_and_reads_back_as_the_same_float(value: float) -> None:
    text = number_text(value)
    assert text is not None and "e" not in text.lower()
    assert float(text) == value


def test_the_data_stage_number_text_is_the_one_function() -> None:
    assert spec.number_text is number_text


def test_as_text_writes_numbers_plain_and_missing_values_empty() -> None:
    assert [as_text(v) for v in GOLDS] == PLAIN
    assert as_text(np.float32(0.1)) == "0.1"
    assert as_text(np.int64(5)) == "5"
    assert [as_text(v) for v in (None, float("nan"), float("inf"), np.float64("nan"))] == ["", "", "", ""]
    assert as_text(True) == "True"  # not a number: its text, as before
    assert as_text(" 1e-07 ") == " 1e-07 "  # text is never rewritten
    assert completion_text([{"role": "assistant", "content": 27.0}]) == "27"


def test_the_embedded_worlds_integer_golds_are_unchanged() -> None:
    smoke = load_config(ROOT / "config" / "smoke.yaml")
    frames = build_world(smoke["world"], smoke["seed"])
    golds = pd.concat([frame["answer"] for frame in frames.values()])
    assert len(golds) > 0
    assert all(as_text(g) == g == number_text(int(g)) for g in golds)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def pool():
    with GradingPool(workers=1, timeout_s=5.0) as shared:
        yield shared


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_numeric_benchmark_golds_through_quagmire_benchmark_and_grade(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "nums.jsonl", [{"problem": f"q{i}", "answer": g} for i, g in enumerate(GOLDS)])
    assert '"answer": 1e-07' in source.read_text()  # the float really is stored in exponent form
    benchmark = tmp_path / "nums.parquet"
    assert main(["benchmark", "--name", "aime25", "--settings", json.dumps({"path": str(source)}),
                 "--out", str(benchmark)]) == 0
    problems = pd.read_parquet(benchmark)
    assert problems["answer"].tolist() == PLAIN
    ids = problems["problem_id"].tolist()
    wrong = [r"\boxed{e-7}", r"\boxed{28}", r"\boxed{2}"]
    samples = pd.DataFrame(
        {
            "problem_id": ids * 2,
            "sample_idx": [0] * 3 + [1] * 3,
            "completion": [f"So the answer is \\boxed{{{p}}}." for p in PLAIN] + wrong,
            "num_tokens": [10] * 6,
            "finish_reason": ["stop"] * 5 + ["length"],
        }
    )
    samples.to_parquet(tmp_path / "nums.samples.parquet")
    out = tmp_path / "nums.grades.parquet"
    assert main(["grade", "--samples", str(tmp_path / "nums.samples.parquet"), "--benchmark", str(benchmark),
                 "--out", str(out), "--timeout", "5"]) == 0
    grades = pd.read_parquet(out)
    assert grades["correct"].tolist() == [True, True, True, False, False, False]
    assert grades["status"].iloc[3] != CORRECT  # `e-7` is not 1e-07
    assert grades["n_boxes"].tolist() == [1] * 6
    assert grades["finish_reason"].tolist() == ["stop"] * 5 + ["length"]


def _benchmark_golds(golds: Any, tmp_path: Path) -> list[str]:
    """The golds of a Parquet answer column, as `quagmire benchmark` writes them."""
    path = tmp_path / "golds.parquet"
    pd.DataFrame({"problem": ["a", "b", "c"], "answer": golds}).to_parquet(path)
    out = tmp_path / "out.parquet"
    assert main(["benchmark", "--name", "aime25", "--settings", json.dumps({"path": str(path)}),
                 "--out", str(out)]) == 0
    return pd.read_parquet(out)["answer"].tolist()


def test_a_float_gold_column_of_a_parquet_benchmark_reads_plain(tmp_path: Path) -> None:
    assert _benchmark_golds(GOLDS, tmp_path) == PLAIN


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_narrow_float_gold_column_keeps_its_own_digits(dtype: str, tmp_path: Path) -> None:
    """Arrow widens float32 cells to Python floats: 0.3 would be written 0.30000001192092896 and graded
    against `\\boxed{0.3}` as a different number. Read at the column's own precision, it is 0.3."""
    golds = np.array([0.3, 0.125, 1e-3 if dtype == "float16" else 1e-7], dtype=dtype)
    plain = ["0.3", "0.125", "0.001" if dtype == "float16" else "0.0000001"]
    assert _benchmark_golds(golds, tmp_path) == plain
    path = tmp_path / "golds.parquet"  # the same file, now as a training source
    raw = tmp_path / "raw.parquet"
    settings = {"name": "deepscaler", "path": str(path)}
    assert main(["source", "--kind", "rl", "--settings", json.dumps(settings), "--out", str(raw)]) == 0
    assert pd.read_parquet(raw)["answer"].tolist() == plain
    assert spec.plain(golds) == list(golds) and type(spec.plain(golds[0])) is golds.dtype.type  # kept narrow


def test_numeric_training_golds_through_quagmire_source_and_the_grpo_reward(tmp_path: Path, pool) -> None:
    source = tmp_path / "rl.parquet"
    pd.DataFrame({"problem": ["a", "b", "c"], "answer": GOLDS}).to_parquet(source)
    out = tmp_path / "raw.parquet"
    settings = {"name": "deepscaler", "path": str(source)}
    assert main(["source", "--kind", "rl", "--settings", json.dumps(settings), "--out", str(out)]) == 0
    golds = pd.read_parquet(out)["answer"].tolist()
    assert golds == PLAIN
    reward = make_correctness_reward(pool)
    right = [f"\\boxed{{{p}}}" for p in PLAIN]
    wrong = [r"\boxed{e-7}", r"\boxed{27.5}", r"\boxed{2.5}"]
    assert reward(["p"] * 3, right, answer=golds) == [1.0, 1.0, 1.0]
    assert reward(["p"] * 3, wrong, answer=golds) == [0.0, 0.0, 0.0]
    # A float gold column handed to the reward as it is (a dataset's own column) reads the same.
    floats = pd.read_parquet(source)["answer"]
    assert reward(["p"] * 3, right, answer=floats.tolist()) == [1.0, 1.0, 1.0]
    assert reward(["p"] * 3, wrong, answer=list(floats.to_numpy())) == [0.0, 0.0, 0.0]
