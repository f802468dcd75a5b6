"""Data pools: disjoint by construction and audit, reproducible by seed; SFT subsets by response length."""

from __future__ import annotations

import copy
import re
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest

from quagmire.config import load_config, section_defaults
from quagmire.data.subsets import response_lengths, select_subset
from quagmire.errors import QuagmireError
from quagmire.io import read_json, read_parquet_metadata
from quagmire.world.data import (
    POOLS,
    SOURCE,
    WORLD_BENCHMARKS_FILE,
    build_world,
    disjointness_audit,
    write_world,
    write_world_benchmark,
)
from quagmire.world.problems import Problem
from quagmire.world.tokenizer import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]
PROBLEM_COLUMNS = {"problem_id", "prompt", "answer", "source", "source_row", "family", "level"}
SFT_COLUMNS = PROBLEM_COLUMNS | {"difficulty", "style", "response"}


@pytest.fixture(scope="module")
def smoke():
    return load_config(ROOT / "config" / "smoke.yaml")


@pytest.fixture(scope="module")
def frames(smoke):
    return build_world(smoke["world"], smoke["seed"])


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


# --- build_world --------------------------------------------------------------------------------------------


def test_world_has_every_pool_and_benchmark_at_its_configured_size(frames, smoke):
    expected = {
        **{p: smoke["world"]["pools"][p]["size"] for p in POOLS},
        **{f"benchmark:{b}": spec["size"] for b, spec in smoke["world"]["benchmarks"].items()},
    }
    assert {name: len(frame) for name, frame in frames.items()} == expected


def test_pools_and_benchmarks_are_pairwise_disjoint(frames):
    audit = disjointness_audit(frames)
    assert audit["disjoint"] is True
    n = len(frames)
    assert len(audit["overlaps"]) == n * (n - 1) // 2
    assert set(audit["overlaps"].values()) == {0}
    # and independently of the audit, by both keys a problem can be recognised by
    for (na, a), (nb, b) in combinations(frames.items(), 2):
        assert not set(a["source_row"]) & set(b["source_row"]), (na, nb)
        assert not set(a["prompt"]) & set(b["prompt"]), (na, nb)
    all_prompts = pd.concat([f["prompt"] for f in frames.values()])
    assert all_prompts.is_unique


def test_audit_counts_an_overlap_when_there_is_one(frames):
    leaky = dict(frames)
    leaky["heldout"] = pd.concat([frames["heldout"], frames["sft"].head(3)], ignore_index=True)
    audit = disjointness_audit(leaky)
    assert audit["disjoint"] is False
    assert audit["overlaps"]["heldout|sft"] == 3
    assert audit["rows"]["heldout"] == len(frames["heldout"]) + 3


def test_rows_have_the_documented_columns(frames):
    for name, frame in frames.items():
        expected = SFT_COLUMNS if name in ("sft", "heldout") else PROBLEM_COLUMNS
        assert set(frame.columns) == expected, name
        assert (frame["source"] == SOURCE).all()
        assert (frame["source_row"] == frame["prompt"]).all()
        assert frame["answer"].map(type).eq(str).all()


def test_problem_ids_are_unique_across_the_whole_world(frames):
    ids = pd.concat([f["problem_id"] for f in frames.values()])
    assert ids.is_unique
    assert frames["sft"]["problem_id"].str.startswith("sft-").all()
    assert frames["benchmark:mul2"]["problem_id"].str.startswith("mul2-").all()


def test_every_response_ends_in_the_boxed_gold_answer(frames):
    for pool in ("sft", "heldout"):
        frame = frames[pool]
        for response, answer in zip(frame["response"], frame["answer"], strict=True):
            assert response.endswith(f"\\boxed{{{answer}}}"), (response, answer)


def test_answers_match_the_prompts(frames):
    for frame in frames.values():
        for prompt, answer in zip(frame["prompt"], frame["answer"], strict=True):
            assert prompt.endswith("=")
            assert eval(prompt[:-1]) == int(answer), prompt  # noqa: S307 - digits and one operator


def test_benchmarks_follow_their_mix(frames, smoke):
    for name, spec in smoke["world"]["benchmarks"].items():
        frame = frames[f"benchmark:{name}"]
        kinds = set(frame["family"] + ":" + frame["level"].astype(str))
        assert kinds == set(spec["mix"]), name


