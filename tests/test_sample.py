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
    first = pd.read_parquet(tiny_world / "benchmarks" / "addsub2.parquet")["prompt"].iloc[0]
    assert meta["prompt"] == {"kind": "plain", "template": "{prompt}", "instruction": "", "first": first}
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


def test_instruction_follows_the_problem_and_templates_need_a_prompt_slot() -> None:
    from quagmire.errors import QuagmireError

    problems = pd.DataFrame({"problem_id": ["p"], "prompt": ["What is 2+2?"]})
    rendered = render_prompts(problems, None, "Q: {prompt}\nA:", "Put the answer in \\boxed{}.")
    assert rendered == ["Q: What is 2+2?\n\nPut the answer in \\boxed{}.\nA:"]
    with pytest.raises(QuagmireError, match="prompt_template"):
        render_prompts(problems, None, "no slot here")


def test_vllm_requests_carry_the_same_sampling_parameters() -> None:
    from quagmire.sample import vllm_sampling_kwargs

    kwargs = vllm_sampling_kwargs(SETTINGS, seed=11)
    assert kwargs == {"n": 4, "temperature": 1.0, "top_p": 1.0, "max_tokens": 12, "seed": 11}


def test_vllm_outputs_convert_to_the_shared_schema_in_sample_order() -> None:
    from types import SimpleNamespace

    from quagmire.errors import QuagmireError
    from quagmire.sample import completions_from_vllm

    def out(index: int, text: str, tokens: int, reason: str) -> SimpleNamespace:
        return SimpleNamespace(index=index, text=text, token_ids=list(range(tokens)), finish_reason=reason)

    request = SimpleNamespace(outputs=[out(1, "b", 5, "length"), out(0, "a \\boxed{4}", 3, "stop")])
    converted = completions_from_vllm([request], n=2)
    assert [(c.text, c.num_tokens, c.finish_reason) for c in converted[0]] == [
        ("a \\boxed{4}", 3, "stop"),
        ("b", 5, "length"),
    ]
    with pytest.raises(QuagmireError, match="n=3"):
        completions_from_vllm([request], n=3)


def test_vllm_backend_without_vllm_says_what_to_do(tiny_base: Path) -> None:
    import importlib.util

    from quagmire.errors import QuagmireError
    from quagmire.sample import make_backend

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(QuagmireError, match="eval.backend: hf"):
        make_backend(SamplingSettings(backend="vllm"), tiny_base)
