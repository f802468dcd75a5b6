"""The spec base both data registries stand on: config entries, pinned revisions, hub rows and numeric golds
behave the same for a training source and a benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quagmire.data.benchmarks import get_benchmark, load_benchmark, spec_from_config
from quagmire.data.sources import get_source, load_source, source_from_config
from quagmire.data.spec import number_text
from quagmire.errors import QuagmireError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: source_from_config({"name": "math_train", "answer_kind": "list"}, "rl", "data.rl[0]"),
            r"^data\.rl\[0\]: source math_train: answer_kind must be one of text, boxed \(got 'list'\)",
        ),
        (
            lambda: source_from_config({"name": "mine", "path": "x.jsonl"}, "sft", "data.sft"),
            r"^data\.sft: source mine: an SFT source needs response_field",
        ),
        (
            lambda: spec_from_config("aime24_pinned", {"registry": "aime24", "revison": COMMIT}),
            r"^eval\.benchmarks\.aime24_pinned: benchmark aime24: unknown setting\(s\) \['revison'\]",
        ),
        (
            lambda: spec_from_config("own", {"path": "x.jsonl", "answer_kind": "guess"}),
            r"^eval\.benchmarks\.own: benchmark own: answer_kind must be one of text, boxed, hashes, list",
        ),
    ],
)
def test_a_bad_config_entry_is_named_first_in_the_error(build, message: str) -> None:
    with pytest.raises(QuagmireError, match=message):
        build()


@pytest.mark.parametrize(
    ("load", "what", "hub_id"),
    [
        (lambda: load_source("deepscaler"), "source deepscaler", "agentica-org/DeepScaleR-Preview-Dataset"),
        (lambda: load_benchmark("math500"), "benchmark math500", "HuggingFaceH4/MATH-500"),
    ],
)
def test_both_registries_refuse_an_unpinned_revision_alike_before_any_download(
    monkeypatch: pytest.MonkeyPatch, load, what: str, hub_id: str
) -> None:
    import datasets

    def must_not_run(*args, **kwargs):
        raise AssertionError("load_dataset called for an unpinned revision")

    monkeypatch.setattr(datasets, "load_dataset", must_not_run)
    with pytest.raises(QuagmireError, match=rf"^{what}: hub dataset {hub_id} \(or give a local path\): .*pinned"):
        load()


OLYMPIAD_ROWS = [
    {"id": 1, "question": "q1", "final_answer": ["$5$"], "context": None, "solution": ["Worked."], "unit": None,
     "is_multiple_answer": False},
    {"id": 2, "question": "q2", "final_answer": ["$69$", "$84$"], "context": "Let n be 3.", "solution": ["A.", "B."],
     "unit": "cm", "is_multiple_answer": True},
    {"id": 3, "question": "q3", "final_answer": None, "context": None, "solution": None, "unit": None,
     "is_multiple_answer": None},
]


def test_a_benchmark_from_the_hub_normalizes_like_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The hub path reads plain Python rows, as a local file does: lists, None, bools come out the same."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None, **kwargs):
        calls.append({"path": path, "name": name, "split": split, "revision": revision, **kwargs})
        return datasets.Dataset.from_list(OLYMPIAD_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    from_hub, manifest = load_benchmark(get_benchmark("olympiadbench", {"revision": COMMIT}))
    assert calls == [{"path": "Hothan/OlympiadBench", "name": "OE_TO_maths_en_COMP", "split": "train",
                      "revision": COMMIT}]
    from_file, _ = load_benchmark("olympiadbench", _write_jsonl(tmp_path / "ob.jsonl", OLYMPIAD_ROWS))
    pd.testing.assert_frame_equal(from_hub.drop(columns="source"), from_file.drop(columns="source"))
    assert from_hub["answer"].tolist() == ["5", "69, 84"]
    assert pd.isna(from_hub["unit"].iloc[0]) and from_hub["unit"].iloc[1] == "cm"
    assert from_hub["is_multiple_answer"].tolist() == [False, True]
    assert manifest["rows"] == {"read": 3, "kept": 2, "dropped": {"answer_missing": 1}}
    assert manifest["source"] == {
        "kind": "hub", "dataset": "Hothan/OlympiadBench", "config": "OE_TO_maths_en_COMP", "revision": COMMIT,
        "split": "train",
    }


def test_a_hub_failure_is_one_line_naming_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("offline mode is enabled")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(QuagmireError, match=rf"^benchmark math500: cannot load HuggingFaceH4/MATH-500@{COMMIT} split"):
        load_benchmark(get_benchmark("math500", {"revision": COMMIT}))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (27, "27"),
        (27.0, "27"),
        (2.5, "2.5"),
        (np.int64(3), "3"),
        (np.float64(4.0), "4"),
        (-1, "-1"),
        (True, None),
        (np.bool_(False), None),
        (float("nan"), None),
        (float("inf"), None),
        ("5", None),
        (None, None),
    ],
)
def test_number_text_reads_a_numeric_gold_as_its_text(value, text: str | None) -> None:
    assert number_text(value) == text


def test_a_numeric_gold_reads_the_same_in_a_source_and_a_benchmark(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "n.jsonl", [{"problem": "p", "answer": 27.0}, {"problem": "q", "answer": 2.5}])
    source, _ = load_source(get_source("deepscaler", {"path": str(path)}))
    benchmark, _ = load_benchmark("aime25", path)
    assert source["answer"].tolist() == benchmark["answer"].tolist() == ["27", "2.5"]