def test_every_style_appears_in_the_sft_pool_and_tracks_difficulty(frames):
    pool = frames["sft"]
    assert set(pool["style"]) == {"terse", "short", "long"}
    assert (pool["difficulty"] == [p.difficulty() for p in map(_problem, pool.itertuples())]).all()
    share_long = pool.assign(long=pool["style"] == "long").groupby("difficulty")["long"].mean()
    assert share_long.is_monotonic_increasing  # harder problems are spelled out more often


def _problem(row) -> Problem:
    a, b = (int(x) for x in re.split(r"[+*-]", row.prompt.rstrip("=")))
    return Problem(row.family, row.level, a, b)


def test_styles_change_how_problems_are_written_never_which_are_drawn(frames, smoke):
    world = copy.deepcopy(smoke["world"])
    world["styles"] = {"terse": [0, 0, 0, 0], "short": [1, 1, 1, 1], "long": [0, 0, 0, 0]}
    short_only = build_world(world, smoke["seed"])
    assert set(short_only["sft"]["style"]) == {"short"}
    assert not short_only["heldout"]["response"].str.contains("carry|answer").any()
    for name in frames:
        assert list(short_only[name]["prompt"]) == list(frames[name]["prompt"]), name


def test_same_seed_gives_identical_frames(frames, smoke):
    again = build_world(smoke["world"], smoke["seed"])
    assert set(again) == set(frames)
    for name in frames:
        pd.testing.assert_frame_equal(again[name], frames[name])


def test_different_seed_gives_different_pools(frames, smoke):
    other = build_world(smoke["world"], smoke["seed"] + 1)
    assert list(other["sft"]["prompt"]) != list(frames["sft"]["prompt"])
    assert list(other["benchmark:addsub2"]["prompt"]) != list(frames["benchmark:addsub2"]["prompt"])


def test_benchmarks_do_not_depend_on_pool_sizes(frames, smoke):
    world = copy.deepcopy(smoke["world"])
    world["pools"]["sft"]["size"] = 16
    smaller = build_world(world, smoke["seed"])
    for name in frames:
        if name.startswith("benchmark:"):
            pd.testing.assert_frame_equal(smaller[name], frames[name])


def test_a_world_too_large_for_its_problem_space_is_a_quagmire_error():
    world = {
        "styles": section_defaults("world")["styles"],
        "benchmarks": {"b": {"size": 4, "mix": {"mul:2": 1}}},
        "pools": {
            "sft": {"size": 800, "mix": {"mul:2": 1}},  # only 90 x 8 = 720 such problems
            "heldout": {"size": 1, "mix": {"mul:2": 1}},
            "rl": {"size": 1, "mix": {"mul:2": 1}},
        },
    }
    with pytest.raises(QuagmireError, match="too small"):
        build_world(world, seed=0)


# --- write_world --------------------------------------------------------------------------------------------


def test_write_world_writes_every_file_and_the_audit(frames, tmp_path):
    settings = {"world": {"note": "x"}, "seed": 0}
    audit = write_world(frames, tmp_path, settings)
    for pool in POOLS:
        on_disk = pd.read_parquet(tmp_path / f"{pool}.parquet")
        pd.testing.assert_frame_equal(on_disk, frames[pool])
        meta = read_parquet_metadata(tmp_path / f"{pool}.parquet")
        assert meta.pop("manifest")["step"] == "world"
        assert meta == {"source": SOURCE, "settings": settings}
    for name in ("addsub2", "mul2"):  # each one's file, split off the world's benchmarks file, is the drawn frame
        out = tmp_path / "benchmarks" / f"{name}.parquet"
        assert write_world_benchmark(tmp_path / WORLD_BENCHMARKS_FILE, name, out) == len(frames[f"benchmark:{name}"])
        pd.testing.assert_frame_equal(pd.read_parquet(out), frames[f"benchmark:{name}"])
        meta = read_parquet_metadata(out)
        assert meta.pop("manifest")["inputs"][0]["path"] == str(tmp_path / WORLD_BENCHMARKS_FILE)
        assert meta == {"source": SOURCE, "settings": settings}
    written = read_json(tmp_path / "audit.json")
    assert written["disjoint"] is True
    assert written["settings"] == settings
    assert written["rows"] == audit["rows"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "audit.json",
        "benchmarks",
        "heldout.parquet",
        "rl.parquet",
        "sft.parquet",
        "world_benchmarks.parquet",
    ]


