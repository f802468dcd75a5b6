"""Sampling: n completions per problem in batched `generate` calls, one schema, parameters recorded."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from quagmire.errors import QuagmireError
from quagmire.eval.grading import grade_to_file
from quagmire.eval.sampling import (
    SAMPLE_COLUMNS,
    CallStore,
    HFBackend,
    SamplingSettings,
    render_prompts,
    sample_benchmark,
    sample_model_to_file,
    sample_to_file,
    shard_calls,
)
from quagmire.eval.shards import gather_samples
from quagmire.io import partial_dir, read_parquet_metadata, write_parquet

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
    from quagmire.eval.sampling import vllm_sampling_kwargs

    kwargs = vllm_sampling_kwargs(SETTINGS, seed=11)
    assert kwargs == {"n": 4, "temperature": 1.0, "top_p": 1.0, "max_tokens": 12, "seed": 11}


def test_vllm_outputs_convert_to_the_shared_schema_in_sample_order() -> None:

    from quagmire.errors import QuagmireError
    from quagmire.eval.sampling import completions_from_vllm

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
    from quagmire.eval.sampling import make_backend

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(QuagmireError, match="eval.backend: hf"):
        make_backend(SamplingSettings(backend="vllm"), tiny_base)


# --------------------------------------------------------------------------- shards and resume


def test_shards_partition_the_calls_exactly() -> None:
    for n_problems, per_call, shards in [(500, 16, 7), (8, 3, 5), (1, 1, 1), (31, 4, 2)]:
        parts = [shard_calls(n_problems, per_call, shards, i) for i in range(shards)]
        joined = [call for part in parts for call in part]
        assert joined == list(range(-(-n_problems // per_call)))
    with pytest.raises(QuagmireError, match="0 <= shard < shards"):
        shard_calls(10, 2, shards=2, shard=2)


@pytest.mark.parametrize("k", [1, 3])
def test_sharded_and_gathered_samples_equal_one_unsharded_run(
    tiny_base: Path, tiny_world: Path, tmp_path: Path, k: int
) -> None:
    """Sharding is scheduling only: same samples, same order, whatever the shard count. With k = 1 (the embedded
    study: the workflow always samples shards and gathers them) the gathered rows equal one unsharded run's,
    column types included, so grades and every table built from them are unchanged."""
    import pyarrow.parquet as pq

    bench = tiny_world / "benchmarks" / "addsub2.parquet"
    whole = tmp_path / "whole.parquet"
    sample_to_file(tiny_base, bench, whole, SETTINGS, progress=False)
    shards = [tmp_path / f"s{i}.parquet" for i in range(k)]
    for i, path in enumerate(shards):
        sample_to_file(tiny_base, bench, path, SETTINGS, shard=i, shards=k, progress=False)
        assert not partial_dir(path).exists(), "a finished shard removes its partial calls"
    gathered = tmp_path / "gathered.parquet"
    meta = gather_samples(list(reversed(shards)), bench, gathered)  # any order of files
    pd.testing.assert_frame_equal(pd.read_parquet(gathered), pd.read_parquet(whole))
    assert pq.read_table(gathered).replace_schema_metadata().equals(pq.read_table(whole).replace_schema_metadata())
    assert [s["index"] for s in meta["shards"]] == list(range(k))
    assert meta["sampling"] == dataclasses.asdict(SETTINGS)

    # the DAG's grade job joins the shards itself (`quagmire grade --shards`): the same samples file, then its grades
    joined, grades = tmp_path / "joined.parquet", tmp_path / "grades.parquet"
    graded = grade_to_file(joined, bench, grades, timeout=5.0, shard_files=shards)
    pd.testing.assert_frame_equal(pd.read_parquet(joined), pd.read_parquet(gathered))
    assert read_parquet_metadata(joined)["shards"] == meta["shards"]
    assert len(graded) == len(pd.read_parquet(whole)) and read_parquet_metadata(grades)["samples"] == str(joined)
    with pytest.raises(QuagmireError, match="expected shards"):  # a missing shard: nothing is graded
        grade_to_file(tmp_path / "part.parquet", bench, tmp_path / "part.grades.parquet", timeout=5.0,
                      shard_files=shards[1:] or [shards[0], shards[0]])  # fmt: skip
    assert not (tmp_path / "part.grades.parquet").exists()


@pytest.mark.parametrize("k", [1, 2])
def test_per_model_jobs_give_the_samples_of_per_benchmark_jobs(
    tiny_base: Path, tiny_world: Path, tmp_path: Path, k: int
) -> None:
    """eval.sample_jobs: per_model is scheduling only: one job over every benchmark (the model loaded once),
    split back by `gather_samples`, gives each benchmark exactly the rows and sampling record of its own job."""
    benchmarks = {name: tiny_world / "benchmarks" / f"{name}.parquet" for name in ("addsub2", "mul2")}
    shards = [tmp_path / f"model.{i}.parquet" for i in range(k)]
    for i, path in enumerate(shards):
        meta = sample_model_to_file(tiny_base, benchmarks, path, SETTINGS, shard=i, shards=k, progress=False)
        assert sorted(meta["per_benchmark"]) == sorted(benchmarks)
        assert not partial_dir(path).exists()
    for name, bench in benchmarks.items():
        whole = tmp_path / f"{name}.whole.parquet"
        sample_to_file(tiny_base, bench, whole, SETTINGS, progress=False)
        gathered = tmp_path / f"{name}.gathered.parquet"
        meta = gather_samples(shards, bench, gathered)
        pd.testing.assert_frame_equal(pd.read_parquet(gathered), pd.read_parquet(whole))
        whole_meta = read_parquet_metadata(whole)
        for key in ("model", "benchmark", "sampling", "prompt", "backend"):
            assert meta[key] == whole_meta[key], key
    with pytest.raises(QuagmireError, match="holds no samples of"):
        gather_samples(shards, tiny_world / "benchmarks" / "elsewhere.parquet", tmp_path / "x.parquet")
    # The benchmark is matched as a file: the grade job may name it relative to its working directory
    relative = Path(os.path.relpath(benchmarks["mul2"]))
    meta = gather_samples(shards, relative, tmp_path / "relative.parquet")
    assert meta["benchmark"] == str(relative) and len(pd.read_parquet(tmp_path / "relative.parquet"))


def _count_draws(monkeypatch: pytest.MonkeyPatch, drawn: list[int], kill_after: int | None = None) -> None:
    """Record the index of every backend call drawn in `drawn`; with `kill_after`, raise KeyboardInterrupt (a
    simulated kill) instead of drawing once that many calls are recorded."""
    import quagmire.eval.sampling as sample

    real_draw = getattr(sample.draw_call, "__wrapped__", sample.draw_call)  # never count through an earlier patch

    def draw(backend, problems, prompts, settings, call):  # noqa: ANN001
        if kill_after is not None and len(drawn) == kill_after:
            raise KeyboardInterrupt("simulated kill")
        drawn.append(call)
        return real_draw(backend, problems, prompts, settings, call)

    draw.__wrapped__ = real_draw  # type: ignore[attr-defined]
    monkeypatch.setattr(sample, "draw_call", draw)


def test_a_killed_per_model_job_resumes_each_benchmark_from_its_calls(
    tiny_base: Path, tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    benchmarks = {name: tiny_world / "benchmarks" / f"{name}.parquet" for name in ("addsub2", "mul2")}
    reference = tmp_path / "ref.parquet"
    sample_model_to_file(tiny_base, benchmarks, reference, SETTINGS, progress=False)
    out = tmp_path / "resumed.parquet"
    drawn: list[int] = []
    _count_draws(monkeypatch, drawn, kill_after=4)  # all 3 calls of addsub2 and the first of mul2
    with pytest.raises(KeyboardInterrupt):
        sample_model_to_file(tiny_base, benchmarks, out, SETTINGS, progress=False)
    assert not out.exists()
    drawn.clear()
    _count_draws(monkeypatch, drawn)
    meta = sample_model_to_file(tiny_base, benchmarks, out, SETTINGS, progress=False)
    assert drawn == [1, 2]
    assert [meta["per_benchmark"][b]["shard"]["resumed_calls"] for b in ("addsub2", "mul2")] == [3, 1]
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(reference))


def test_gather_refuses_a_missing_or_foreign_shard(tiny_base: Path, tiny_world: Path, tmp_path: Path) -> None:
    bench = tiny_world / "benchmarks" / "addsub2.parquet"
    shards = [tmp_path / f"s{i}.parquet" for i in range(3)]
    for i, path in enumerate(shards):
        sample_to_file(tiny_base, bench, path, SETTINGS, shard=i, shards=3, progress=False)
    with pytest.raises(QuagmireError, match="expected shards 0..1 of 2"):
        gather_samples(shards[:2], bench, tmp_path / "out.parquet")
    other = tmp_path / "other.parquet"
    sample_to_file(tiny_base, bench, other, dataclasses.replace(SETTINGS, seed=99), shard=2, shards=3,
                   progress=False)
    with pytest.raises(QuagmireError, match="differs .* in 'sampling'"):
        gather_samples([*shards[:2], other], bench, tmp_path / "out.parquet")
    short = pd.read_parquet(shards[2]).iloc[:-1]  # one sample lost
    write_parquet(shards[2], short, metadata=read_parquet_metadata(shards[2]))
    with pytest.raises(QuagmireError, match="wrong counts"):
        gather_samples(shards, bench, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_partial_calls_from_other_settings_are_discarded(tmp_path: Path) -> None:
    folder = tmp_path / "x.samples.parquet.partial"
    store = CallStore(folder, "key-a")
    store.save(0, pd.DataFrame({"problem_id": ["p"], "sample_idx": [0]}))
    assert CallStore(folder, "key-a").pending([0, 1]) == [1]
    assert CallStore(folder, "key-b").pending([0, 1]) == [0, 1]


def test_resume_reads_finished_calls_and_draws_only_the_rest(
    tiny_base: Path, tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: the calls a killed attempt finished are not drawn again, and the result is the same."""
    bench = tiny_world / "benchmarks" / "addsub2.parquet"
    reference = tmp_path / "ref.parquet"
    sample_to_file(tiny_base, bench, reference, SETTINGS, progress=False)

    out = tmp_path / "resumed.parquet"
    drawn: list[int] = []
    _count_draws(monkeypatch, drawn, kill_after=2)
    with pytest.raises(KeyboardInterrupt):
        sample_to_file(tiny_base, bench, out, SETTINGS, progress=False)
    assert not out.exists() and len(list(partial_dir(out).glob("call-*.parquet"))) == 2

    drawn.clear()
    _count_draws(monkeypatch, drawn)
    meta = sample_to_file(tiny_base, bench, out, SETTINGS, progress=False)
    assert drawn == [2]  # 8 problems, 3 per call: calls 0 and 1 were done
    assert meta["shard"]["resumed_calls"] == 2
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(reference))


