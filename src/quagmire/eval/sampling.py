"""Sampling n completions per problem: one output schema, backends behind one interface.

The Hugging Face `generate` backend draws all n samples of a batch of problems in one call
(`num_return_sequences=n`), which is what makes many-sample evaluation affordable on a CPU. A vLLM backend for
GPUs sits behind the same `Backend` protocol; nothing downstream depends on which one ran, because both write
the same `samples.parquet` with the sampling parameters recorded beside it.

Large evaluations are sharded (problems split into whole backend calls, one job per shard, gathered after) and
resumable (every finished call is kept on disk until the shard's output is written).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.eval.shards import MODEL_SHARD_KEY
from quagmire.hf import load_tokenizer
from quagmire.io import claim_partial, partial_dir, write_parquet
from quagmire.provenance import MANIFEST_KEY, fingerprint, step_manifest

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("problem_id", "sample_idx", "completion", "num_tokens", "finish_reason")
PLAIN_TEMPLATE = "{prompt}"


@dataclass(frozen=True)
class SamplingSettings:
    n: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 96
    seed: int = 1234
    prompts_per_call: int = 16
    backend: str = "hf"  # "hf" (transformers generate, CPU or GPU) or "vllm" (GPU)
    tensor_parallel_size: int = 1  # vLLM only
    prompt_template: str = PLAIN_TEMPLATE  # used when the tokenizer has no chat template
    instruction: str = ""  # appended to every problem, e.g. "put your final answer within \\boxed{}"

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SamplingSettings:
        return cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int
    finish_reason: str  # "stop" (EOS emitted) or "length" (cut at max_new_tokens)


class Backend(Protocol):
    name: str
    tokenizer: Any  # renders the prompts (chat template) the backend's model expects

    def generate(
        self, prompts: Sequence[str], settings: SamplingSettings, seed: int
    ) -> list[list[Completion]]:
        """n completions for each prompt, in prompt order."""
        ...


class HFBackend:
    """`transformers` generate, batched: one call draws n samples for each of several prompts."""

    name = "hf"

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = load_tokenizer(model_dir)
        self.tokenizer.padding_side = "left"  # generation continues at the right edge of every row
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device).eval()
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config)

    def generate(
        self, prompts: Sequence[str], settings: SamplingSettings, seed: int
    ) -> list[list[Completion]]:
        import torch

        torch.manual_seed(seed)
        greedy = settings.temperature == 0
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True).to(self.device)
        sampling = (
            {} if greedy else {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
        )
        with torch.no_grad():
            out = self.model.generate(
                **enc,
                do_sample=not greedy,
                max_new_tokens=settings.max_new_tokens,
                num_return_sequences=1 if greedy else settings.n,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.stop_ids,
                **sampling,
            )
        if greedy:  # one decode per prompt is the answer n times over
            out = out.repeat_interleave(settings.n, dim=0)
        new = out[:, enc["input_ids"].shape[1] :].cpu()
        results: list[list[Completion]] = [[] for _ in prompts]
        for row, ids in enumerate(new.tolist()):
            # Rows that stopped early are padded after their stop token; rows without one ran to max_new_tokens.
            stop = next((i for i, token in enumerate(ids) if token in self.stop_ids), None)
            kept = ids[:stop] if stop is not None else ids
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            num_tokens = (stop + 1) if stop is not None else len(ids)
            results[row // settings.n].append(
                Completion(text, num_tokens, "stop" if stop is not None else "length")
            )
        return results


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Every token that ends a completion: the tokenizer's EOS and the model's generation-config EOS ids.

    Why both: chat models end a turn with their own token (Llama 3 Instruct: `<|eot_id|>`, listed in
    generation_config.json next to `<|end_of_text|>`); stopping at the tokenizer's EOS alone would run every
    answer on to max_new_tokens. vLLM reads the same generation config.
    """
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    extra = getattr(generation_config, "eos_token_id", None)
    for token in extra if isinstance(extra, (list, tuple)) else [extra]:
        if token is not None and token not in ids:
            ids.append(int(token))
    if not ids:
        raise QuagmireError("the model has no end-of-sequence token (tokenizer and generation config)")
    return ids


def render_prompts(
    problems: pd.DataFrame, tokenizer=None, template: str = PLAIN_TEMPLATE, instruction: str = ""
) -> list[str]:
    """The model-facing prompt of each problem: the model's chat template when it has one, else `template`.

    The instruction (if any) follows the problem text in the user turn, as the evaluation harnesses do.
    """
    if "{prompt}" not in template:
        raise QuagmireError(f"eval.prompt_template must contain {{prompt}} (got {template!r})")
    contents = [f"{p}\n\n{instruction}" if instruction else p for p in problems["prompt"]]
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True
            )
            for c in contents
        ]
    return [template.replace("{prompt}", c) for c in contents]