def test_write_world_refuses_overlapping_pools(frames, tmp_path):
    leaky = dict(frames)
    leaky["rl"] = pd.concat([frames["rl"], frames["benchmark:mul2"].head(1)], ignore_index=True)
    with pytest.raises(QuagmireError, match="overlap"):
        write_world(leaky, tmp_path, {})
    assert not (tmp_path / "audit.json").exists()
    assert not (tmp_path / "sft.parquet").exists()


# --- subsets ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(frames):
    return frames["sft"]


@pytest.fixture(scope="module")
def lengths(pool, tokenizer):
    return response_lengths(pool, tokenizer)


def test_response_lengths_count_tokens_of_the_response(pool, lengths, tokenizer):
    assert len(lengths) == len(pool)
    assert (lengths.index == pool.index).all()
    # the world's tokenizer: no BOS counted
    assert (lengths == [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in pool["response"]]).all()
    frame = pd.DataFrame({"response": ["ab", "", "9+3=12 \\boxed{12}"]}, index=[5, 6, 7])
    assert list(response_lengths(frame, tokenizer)) == [2, 0, 11]  # "\\boxed{" is one token
    assert list(response_lengths(frame, tokenizer).index) == [5, 6, 7]


def test_shortest_n_are_the_n_smallest_lengths(pool, lengths):
    subset = select_subset(pool, lengths, "shortest", 40, seed=0)
    assert len(subset) == 40
    assert sorted(subset["response_tokens"]) == sorted(lengths)[:40]
    assert subset["problem_id"].is_unique
    assert set(subset["problem_id"]) <= set(pool["problem_id"])


def test_longest_n_are_the_n_largest_lengths(pool, lengths):
    subset = select_subset(pool, lengths, "longest", 40, seed=0)
    assert sorted(subset["response_tokens"]) == sorted(lengths)[-40:]


def test_mix_is_half_longest_and_half_shortest(pool, lengths):
    for n in (40, 41):
        subset = select_subset(pool, lengths, "mix", n, seed=0)
        assert len(subset) == n and subset["problem_id"].is_unique
        ordered = sorted(lengths)
        assert sorted(subset["response_tokens"]) == sorted(ordered[: n // 2] + ordered[-(n - n // 2) :])


def test_subset_rows_keep_their_pool_content(pool, lengths):
    subset = select_subset(pool, lengths, "mix", 30, seed=2)
    by_id = pool.set_index("problem_id")
    for row in subset.itertuples():
        assert by_id.loc[row.problem_id, "response"] == row.response
        assert lengths[by_id.index.get_loc(row.problem_id)] == row.response_tokens


def test_random_subset_is_deterministic_by_seed_and_differs_across_seeds(pool, lengths):
    a = select_subset(pool, lengths, "random", 50, seed=0)
    b = select_subset(pool, lengths, "random", 50, seed=0)
    c = select_subset(pool, lengths, "random", 50, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["problem_id"]) != set(c["problem_id"])
    assert a["problem_id"].is_unique


def test_random_subset_is_not_the_first_rows_of_the_pool(pool, lengths):
    subset = select_subset(pool, lengths, "random", 50, seed=0)
    assert set(subset["problem_id"]) != set(pool["problem_id"].head(50))


def test_subset_of_the_whole_pool_is_the_whole_pool(pool, lengths):
    for strategy in ("random", "shortest", "longest", "mix"):
        subset = select_subset(pool, lengths, strategy, len(pool), seed=0)
        assert set(subset["problem_id"]) == set(pool["problem_id"]), strategy


def test_subset_larger_than_the_pool_is_a_quagmire_error(pool, lengths):
    with pytest.raises(QuagmireError) as info:
        select_subset(pool, lengths, "random", len(pool) + 1, seed=0)
    assert str(len(pool) + 1) in str(info.value) and str(len(pool)) in str(info.value)


def test_unknown_subset_strategy_is_a_quagmire_error_listing_the_known_ones(pool, lengths):
    with pytest.raises(QuagmireError) as info:
        select_subset(pool, lengths, "median", 10, seed=0)
    assert "median" in str(info.value)
    assert "shortest" in str(info.value)


def test_shortest_breaks_ties_without_favouring_early_rows():
    pool = pd.DataFrame({"problem_id": [f"p{i}" for i in range(200)], "response": ["x"] * 200})
    lengths = pd.Series([1] * 200)
    picks = [set(select_subset(pool, lengths, "shortest", 10, seed=s)["problem_id"]) for s in range(3)]
    assert picks[0] != {f"p{i}" for i in range(10)}
    assert picks[0] != picks[1] or picks[1] != picks[2]
