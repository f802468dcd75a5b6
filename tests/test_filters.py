"""Audited filters: duplicates, unparseable golds, benchmark leaks and length are removed, each row accounted for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from quagmire.data.filters import (
    AUDIT_COLUMNS,
    NgramIndex,
    resolve_filters,
    run_filters,
    write_filtered,
)
from quagmire.data.split import split_heldout
from quagmire.data.text import dedup_key, ngram_words
from quagmire.errors import QuagmireError
from quagmire.io import read_json, read_parquet_metadata
from quagmire.provenance import sha256_file
from quagmire.verify_pool import GradingPool

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
# The defaults of data.filters before they moved into the config schema: results depend on them staying so.
DEFAULTS = {
    "dedup": True,
    "gold_parses": True,
    "gold_timeout_s": 5.0,
    "gold_workers": 1,
    "decontaminate": {"n": 13, "threshold": 0.5, "min_words": 8},
    "min_tokens": 1,
    "max_tokens": 4096,
}
OFF = {"dedup": False, "gold_parses": False, "decontaminate": False, "min_tokens": None, "max_tokens": None}

BENCH_PROBLEM = (
    "Let $a$ and $b$ be positive real numbers such that $a + b = 10$ and $ab = 21$. "
    "Find the value of $a^2 + b^2$ and express your answer as an integer."
)
BENCHMARKS = {
    "toybench": pd.DataFrame(
        {
            "problem_id": ["toybench-00000", "toybench-00001", "toybench-00002"],
            "prompt": [
                BENCH_PROBLEM,
                "Compute $\\dbinom{9}{2}$.",  # too short for n-grams: only an identical prompt matches
                "How many ways can eight distinct books be arranged on one shelf?",  # 12 words: one whole gram
            ],
        }
    )
}


def frame_of(prompts, responses=None, answers=None, kind="sft") -> pd.DataFrame:
    n = len(prompts)
    return pd.DataFrame(
        {
            "problem_id": [f"toy-{i:08d}" for i in range(n)],
            "prompt": prompts,
            "response": responses if responses is not None else (["\\boxed{1}"] * n if kind == "sft" else [""] * n),
            "answer": answers if answers is not None else ["1"] * n,
            "source": "toy.jsonl",
            "source_row": list(range(n)),
        }
    )


@pytest.fixture(scope="module")
def pool() -> Iterator[GradingPool]:
    with GradingPool(workers=1, timeout_s=10) as grading_pool:
        yield grading_pool


@pytest.fixture(scope="module")
def tokenizer():
    from quagmire.world.tokenizer import build_tokenizer

    return build_tokenizer()


def dropped(audit: pd.DataFrame, step: str) -> dict[str, str]:
    """problem_id -> reason of the rows a step dropped."""
    rows = audit[(audit["step"] == step) & ~audit["kept"]]
    return dict(zip(rows["problem_id"], rows["reason"], strict=True))


# --------------------------------------------------------------------------- dedup


def test_normalized_text_ignores_case_spacing_and_latex_spacing_but_not_symbols() -> None:
    assert dedup_key("Compute  $\\dfrac{1}{2} + X$ .") == dedup_key("compute \\frac{1}{2}+x")
    assert dedup_key("Find \\left( x \\right)\\, now!") == dedup_key("find (x) now")
    assert dedup_key("Find $|-3|$.") != dedup_key("Find $|3|$.")
    assert ngram_words("What is $\\tfrac{1}{2}$ of 10?") == ["what", "is", "frac", "1", "2", "of", "10"]


def test_exact_and_normalized_duplicates_are_dropped_keeping_the_first() -> None:
    frame = frame_of(
        ["What is 1+1?", "What is 1+1?", "what  is 1 + 1 ?", "What is 1+1?", "What is 2+2?"],
        responses=["It is \\boxed{2}.", "It is \\boxed{2}.", "It is \\boxed{2}", "Two: \\boxed{2}.", "\\boxed{4}"],
    )
    clean, audit, summary = run_filters(frame, {**OFF, "dedup": True}, {}, None)
    assert clean["problem_id"].tolist() == ["toy-00000000", "toy-00000003", "toy-00000004"]  # new response kept
    assert dropped(audit, "dedup") == {"toy-00000001": "duplicate_exact", "toy-00000002": "duplicate_normalized"}
    assert audit.set_index("problem_id").loc["toy-00000002", "detail"] == "toy-00000000"
    assert summary["steps"] == [
        {"step": "dedup", "in": 5, "kept": 3, "dropped": {"duplicate_exact": 1, "duplicate_normalized": 1}}
    ]


def test_rl_prompts_are_duplicates_by_prompt_alone() -> None:
    frame = frame_of(["Find x.", "Find  X", "Find y."], kind="rl")
    clean, audit, summary = run_filters(frame, {**OFF, "dedup": True}, {}, None, kind="rl")
    assert clean["prompt"].tolist() == ["Find x.", "Find y."]
    assert summary["skipped"]["length"] == "an RL set has no response"


# --------------------------------------------------------------------------- gold parses


def test_unparseable_or_missing_golds_are_dropped(pool: GradingPool) -> None:
    answers = ["\\frac{3}{4}", "}{", "$", None, "  ", "x^2+1", "12"]
    frame = frame_of([f"Problem {i}?" for i in range(len(answers))], answers=answers)
    clean, audit, summary = run_filters(frame, {**OFF, "gold_parses": True}, {}, None, pool=pool)
    assert clean["answer"].tolist() == ["\\frac{3}{4}", "x^2+1", "12"]
    assert dropped(audit, "gold_parses") == {
        "toy-00000001": "gold_unparseable",
        "toy-00000002": "gold_unparseable",
        "toy-00000003": "gold_missing",
        "toy-00000004": "gold_missing",
    }


def test_the_gold_step_starts_and_closes_its_own_pool_when_none_is_given() -> None:
    frame = frame_of(["A?", "B?"], answers=["5", "}"])
    clean, _, summary = run_filters(frame, {**OFF, "gold_parses": True, "gold_timeout_s": 10}, {}, None)
    assert clean["answer"].tolist() == ["5"]
    assert summary["steps"][0]["dropped"] == {"gold_unparseable": 1}


# --------------------------------------------------------------------------- decontamination


def test_a_benchmark_problem_inside_a_training_prompt_is_caught_and_named() -> None:
    edited = BENCH_PROBLEM.upper().replace(" ", "   ").replace("$a + b", "$a+b")  # case and spacing edits
    frame = frame_of(
        [
            f"Here is a practice question.\n\n{edited}\n\nShow your steps.",
            "Let $a$ and $b$ be positive integers with $a + b = 12$. Find the largest possible value of $ab$.",
            "A train leaves the station at noon travelling at sixty miles per hour towards the coast.",
            "compute  \\dbinom{9}{2}",
            "Please solve: how many ways can eight distinct books be arranged on one shelf? Think first.",
            "How many ways can eight distinct books be arranged?",
        ]
    )
    clean, audit, summary = run_filters(frame, {**OFF, "decontaminate": {}}, BENCHMARKS, None)
    rows = audit.set_index("problem_id")
    assert dropped(audit, "decontaminate") == {
        "toy-00000000": "contaminated:toybench",
        "toy-00000003": "contaminated:toybench",
        "toy-00000004": "contaminated:toybench",
    }
    assert rows.loc["toy-00000000", "detail"] == "toybench-00000 (13-gram overlap 1.00)"
    assert rows.loc["toy-00000003", "detail"] == "toybench-00001 (same normalized prompt)"
    assert rows.loc["toy-00000004", "detail"] == "toybench-00002 (12-gram overlap 1.00)"
    assert clean["problem_id"].tolist() == ["toy-00000001", "toy-00000002", "toy-00000005"]
    assert summary["benchmarks"] == {"toybench": 3}


def test_the_threshold_is_the_share_of_the_benchmark_problems_ngrams_found() -> None:
    words = BENCH_PROBLEM.split()
    half = " ".join(words[: len(words) // 2]) + " and then something entirely different happens here today"
    index = NgramIndex(BENCHMARKS, n=13, min_words=8)
    partial = index.match(half, threshold=0.0)
    assert partial is not None and 0 < partial.overlap < 0.5  # shares some 13-grams, far from all
    assert index.match(half, threshold=0.5) is None
    assert index.match("nothing in common with any benchmark problem at all, not even one phrase", 0.0) is None


def test_decontamination_without_benchmarks_is_an_error_not_a_silent_pass() -> None:
    with pytest.raises(QuagmireError, match="no benchmark tables were given"):
        run_filters(frame_of(["A?"]), {**OFF, "decontaminate": {}}, {}, None)


def test_a_real_math500_problem_is_caught_against_the_real_benchmark() -> None:
    path = SHARED / "math500.jsonl"
    if not path.is_file():
        pytest.skip(f"shared benchmark file {path} is absent")
    from quagmire.data.benchmarks import load_benchmark

    math500, _ = load_benchmark("math500", path)
    target = math500.iloc[123]
    leaked = "Problem:  " + target["prompt"].replace(" ", "  ").lower() + "\nAnswer with a boxed expression."
    frame = frame_of([leaked, "A rectangle has perimeter $30$ and one side of length $4$; what is its area?"])
    clean, audit, _ = run_filters(frame, {**OFF, "decontaminate": {}}, {"math500": math500}, None)
    row = audit.iloc[0]
    assert not row["kept"] and row["reason"] == "contaminated:math500"
    assert row["detail"].startswith(target["problem_id"])
    assert clean["problem_id"].tolist() == ["toy-00000001"]


# --------------------------------------------------------------------------- length


def test_responses_outside_the_token_bounds_are_dropped(tokenizer) -> None:
    # the embedded tokenizer: one token per character, "\\boxed{" one token (so "\\boxed{1}" is 3)
    responses = ["ab", "\\boxed{1}", "x" * 40, "y" * 41]
    frame = frame_of([f"P{i}?" for i in range(4)], responses=responses)
    clean, audit, _ = run_filters(frame, {**OFF, "min_tokens": 3, "max_tokens": 40}, {}, tokenizer)
    assert clean["response"].tolist() == ["\\boxed{1}", "x" * 40]
    assert dropped(audit, "length") == {"toy-00000000": "too_short", "toy-00000003": "too_long"}
    assert audit.set_index("problem_id").loc["toy-00000003", "detail"] == "41 tokens > 40"


def test_the_length_step_needs_a_tokenizer() -> None:
    with pytest.raises(QuagmireError, match="needs the study's tokenizer"):
        run_filters(frame_of(["A?"]), {**OFF, "max_tokens": 10}, {}, None)


# --------------------------------------------------------------------------- the whole run


def test_every_step_audits_one_row_per_row_it_sees(pool: GradingPool, tokenizer) -> None:
    frame = frame_of(
        ["Same?", "Same?", "Bad gold?", BENCH_PROBLEM, "Long?", "Fine?"],
        responses=["\\boxed{1}", "\\boxed{1}", "\\boxed{1}", "\\boxed{1}", "z" * 50, "ok \\boxed{1}"],
        answers=["1", "1", "}{", "1", "1", "1"],
    )
    clean, audit, summary = run_filters(frame, {"max_tokens": 20}, BENCHMARKS, tokenizer, pool=pool)
    assert list(audit.columns) == list(AUDIT_COLUMNS)
    assert audit.groupby("step", sort=False).size().to_dict() == {
        "dedup": 6,
        "gold_parses": 5,
        "decontaminate": 4,
        "length": 3,
    }
    for step in summary["steps"]:
        part = audit[audit["step"] == step["step"]]
        assert step["in"] == len(part) and step["kept"] == int(part["kept"].sum())
        assert step["in"] - step["kept"] == sum(step["dropped"].values())
        assert part["reason"].isna().tolist() == part["kept"].tolist()  # a reason exactly when dropped
    assert clean["problem_id"].tolist() == ["toy-00000000", "toy-00000005"]
    assert summary["rows_in"] == 6 and summary["rows_out"] == 2 and summary["skipped"] == {}
    assert summary["settings"]["decontaminate"] == DEFAULTS["decontaminate"]


def test_filters_that_leave_nothing_are_an_error_with_the_counts() -> None:
    frame = frame_of(["Same?", "Same?"], responses=["\\boxed{1}"] * 2)
    with pytest.raises(QuagmireError, match=r"no rows left after step decontaminate .*contaminated:toybench"):
        run_filters(frame_of([BENCH_PROBLEM]), {**OFF, "decontaminate": {"threshold": 0.9}}, BENCHMARKS, None)
    clean, _, _ = run_filters(frame, {**OFF, "dedup": True}, {}, None)
    assert len(clean) == 1


def test_settings_are_the_schemas_defaults_and_rules() -> None:
    resolved = resolve_filters(None)
    assert resolved == DEFAULTS and list(resolved) == list(DEFAULTS)
    assert [type(v) for v in resolved.values()] == [type(v) for v in DEFAULTS.values()]  # 5.0 stays a float
    assert resolve_filters({"decontaminate": {"n": 8}})["decontaminate"] == {**DEFAULTS["decontaminate"], "n": 8}
    assert resolve_filters({"decontaminate": False})["decontaminate"] is False
    assert resolve_filters({"decontaminate": None})["decontaminate"] is False
    with pytest.raises(QuagmireError, match=r"unknown key data\.filters\.dedupe \(allowed: decontaminate, dedup"):
        resolve_filters({"dedupe": True})
    with pytest.raises(QuagmireError, match=r"data\.filters\.decontaminate\.threshold: 1\.5 is greater than"):
        resolve_filters({"decontaminate": {"threshold": 1.5}})
    with pytest.raises(QuagmireError, match=r"data\.filters\.decontaminate: True is not valid"):
        resolve_filters({"decontaminate": True})  # as in a config file: a mapping (even {}) turns the step on
    with pytest.raises(QuagmireError, match=r"data\.filters\.min_tokens: 10 is larger than data\.filters\.max_tokens"):
        resolve_filters({"min_tokens": 10, "max_tokens": 5})
    with pytest.raises(QuagmireError, match=r"^config error in filter settings: data\.filters\.gold_workers: 0 is"):
        run_filters(frame_of(["A?"]), {**OFF, "gold_workers": 0}, {}, None)
    with pytest.raises(QuagmireError, match="appears more than once"):
        run_filters(pd.concat([frame_of(["A?"])] * 2), OFF, {}, None)


def test_write_filtered_records_sha256_of_inputs_and_outputs(tmp_path: Path) -> None:
    raw = tmp_path / "raw.parquet"
    frame = frame_of(["A?", "A?", "B?"])
    frame.to_parquet(raw)
    clean, audit, summary = run_filters(frame, {**OFF, "dedup": True}, {}, None)
    source = {"name": "toy", "source": {"kind": "hub", "dataset": "org/toy", "revision": "a" * 40}}
    out, audit_out, manifest_out = (tmp_path / "out" / n for n in ("clean.parquet", "audit.parquet", "m.json"))
    written = write_filtered(out, audit_out, manifest_out, clean, audit, summary, inputs=[raw], source=source)
    manifest = read_json(manifest_out)
    assert manifest == written
    assert manifest["outputs"]["clean"]["sha256"] == sha256_file(out)
    assert manifest["outputs"]["audit"]["sha256"] == sha256_file(audit_out)
    assert manifest["inputs"] == [{"path": str(raw), "bytes": raw.stat().st_size, "sha256": sha256_file(raw)}]
    assert manifest["source"]["source"]["revision"] == "a" * 40
    assert manifest["steps"][0]["dropped"] == {"duplicate_exact": 1}
    pd.testing.assert_frame_equal(pd.read_parquet(out), clean)
    assert len(pd.read_parquet(audit_out)) == 3
    assert read_parquet_metadata(out)["filters"]["rows_out"] == 2
    assert not list((tmp_path / "out").glob(".*.tmp"))  # nothing half-written left behind


# --------------------------------------------------------------------------- held-out split


def test_the_heldout_split_is_disjoint_by_id_and_normalized_prompt_and_seeded() -> None:
    prompts = [f"Problem number {i}?" for i in range(40)]
    prompts[5] = prompts[6] = "Shared prompt?"  # two responses to one prompt
    prompts[7] = "shared   PROMPT"  # the same prompt after normalization
    frame = frame_of(prompts)
    shared = {"toy-00000005", "toy-00000006", "toy-00000007"}
    sides_of_shared = set()
    for seed in range(12):
        pool, heldout = split_heldout(frame, 10, seed=seed)
        assert len(heldout) == 10 and len(pool) == 30
        assert set(pool["problem_id"]).isdisjoint(heldout["problem_id"])
        assert {dedup_key(p) for p in pool["prompt"]}.isdisjoint({dedup_key(p) for p in heldout["prompt"]})
        assert pool["source_row"].is_monotonic_increasing and heldout["source_row"].is_monotonic_increasing
        in_heldout = shared & set(heldout["problem_id"])
        assert in_heldout in (set(), shared)  # the group is never split
        sides_of_shared.add(bool(in_heldout))
    assert sides_of_shared == {True, False}  # and each side sometimes gets it
    _, first = split_heldout(frame, 10, seed=3)
    _, again = split_heldout(frame, 10, seed=3)
    _, other = split_heldout(frame, 10, seed=4)
    pd.testing.assert_frame_equal(again, first)
    assert set(other["problem_id"]) != set(first["problem_id"])


def test_a_heldout_size_that_leaves_no_pool_is_an_error() -> None:
    with pytest.raises(QuagmireError, match="held-out size"):
        split_heldout(frame_of(["A?", "B?"]), 2, seed=0)


def test_filter_files_refuses_raw_files_of_two_kinds(tmp_path: Path) -> None:
    from quagmire.data.filters import filter_files
    from quagmire.io import write_parquet

    row = {"problem_id": "a-1", "prompt": "p", "response": "", "answer": "1", "source": "s", "source_row": 0}
    write_parquet(tmp_path / "sft.parquet", pd.DataFrame([row]), metadata={"kind": "sft"})
    write_parquet(tmp_path / "rl.parquet", pd.DataFrame([row]), metadata={"kind": "rl"})
    outs = [tmp_path / "clean.parquet", tmp_path / "audit.parquet", tmp_path / "manifest.json"]
    with pytest.raises(QuagmireError, match=r"must be of one kind \(sft, rl\); got \['rl', 'sft'\]"):
        filter_files([tmp_path / "sft.parquet", tmp_path / "rl.parquet"], {}, tmp_path, None, *outs)
    assert not any(path.exists() for path in outs)