class VLLMBackend:
    """vLLM on GPU: one request per problem with `n` samples (vLLM shares the prompt's KV cache across them).

    vLLM only installs as a CUDA build, so it is imported here and nowhere else; CPU machines never touch it.
    """

    name = "vllm"

    def __init__(self, model_dir: Path, tensor_parallel_size: int = 1) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise QuagmireError(
                "eval.backend 'vllm' needs the vllm package (a CUDA build, for GPU nodes: use the sample env "
                "there); on a CPU machine set eval.backend: hf"
            ) from exc
        self.tokenizer = load_tokenizer(model_dir)
        self.llm = LLM(model=str(model_dir), tokenizer=str(model_dir), tensor_parallel_size=tensor_parallel_size)

    def generate(self, prompts: Sequence[str], settings: SamplingSettings, seed: int) -> list[list[Completion]]:
        from vllm import SamplingParams

        params = SamplingParams(**vllm_sampling_kwargs(settings, seed))
        return completions_from_vllm(self.llm.generate(list(prompts), params, use_tqdm=False), settings.n)


def vllm_sampling_kwargs(settings: SamplingSettings, seed: int) -> dict[str, Any]:
    """The `vllm.SamplingParams` of one call: the same n, temperature, top_p and length limit as the HF path."""
    return {
        "n": settings.n,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_new_tokens,
        "seed": seed,
    }


def completions_from_vllm(request_outputs: Sequence[Any], n: int) -> list[list[Completion]]:
    """Convert vLLM `RequestOutput`s (one per prompt, in prompt order) into the shared completion records."""
    results = []
    for request in request_outputs:
        outputs = sorted(request.outputs, key=lambda o: o.index)
        if len(outputs) != n:
            raise QuagmireError(f"vLLM returned {len(outputs)} completions for a request of n={n}")
        results.append(
            [
                Completion(o.text, len(o.token_ids), "stop" if o.finish_reason == "stop" else "length")
                for o in outputs
            ]
        )
    return results


def make_backend(settings: SamplingSettings, model_dir: Path, threads: int = 1) -> Backend:
    """The backend named by `settings.backend`."""
    if settings.backend == "hf":
        return HFBackend(model_dir, threads=threads)
    if settings.backend == "vllm":
        return VLLMBackend(model_dir, tensor_parallel_size=settings.tensor_parallel_size)
    raise QuagmireError(f"unknown sampling backend {settings.backend!r} (known: hf, vllm)")


def shard_calls(n_problems: int, prompts_per_call: int, shards: int = 1, shard: int = 0) -> range:
    """The backend calls (by global index) that shard `shard` of `shards` draws.

    Shards are whole calls, and each call is seeded by its global index: a sharded run draws exactly the samples
    of an unsharded one, whatever the shard count (tested), so sharding is a scheduling choice, not a result.
    """
    if shards < 1 or not 0 <= shard < shards:
        raise QuagmireError(f"shard {shard} of {shards}: need 0 <= shard < shards")
    calls = math.ceil(n_problems / prompts_per_call)
    return range(shard * calls // shards, (shard + 1) * calls // shards)


def draw_call(
    backend: Backend, problems: pd.DataFrame, prompts: Sequence[str], settings: SamplingSettings, call: int
) -> pd.DataFrame:
    """The samples of backend call `call`: problems [call * prompts_per_call, ...), seeded `seed + call`."""
    start = call * settings.prompts_per_call
    stop = start + settings.prompts_per_call
    outputs = backend.generate(prompts[start:stop], settings, settings.seed + call)
    rows = [
        {
            "problem_id": problem_id,
            "sample_idx": idx,
            "completion": c.text,
            "num_tokens": c.num_tokens,
            "finish_reason": c.finish_reason,
        }
        for problem_id, completions in zip(problems["problem_id"].iloc[start:stop], outputs, strict=True)
        for idx, c in enumerate(completions)
    ]
    return pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))


def _empty_samples() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("sample_idx", "num_tokens") else "object")
                         for c in SAMPLE_COLUMNS})