@pytest.mark.slow
def test_sigkilled_sampling_job_resumes_without_redrawing(
    tiny_base: Path, tiny_world: Path, tmp_path: Path
) -> None:
    """A real `quagmire sample` process is SIGKILLed mid-way; the rerun draws only the missing calls."""
    pool = pd.read_parquet(tiny_world / "sft.parquet").head(120)
    bench = tmp_path / "bench.parquet"
    write_parquet(bench, pool[["problem_id", "prompt", "answer"]])
    settings = dataclasses.replace(SETTINGS, prompts_per_call=1, max_new_tokens=24)
    out = tmp_path / "samples.parquet"
    cmd = [
        sys.executable, "-m", "quagmire.cli", "sample", "--model", str(tiny_base), "--benchmark", str(bench),
        "--settings", json.dumps(dataclasses.asdict(settings)), "--out", str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while len(list(partial_dir(out).glob("call-*.parquet"))) < 5:
            if proc.poll() is not None:
                pytest.fail("the sampling job finished before it could be killed (make it longer)")
            if time.monotonic() > deadline:
                pytest.fail("the sampling job never wrote a finished call")
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists(), "a killed sampling job must not leave its output"
    done_before = len(list(partial_dir(out).glob("call-*.parquet")))
    assert 5 <= done_before < 120

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {done_before} of 120 calls already drawn" in rerun.stderr
    assert read_parquet_metadata(out)["shard"]["resumed_calls"] == done_before
    assert not partial_dir(out).exists()

    reference = tmp_path / "reference.parquet"
    sample_to_file(tiny_base, bench, reference, settings, progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(reference))


def test_a_turn_end_token_from_the_generation_config_also_stops_a_completion() -> None:
    from quagmire.eval.sampling import stop_token_ids

    tokenizer = SimpleNamespace(eos_token_id=2)
    assert stop_token_ids(tokenizer) == [2]
    assert stop_token_ids(tokenizer, SimpleNamespace(eos_token_id=[128001, 2, 128009])) == [2, 128001, 128009]
    assert stop_token_ids(tokenizer, SimpleNamespace(eos_token_id=7)) == [2, 7]
    with pytest.raises(QuagmireError, match="no end-of-sequence token"):
        stop_token_ids(SimpleNamespace(eos_token_id=None), SimpleNamespace(eos_token_id=None))
