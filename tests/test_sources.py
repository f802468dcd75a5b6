"""Training sources: each set's own format reads to one schema, bad rows are counted not fatal, the hub is pinned."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from quagmire.data.sources import (
    RL_RESPONSE,
    SCHEMA,
    SOURCES,
    get_source,
    load_source,
    write_source,
)
from quagmire.errors import QuagmireError
from quagmire.io import read_json, read_parquet_metadata
from quagmire.provenance import sha256_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _local(name: str, path: Path, **overrides):
    return get_source(name, {"path": str(path), **overrides})


# Each source's rows as its public copy stores them.
NEMOTRON_ROWS = [
    {
        "input": [{"role": "user", "content": "Solve for $x$: $2x + 3 = 7$."}],
        "output": "<think>Subtract 3, divide by 2.</think>\nSo $x = 2$, and the answer is $\\boxed{2}$.",
        "category": "math",
        "license": "cc-by-4.0",
        "reasoning": "on",
        "generator": "DeepSeek-R1",
        "system_prompt": "detailed thinking on",
    },
    {
        "input": [
            {"role": "system", "content": "detailed thinking off"},
            {"role": "user", "content": "What is $\\frac{1}{2} + \\frac{1}{4}$?"},
        ],
        "output": "We get $\\frac{3}{4}$. First try $\\boxed{1}$? No: $\\boxed{\\frac{3}{4}}$",
        "category": "math",
        "license": "cc-by-4.0",
        "reasoning": "off",
        "generator": "Qwen-2.5-Math-7B-Instruct",
        "system_prompt": "detailed thinking off",
    },
]
ACEREASON_ROWS = [
    {"category": "math", "source": "numina", "input": "Compute $3^4$.", "output": "It is $\\boxed{81}$."},
    {"category": "code", "source": "taco", "input": "Write a sort.", "output": "def f(x): return sorted(x)"},
    {"category": "math", "source": "numina", "input": "Find $7 \\cdot 6$.", "output": "$7\\cdot 6=\\boxed{42}$"},
]
MATH_ROWS = [
    {
        "problem": "How many vertical asymptotes does $y=\\frac{2}{x^2+x-6}$ have?",
        "solution": "The denominator factors as $(x-2)(x+3)$, so there are $\\boxed{2}$ vertical asymptotes.",
        "level": "Level 3",
        "type": "Algebra",
    },
    {
        "problem": "What is $\\sqrt{\\{16\\}}$ written plainly?",
        "solution": "With braces: $\\boxed{\\{4\\}}$.",
        "level": "Level 1",
        "type": "Prealgebra",
    },
]
DEEPSCALER_ROWS = [
    {"problem": "Find the sum of all integers $1$ to $10$.", "answer": "55", "solution": "$\\frac{10 \\cdot 11}{2}$"},
    {"problem": "How many primes are below $20$?", "answer": 8, "solution": "2,3,5,7,11,13,17,19"},
]


def test_nemotron_chat_rows_normalize_to_the_schema(tmp_path: Path) -> None:
    frame, manifest = load_source(_local("nemotron_math", _write_jsonl(tmp_path / "n.jsonl", NEMOTRON_ROWS)))
    assert list(frame.columns) == [*SCHEMA, "reasoning", "generator"]
    assert frame["problem_id"].tolist() == ["nemotron_math-00000000", "nemotron_math-00000001"]
    assert frame["prompt"].tolist() == ["Solve for $x$: $2x + 3 = 7$.", "What is $\\frac{1}{2} + \\frac{1}{4}$?"]
    assert frame["response"].iloc[0].startswith("<think>")  # the whole response is trained on
    assert frame["answer"].tolist() == ["2", "\\frac{3}{4}"]  # the last boxed answer
    assert frame["reasoning"].tolist() == ["on", "off"]
    assert frame["source"].unique().tolist() == ["n.jsonl"]
    assert manifest["rows"] == {"read": 2, "kept": 2, "dropped": {}}
    assert manifest["kind"] == "sft" and manifest["source"]["kind"] == "local"


def test_nemotron_reads_the_same_from_parquet_and_jsonl(tmp_path: Path) -> None:
    jsonl = _write_jsonl(tmp_path / "n.jsonl", NEMOTRON_ROWS)
    parquet = tmp_path / "n.parquet"
    pd.DataFrame(NEMOTRON_ROWS).to_parquet(parquet)  # the chat list becomes a nested Arrow column
    from_jsonl, _ = load_source(_local("nemotron_math", jsonl))
    from_parquet, _ = load_source(_local("nemotron_math", parquet))
    pd.testing.assert_frame_equal(from_jsonl.drop(columns="source"), from_parquet.drop(columns="source"))


def test_acereason_keeps_only_math_rows_and_counts_the_rest(tmp_path: Path) -> None:
    frame, manifest = load_source(_local("acereason_sft_math", _write_jsonl(tmp_path / "a.jsonl", ACEREASON_ROWS)))
    assert frame["answer"].tolist() == ["81", "42"]
    assert frame["source_row"].tolist() == [0, 2]  # row positions survive the code row's removal
    assert frame["problem_id"].tolist() == ["acereason_sft_math-00000000", "acereason_sft_math-00000002"]
    assert manifest["rows"]["dropped"] == {"category_not_selected": 1}


def test_math_train_is_rl_prompts_with_the_boxed_gold_of_the_solution(tmp_path: Path) -> None:
    frame, _ = load_source(_local("math_train", _write_jsonl(tmp_path / "m.jsonl", MATH_ROWS)))
    assert frame["answer"].tolist() == ["2", "\\{4\\}"]  # escaped braces stay inside the box
    assert (frame["response"] == RL_RESPONSE).all() and RL_RESPONSE == ""
    assert frame["level"].tolist() == ["Level 3", "Level 1"] and frame["type"].tolist() == ["Algebra", "Prealgebra"]


def test_deepscaler_gold_comes_from_its_answer_field(tmp_path: Path) -> None:
    frame, _ = load_source(_local("deepscaler", _write_jsonl(tmp_path / "d.jsonl", DEEPSCALER_ROWS)))
    assert frame["answer"].tolist() == ["55", "8"]  # a numeric answer becomes its text
    assert frame["prompt"].iloc[1] == "How many primes are below $20$?"
    assert (frame["response"] == "").all()


def test_malformed_rows_are_dropped_with_reasons_never_a_crash(tmp_path: Path) -> None:
    good = NEMOTRON_ROWS[0]
    rows = [
        good,
        {**good, "input": 42},  # a number where a chat list is expected
        {**good, "input": "Solve it."},  # text where a chat list is expected
        {**good, "input": [{"role": "user", "content": ["a", "list"]}]},  # content not text
        {**good, "input": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {**good, "input": [{"role": "user", "content": "   "}]},  # empty after stripping
        {**good, "input": [{"role": "user", "content": "x \ud800 y"}]},  # a lone surrogate
        {k: v for k, v in good.items() if k != "output"},  # response missing
        {**good, "output": "I think it is 2."},  # no boxed answer to take the gold from
        {**good, "output": "Answer: \\boxed{}"},  # an empty boxed answer
    ]
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with path.open("ab") as handle:
        handle.write(b"{not json\n")
        handle.write(b'{"input": "\xff\xfe"}\n')  # not UTF-8
        handle.write(b"[1, 2]\n")  # JSON, but not an object
    frame, manifest = load_source(_local("nemotron_math", path))
    assert frame["problem_id"].tolist() == ["nemotron_math-00000000"]
    assert manifest["rows"]["read"] == 13 and manifest["rows"]["kept"] == 1
    assert manifest["rows"]["dropped"] == {
        "answer_empty": 1,
        "answer_no_boxed": 1,
        "invalid_json": 1,
        "invalid_utf8": 1,
        "not_an_object": 1,
        "prompt_empty": 1,
        "prompt_invalid_text": 1,
        "prompt_not_messages": 2,
        "prompt_not_single_turn": 1,
        "prompt_not_text": 1,
        "response_missing": 1,
    }


def test_text_sources_drop_numbers_and_lists_where_text_is_expected(tmp_path: Path) -> None:
    rows = [
        DEEPSCALER_ROWS[0],
        {"problem": 17, "answer": "1"},
        {"problem": ["a", "b"], "answer": "1"},
        {"problem": "Fine problem?", "answer": ["1", "2"]},
        {"problem": "Fine problem?", "answer": True},
        {"problem": "Fine problem?", "answer": None},
        {"problem": "", "answer": "3"},
    ]
    frame, manifest = load_source(_local("deepscaler", _write_jsonl(tmp_path / "d.jsonl", rows)))
    assert len(frame) == 1
    assert manifest["rows"]["dropped"] == {
        "answer_missing": 1,
        "answer_not_text": 2,
        "prompt_empty": 1,
        "prompt_not_text": 2,
    }


def test_a_source_with_nothing_usable_is_an_error_naming_it_and_the_reasons(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "none.jsonl", [{"problem": "x", "solution": "no box"}] * 2)
    with pytest.raises(QuagmireError, match=r"source math_train: no usable rows in none\.jsonl.*answer_no_boxed: 2"):
        load_source(_local("math_train", path))


def test_a_wrong_field_mapping_is_named_in_the_error(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "q.jsonl", [{"question": "What is 1+1?", "answer": "2"}])
    with pytest.raises(QuagmireError, match=r"field\(s\) \['problem'\] appear in no row.*question"):
        load_source(_local("deepscaler", path))
    frame, _ = load_source(_local("deepscaler", path, prompt_field="question"))
    assert frame["prompt"].tolist() == ["What is 1+1?"]


def test_unknown_sources_settings_and_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(QuagmireError, match="unknown training source 'gsm8k_train'"):
        get_source("gsm8k_train")
    with pytest.raises(QuagmireError, match=r"source deepscaler: unknown setting\(s\) \['revison'\]"):
        get_source("deepscaler", {"revison": COMMIT})
    with pytest.raises(QuagmireError, match="file not found"):
        load_source(_local("deepscaler", tmp_path / "absent.jsonl"))
    with pytest.raises(QuagmireError, match=r"expected a \.jsonl or \.parquet"):
        load_source(_local("deepscaler", _write_jsonl(tmp_path / "d.csv", DEEPSCALER_ROWS)))
    with pytest.raises(QuagmireError, match="needs response_field"):
        get_source("nemotron_math", {"response_field": None})


def test_an_unpinned_hub_revision_is_refused_before_any_download(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def must_not_run(*args, **kwargs):
        raise AssertionError("load_dataset called for an unpinned revision")

    monkeypatch.setattr(datasets, "load_dataset", must_not_run)
    for name in SOURCES:  # every registered spec ships unpinned
        with pytest.raises(QuagmireError, match=rf"source {name}: hub dataset .* must be pinned.*'main'"):
            load_source(name)
    with pytest.raises(QuagmireError, match="must be pinned"):
        load_source(get_source("deepscaler", {"revision": "v1.0"}))


def test_the_hub_path_loads_the_pinned_revision_and_normalizes_like_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None, **kwargs):
        calls.append({"path": path, "name": name, "split": split, "revision": revision, **kwargs})
        return datasets.Dataset.from_list(NEMOTRON_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    spec = get_source("nemotron_math", {"revision": COMMIT})
    from_hub, manifest = load_source(spec)
    assert calls == [
        {"path": "nvidia/Llama-Nemotron-Post-Training-Dataset", "name": "SFT", "split": "math", "revision": COMMIT}
    ]
    from_file, _ = load_source(_local("nemotron_math", _write_jsonl(tmp_path / "n.jsonl", NEMOTRON_ROWS)))
    pd.testing.assert_frame_equal(from_hub.drop(columns="source"), from_file.drop(columns="source"))
    assert from_hub["source"].unique().tolist() == [f"nvidia/Llama-Nemotron-Post-Training-Dataset@{COMMIT}"]
    assert manifest["source"] == {
        "kind": "hub",
        "dataset": "nvidia/Llama-Nemotron-Post-Training-Dataset",
        "config": "SFT",
        "revision": COMMIT,
        "split": "math",
    }


def test_max_rows_streams_only_the_first_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None, **kwargs):
        calls.append(kwargs)
        rows = [{"problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(6)]
        return datasets.Dataset.from_list(rows).to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    frame, manifest = load_source(get_source("deepscaler", {"revision": COMMIT, "max_rows": 3}))
    assert calls == [{"streaming": True}]
    assert frame["source_row"].tolist() == [0, 1, 2] and manifest["rows"]["read"] == 3


def test_a_hub_failure_is_one_line_naming_the_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("offline mode is enabled")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(QuagmireError, match=rf"source deepscaler: cannot load .*DeepScaleR.*@{COMMIT}.*offline"):
        load_source(get_source("deepscaler", {"revision": COMMIT}))


def test_max_rows_limits_a_local_file_and_ids_stay_the_same(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", DEEPSCALER_ROWS * 5)
    full, _ = load_source(_local("deepscaler", path))
    head, _ = load_source(_local("deepscaler", path, max_rows=4))
    assert full["problem_id"].is_unique and len(full) == 10
    pd.testing.assert_frame_equal(head, full.head(4))


def test_write_source_stores_the_manifest_beside_and_inside_the_file(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "m.jsonl", MATH_ROWS)
    frame, manifest = load_source(_local("math_train", path))
    out = tmp_path / "raw" / "math_train.parquet"
    write_source(frame, manifest, out)
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    assert read_parquet_metadata(out)["name"] == "math_train"
    saved = read_json(f"{out}.manifest.json")
    assert saved["source"]["sha256"] == sha256_file(path) and saved["rows"]["kept"] == 2


def test_config_entries_name_a_registered_source_of_the_right_kind_or_define_their_own(tmp_path: Path) -> None:
    from quagmire.data.sources import source_from_config

    spec = source_from_config({"name": "math_train", "path": "m.jsonl", "keep_fields": ["level"]}, "rl", "data.rl[0]")
    assert (spec.kind, spec.path, spec.keep_fields) == ("rl", "m.jsonl", ("level",))
    own = source_from_config({"name": "mine", "path": "x.jsonl", "response_field": "r"}, "sft", "data.sft")
    assert (own.name, own.kind, own.response_field) == ("mine", "sft", "r")
    with pytest.raises(QuagmireError, match=r"data.sft: source 'deepscaler' is rl data, listed here as sft data"):
        source_from_config({"name": "deepscaler"}, "sft", "data.sft")
    with pytest.raises(QuagmireError, match=r"data.rl\[1\]: 'mystery' is not a registered training source"):
        source_from_config({"name": "mystery"}, "rl", "data.rl[1]")
    with pytest.raises(QuagmireError, match=r"data.rl\[0\]: needs a name"):
        source_from_config({"path": "x.jsonl"}, "rl", "data.rl[0]")
    with pytest.raises(QuagmireError, match=r"^data.rl\[0\]: source math_train: unknown setting\(s\) \['paht'\]"):
        source_from_config({"name": "math_train", "paht": "m.jsonl"}, "rl", "data.rl[0]")