def iter_calls(
    backend: Backend,
    problems: pd.DataFrame,
    settings: SamplingSettings,
    prompts: Sequence[str],
    calls: Sequence[int],
    progress: bool = True,
    desc: str = "sampling",
) -> Iterator[tuple[int, pd.DataFrame]]:
    """(call, its samples) for each of `calls`, drawn one backend call at a time, with a progress bar."""
    from tqdm import tqdm

    if len(problems) != len(prompts):
        raise QuagmireError("internal: one prompt per problem expected")
    for call in tqdm(calls, desc=desc, unit="call", disable=not progress):
        yield call, draw_call(backend, problems, prompts, settings, call)


def sample_benchmark(
    backend: Backend,
    problems: pd.DataFrame,
    settings: SamplingSettings,
    prompts: Sequence[str],
    progress: bool = True,
) -> pd.DataFrame:
    """Draw `settings.n` completions per problem, `prompts_per_call` problems per backend call, in memory."""
    calls = shard_calls(len(problems), settings.prompts_per_call)
    frames = [frame for _, frame in iter_calls(backend, problems, settings, prompts, calls, progress)]
    return pd.concat(frames, ignore_index=True) if frames else _empty_samples()


class CallStore:
    """The finished backend calls of one sampling job, one Parquet file each, beside the job's output.

    Why: at paper scale one shard is hours of GPU time. A killed job (preemption, time limit) finds the calls it
    already drew here and draws only the rest. Each call file is written atomically, so one that exists is
    complete. The folder carries the fingerprint of the model, benchmark and settings it was drawn with; if
    those changed, the stale calls are discarded instead of mixed in.
    """

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        claim_partial(folder, {"sha256": key}, "partial samples")

    def path(self, call: int) -> Path:
        return self.folder / f"call-{call:06d}.parquet"

    def pending(self, calls: Sequence[int]) -> list[int]:
        return [call for call in calls if not self.path(call).exists()]

    def save(self, call: int, frame: pd.DataFrame) -> None:
        write_parquet(self.path(call), frame)

    def load(self, calls: Sequence[int]) -> pd.DataFrame:
        frames = [pd.read_parquet(self.path(call)) for call in calls]
        return pd.concat(frames, ignore_index=True) if frames else _empty_samples()


def _draw_shard(
    get_backend: Callable[[], Backend],
    model_dir: Path,
    benchmark: Path,
    tokenizer: Any,
    progress_folder: Path,
    settings: SamplingSettings,
    shard: int,
    shards: int,
    progress: bool,
) -> tuple[pd.DataFrame, dict[str, Any], int]:
    """Shard `shard` of `shards` of one benchmark: its samples, the metadata that describes them, and how many
    were drawn now (not read back from `progress_folder`, where an earlier, killed attempt left its calls).

    `get_backend` builds the backend on first use: a job whose calls are all on disk loads no model.
    """
    problems = pd.read_parquet(benchmark)
    if problems.empty:
        raise QuagmireError(f"benchmark {benchmark} has no problems")
    prompts = render_prompts(problems, tokenizer, settings.prompt_template, settings.instruction)
    calls = shard_calls(len(problems), settings.prompts_per_call, shards, shard)
    key = fingerprint({"sampling": asdict(settings), "shard": shard, "shards": shards},
                      files=[benchmark], folders=[model_dir])
    store = CallStore(progress_folder, key)
    pending = store.pending(calls)
    if len(pending) < len(calls):
        log.info("%s: resuming: %d of %d calls already drawn by an earlier attempt",
                 benchmark.stem, len(calls) - len(pending), len(calls))
    start = time.monotonic()
    drawn = 0
    if pending:
        backend = get_backend()
        desc = f"{benchmark.stem} shard {shard + 1}/{shards}"
        for call, frame in iter_calls(backend, problems, settings, prompts, pending, progress, desc):
            store.save(call, frame)
            drawn += len(frame)
    seconds = time.monotonic() - start
    meta = {
        "backend": settings.backend,
        "model": str(model_dir),
        "benchmark": str(benchmark),
        "sampling": asdict(settings),
        "prompt": {
            "kind": "chat" if getattr(tokenizer, "chat_template", None) else "plain",
            "template": settings.prompt_template,
            "instruction": settings.instruction,
            "first": prompts[0],
        },
        "shard": {"index": shard, "of": shards, "calls": [calls.start, calls.stop],
                  "resumed_calls": len(calls) - len(pending)},
        "seconds": round(seconds, 2),
        "completions_per_s": round(drawn / seconds, 2) if drawn and seconds > 0 else None,
    }
    return store.load(calls), meta, drawn


def _lazy_backend(settings: SamplingSettings, model_dir: Path, threads: int) -> Callable[[], Backend]:
    """A factory that loads the model once, on its first call."""
    made: list[Backend] = []

    def get() -> Backend:
        if not made:
            made.append(make_backend(settings, model_dir, threads=threads))
        return made[0]

    return get


