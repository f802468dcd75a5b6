"""Sampling n completions per problem: one output schema, backends behind one interface.

The Hugging Face `generate` backend draws all n samples of a batch of problems in one call
(`num_return_sequences=n`), which is what makes many-sample evaluation affordable on a CPU. A vLLM backend for
GPUs plugs in behind the same `Backend` protocol (later issue); nothing downstream depends on which one ran,
because both write the same `samples.parquet` with the sampling parameters recorded beside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.io import write_parquet
from quagmire.world.tokenizer import load_tokenizer

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
                eos_token_id=self.tokenizer.eos_token_id,
                **sampling,
            )
        if greedy:  # one decode per prompt is the answer n times over
            out = out.repeat_interleave(settings.n, dim=0)
        new = out[:, enc["input_ids"].shape[1] :].cpu()
        eos = self.tokenizer.eos_token_id
        results: list[list[Completion]] = [[] for _ in prompts]
        for row, ids in enumerate(new.tolist()):
            # Rows that stopped early are padded after their EOS; rows without EOS ran to max_new_tokens.
            stop = ids.index(eos) if eos in ids else None
            kept = ids[:stop] if stop is not None else ids
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            num_tokens = (stop + 1) if stop is not None else len(ids)
            results[row // settings.n].append(
                Completion(text, num_tokens, "stop" if stop is not None else "length")
            )
        return results


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


def sample_benchmark(
    backend: Backend,
    problems: pd.DataFrame,
    settings: SamplingSettings,
    prompts: Sequence[str],
    progress: bool = True,
) -> pd.DataFrame:
    """Draw `settings.n` completions per problem, `prompts_per_call` problems per backend call.

    Each call is seeded with `seed + call index`, so a rerun reproduces the same samples.
    """
    from tqdm import tqdm

    if len(problems) != len(prompts):
        raise QuagmireError("internal: one prompt per problem expected")
    rows: list[dict[str, Any]] = []
    step = settings.prompts_per_call
    starts = range(0, len(problems), step)
    for call, start in enumerate(tqdm(starts, desc="sampling", unit="call", disable=not progress)):
        batch = problems.iloc[start : start + step]
        outputs = backend.generate(prompts[start : start + step], settings, settings.seed + call)
        for problem_id, completions in zip(batch["problem_id"], outputs, strict=True):
            for idx, c in enumerate(completions):
                rows.append(
                    {
                        "problem_id": problem_id,
                        "sample_idx": idx,
                        "completion": c.text,
                        "num_tokens": c.num_tokens,
                        "finish_reason": c.finish_reason,
                    }
                )
    return pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))


def sample_to_file(
    model_dir: Path, benchmark: Path, out: Path, settings: SamplingSettings, threads: int = 1
) -> dict[str, Any]:
    """Sample one model on one benchmark file; write `samples.parquet` with its parameters as metadata."""
    problems = pd.read_parquet(benchmark)
    if problems.empty:
        raise QuagmireError(f"benchmark {benchmark} has no problems")
    backend = make_backend(settings, model_dir, threads=threads)
    prompts = render_prompts(problems, backend.tokenizer, settings.prompt_template, settings.instruction)
    start = time.monotonic()
    samples = sample_benchmark(backend, problems, settings, prompts)
    seconds = time.monotonic() - start
    meta = {
        "backend": backend.name,
        "model": str(model_dir),
        "benchmark": str(benchmark),
        "sampling": asdict(settings),
        "prompt": {
            "kind": "chat" if getattr(backend.tokenizer, "chat_template", None) else "plain",
            "template": settings.prompt_template,
            "instruction": settings.instruction,
            "first": prompts[0],
        },
        "seconds": round(seconds, 2),
    }
    write_parquet(out, samples, metadata=meta)
    log.info(
        "sampled %d completions in %.1f s (%.0f completions/s)",
        len(samples),
        seconds,
        len(samples) / max(seconds, 1e-9),
    )
    return meta
