"""Sampling: n completions per problem in batched `generate` calls, one schema, parameters recorded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from quagmire.io import read_parquet_metadata
from quagmire.sample import (
    SAMPLE_COLUMNS,
    HFBackend,
    SamplingSettings,
    render_prompts,
    sample_benchmark,
    sample_to_file,
)

SETTINGS = SamplingSettings(n=4, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=7, prompts_per_call=3)


@pytest.fixture(scope="module")
def backend(tiny_base: Path) -> HFBackend:
    return HFBackend(tiny_base)


@pytest.fixture(scope="module")
def problems(tiny_world: Path) -> pd.DataFrame:
    return pd.read_parquet(tiny_world / "benchmarks" / "addsub2.parquet")


def test_every_problem_gets_n_samples_in_the_documented_schema(
    backend: HFBackend, problems: pd.DataFrame
) -> None:
    samples = sample_benchmark(backend, problems, SETTINGS, render_prompts(problems), progress=False)
    assert tuple(samples.columns) == SAMPLE_COLUMNS
    assert len(samples) == len(problems) * SETTINGS.n
    per_problem = samples.groupby("problem_id")["sample_idx"].apply(sorted)
    assert all(idx == list(range(SETTINGS.n)) for idx in per_problem)
    assert set(samples["problem_id"]) == set(problems["problem_id"])
    assert samples["finish_reason"].isin(["stop", "length"]).all()
    assert (samples["num_tokens"] <= SETTINGS.max_new_tokens).all()
    assert (samples.loc[samples["finish_reason"] == "length", "num_tokens"] == SETTINGS.max_new_tokens).all()


def test_same_seed_same_samples_other_seed_other_samples(backend: HFBackend, problems: pd.DataFrame) -> None:
    prompts = render_prompts(problems)
    first = sample_benchmark(backend, problems, SETTINGS, prompts, progress=False)
    again = sample_benchmark(backend, problems, SETTINGS, prompts, progress=False)
    other = sample_benchmark(
        backend, problems, SamplingSettings(**{**SETTINGS.__dict__, "seed": 8}), prompts, progress=False
    )
    assert first["completion"].tolist() == again["completion"].tolist()
    assert first["completion"].tolist() != other["completion"].tolist()


def test_greedy_decoding_is_identical_across_samples(backend: HFBackend, problems: pd.DataFrame) -> None:
    greedy = SamplingSettings(n=3, temperature=0.0, max_new_tokens=10, seed=0, prompts_per_call=4)
    samples = sample_benchmark(
        backend, problems.head(4), greedy, render_prompts(problems.head(4)), progress=False
    )
    assert (samples.groupby("problem_id")["completion"].nunique() == 1).all()


def test_samples_file_records_the_sampling_parameters(
    tiny_base: Path, tiny_world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "addsub2.samples.parquet"
    sample_to_file(tiny_base, tiny_world / "benchmarks" / "addsub2.parquet", out, SETTINGS)
    meta = read_parquet_metadata(out)
    assert meta["backend"] == "hf"
    assert meta["model"] == str(tiny_base)
    assert meta["sampling"] == SETTINGS.__dict__
    assert meta["prompt_template"] == "{prompt}"
    assert len(pd.read_parquet(out)) == 8 * SETTINGS.n


def test_plain_template_without_chat_template_and_chat_template_when_present(backend: HFBackend) -> None:
    problems = pd.DataFrame({"problem_id": ["p"], "prompt": ["12+30="]})
    assert render_prompts(problems, backend.tokenizer) == ["12+30="]

    class ChatTokenizer:
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # noqa: ANN001
            assert not tokenize and add_generation_prompt
            return f"<user>{messages[0]['content']}<assistant>"

    assert render_prompts(problems, ChatTokenizer()) == ["<user>12+30=<assistant>"]