def sample_to_file(
    model_dir: Path,
    benchmark: Path,
    out: Path,
    settings: SamplingSettings,
    threads: int = 1,
    shard: int = 0,
    shards: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample one model on (one shard of) one benchmark; write `samples.parquet` with its parameters as metadata.

    Resumable: calls finished by a previous, killed attempt with the same inputs are read back, not redrawn.
    """
    folder = partial_dir(out)
    samples, meta, drawn = _draw_shard(
        _lazy_backend(settings, model_dir, threads), model_dir, benchmark, load_tokenizer(model_dir), folder,
        settings, shard, shards, progress,
    )
    meta[MANIFEST_KEY] = step_manifest(
        "sample_shard", [("model", model_dir), ("benchmark", benchmark)],
        settings={"sampling": asdict(settings), "shard": shard, "shards": shards},
    )
    write_parquet(out, samples, metadata=meta)
    shutil.rmtree(folder, ignore_errors=True)
    log.info("sampled %d completions (%d new) in %.1f s", len(samples), drawn, meta["seconds"])
    return meta


def sample_model_to_file(
    model_dir: Path,
    benchmarks: Mapping[str, Path],
    out: Path,
    settings: SamplingSettings,
    threads: int = 1,
    shard: int = 0,
    shards: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample one model on (one shard of) every benchmark, loading it once; write one file with a `benchmark`
    column, which `shards.gather_samples` splits back into each benchmark's `samples.parquet`.

    Why: for a small model, starting the process and loading the model cost more than drawing the samples (the
    embedded study: about 6 s of imports and loading against 1.4 s of sampling per benchmark). The samples are
    exactly those of per-benchmark jobs: each benchmark's calls are seeded by their own global index. Resumable
    per benchmark, like `sample_to_file`.
    """
    if not benchmarks:
        raise QuagmireError("sample: no benchmarks given")
    folder = partial_dir(out)
    get_backend = _lazy_backend(settings, model_dir, threads)
    tokenizer = load_tokenizer(model_dir)
    frames, per_benchmark, drawn = [], {}, 0
    for name, path in benchmarks.items():
        samples, meta, new = _draw_shard(
            get_backend, model_dir, Path(path), tokenizer, folder / name, settings, shard, shards, progress
        )
        frames.append(samples.assign(benchmark=name))
        per_benchmark[name] = meta
        drawn += new
    meta = {
        "backend": settings.backend,
        "model": str(model_dir),
        "sampling": asdict(settings),
        "shard": {"index": shard, "of": shards},
        "seconds": round(sum(m["seconds"] for m in per_benchmark.values()), 2),
        MODEL_SHARD_KEY: per_benchmark,
        MANIFEST_KEY: step_manifest(
            "sample_model_shard", [("model", model_dir), *(("benchmark", Path(p)) for p in benchmarks.values())],
            settings={"sampling": asdict(settings), "shard": shard, "shards": shards},
        ),
    }
    combined = pd.concat(frames, ignore_index=True)
    write_parquet(out, combined, metadata=meta)
    shutil.rmtree(folder, ignore_errors=True)
    log.info("sampled %d completions (%d new) on %d benchmarks in %.1f s", len(combined), drawn, len(benchmarks),
             meta["seconds"])
    return meta


def sample_shard_to_file(
    model: Path,
    benchmark: Path,
    settings: Mapping[str, Any],
    out: Path,
    threads: int = 1,
    shard: int = 0,
    shards: int = 1,
) -> dict[str, Any]:
    """`sample_to_file` with the sampling settings given as the study's `eval` section: the `quagmire sample` step
    of the DAG (the whole benchmark, or shard `shard` of `shards`)."""
    return sample_to_file(
        model, benchmark, out, SamplingSettings.from_config(settings), threads=threads, shard=shard, shards=shards
    )


def sample_model_shard_to_file(
    model: Path,
    benchmarks: Mapping[str, Path],
    settings: Mapping[str, Any],
    out: Path,
    threads: int = 1,
    shard: int = 0,
    shards: int = 1,
) -> dict[str, Any]:
    """`sample_model_to_file` with the study's `eval` section: the `quagmire sample-model` step of the DAG, one
    job per model and shard when `eval.sample_jobs` is `per_model`."""
    return sample_model_to_file(
        model, benchmarks, out, SamplingSettings.from_config(settings), threads=threads, shard=shard, shards=shards
    )
