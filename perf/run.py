"""Performance suite: each optimized path is timed against a plain baseline in the same run, reported as a ratio.

Why ratios: absolute seconds depend on the machine; a ratio measured in one process on one machine does not, so a
regression shows up as a falling ratio whatever runs the suite. Tests never time anything; they only run
`--quick` to check that this suite still works.

    .venv/bin/python perf/run.py [--quick] [--out perf/results.json]

Measurements:
1. grading   - `GradingPool(workers=2).grade` (dedups identical (gold, answer) keys) vs `grade_one` per sample;
               the baseline is timed on a random subsample and its per-sample cost extrapolated. Also printed: the
               distance to the limit (distinct keys x mean in-process cost per key / workers), <= 1.5x in full mode.
2. pass@k    - `metrics.pass_at_ks` (every k at once, vectorized) vs a per-problem `math.comb` loop.
3. sampling  - `HFBackend.generate` (n samples × several prompts per call) vs one `model.generate` per sample;
               compared per completion.
3c. warm-start - local sampling jobs (`python -m quagmire sample`) cold vs forked from the warm-start server
               (`quagmire.warm_start`), the server's start and imports counted; samples identical.
4. planning  - `quagmire.plan.plan_workflow` (the `snakemake -n` DAG of a whole paper study, with every job's
               resources) vs the issue's budget of 10 s per 3,000 jobs, scaled to the jobs planned: the ratio is
               budget / measured, so >= 1 meets the target.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep the report one line per fact

SEED = 0


@dataclass
class Measurement:
    """One row of the report: baseline and optimized seconds for the same amount of work, and the verdict."""

    name: str
    work: str  # what "the same amount of work" is, in words
    baseline_s: float
    optimized_s: float
    target: float  # minimum speed-up (baseline / optimized)
    checks: dict[str, Any] = field(default_factory=dict)  # correctness checks and extra limits, all must hold
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.baseline_s / max(self.optimized_s, 1e-12)

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target and all(bool(v) for v in self.checks.values())


def _timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """(best seconds over `repeat` calls, last result); wall clock, since the pool works in other processes.

    Millisecond-scale work is repeated and the minimum kept: the minimum is the run least disturbed by noise.
    """
    best = math.inf
    result: Any = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


# --------------------------------------------------------------------------- 1. grading


def _gold_pool(rng: random.Random) -> tuple[str, list[str]]:
    """A gold answer and ~8 distinct candidate answers (gold included) of the same kind."""
    kind = rng.choice(("int", "frac", "latex"))
    if kind == "int":
        g = rng.randint(-50, 999)
        gold = str(g)
        wrong = {str(g + d) for d in rng.sample(range(-20, 21), 12) if d}
        alts = [f"{g}.0"]  # an equal answer written differently
    elif kind == "frac":
        p, q = rng.randint(1, 30), rng.randint(2, 31)
        gold = f"\\frac{{{p}}}{{{q}}}"
        wrong = {f"\\frac{{{p + d}}}{{{q}}}" for d in range(1, 8)} | {f"\\frac{{{q}}}{{{p}}}", f"{p}/{q + 1}"}
        alts = [f"{p}/{q}"]
    else:
        a, b = rng.randint(2, 9), rng.randint(2, 50)
        gold = f"{a}\\sqrt{{{b}}}"
        wrong = {f"{a + d}\\sqrt{{{b}}}" for d in range(1, 6)} | {f"\\sqrt{{{b * a}}}", f"{a}\\pi", f"{b}"}
        alts = [f"\\sqrt{{{b}}} \\cdot {a}"]
    wrong.discard(gold)
    pool = [gold, *alts, *rng.sample(sorted(wrong), min(6, len(wrong)))]
    return gold, pool


def _grading_pairs(n_problems: int, n_samples: int, seed: int) -> list[tuple[str, str]]:
    """Synthetic (gold, completion) pairs with realistic repetition: a skewed draw from a small answer pool."""
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    for _ in range(n_problems):
        gold, pool = _gold_pool(rng)
        rng.shuffle(pool)  # the gold is not always the most frequent answer
        weights = [1.0 / (rank + 1) ** 1.2 for rank in range(len(pool))]
        for _ in range(n_samples):
            if rng.random() < 0.05:  # no boxed answer: cut off or rambling
                pairs.append((gold, "Let me think step by step. The answer is probably large"))
                continue
            answer = rng.choices(pool, weights)[0]
            pairs.append((gold, f"We compute carefully. So the result is \\boxed{{{answer}}}."))
    return pairs


def _limit_s(pairs: list[tuple[str, str]], workers: int) -> tuple[float, int]:
    """(seconds, distinct keys): the pool's limit, every distinct (gold, answer) key graded once in-process.

    The keys are the pool's own (gold text, boxed answer or whole completion); golds are parsed once each, as a
    worker's gold cache does. Perfectly parallel workers with no overhead would need this total / `workers`.
    """
    from quagmire import answers
    from quagmire.verify_pool import _grade_texts

    keys = dict.fromkeys(
        (answers.gold_text(answers.as_text(gold)), answers.answer_text(answers.as_text(completion))[0])
        for gold, completion in pairs
    )
    gold_cache: dict[str, Any] = {}
    start = time.perf_counter()
    for gold_text, answer_text in keys:
        _grade_texts(gold_text, answer_text, gold_cache)
    return (time.perf_counter() - start) / workers, len(keys)


def measure_grading(
    n_problems: int,
    n_samples: int,
    baseline_n: int,
    workers: int = 2,
    limit_target: float | None = None,
    rounds: int = 1,
) -> Measurement:
    """Pool with key dedup vs per-sample parse+verify; the baseline cost per sample is extrapolated.

    Also the distance to the limit: distinct keys x mean in-process cost per key / workers. With `limit_target`
    the pool must come within that factor of it (a check); quick mode's workload is too small for that to mean
    anything, so it only prints the figure.

    The pool and the limit are timed in `rounds` rounds, each the pool (fresh: no gold remembered from the round
    before) and then the limit, back to back; the distance to the limit is the median of the rounds' ratios, and
    the optimized time the median pool time. On a shared 2-core host the same sequential grading took 7.9 s in
    one run and 13.1 s in another, so one pool run against one limit run measures the host's drift as much as the
    pool's overhead, and a best-of-N on each side compares the limit's luckiest second with the pool's.
    """
    from quagmire.verify_pool import GradingPool, grade_one

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # silence its "timeout disabled" warnings
    pairs = _grading_pairs(n_problems, n_samples, SEED)
    subsample = sorted(random.Random(SEED + 1).sample(range(len(pairs)), min(baseline_n, len(pairs))))

    grade_one("1", "\\boxed{1}")  # import math-verify and warm sympy before timing the baseline
    base_s, base_verdicts = _timed(lambda: [grade_one(*pairs[i]) for i in subsample])
    per_sample = base_s / len(subsample)

    pool_times: list[float] = []
    limit_times: list[float] = []
    for _ in range(rounds):
        with GradingPool(workers=workers) as pool:
            start_s, _ = _timed(lambda: pool.grade([("1", "\\boxed{1}")] * workers))  # workers ready and warm
            took, verdicts = _timed(lambda: pool.grade(pairs))
            stats = pool.last_stats
        pool_times.append(took)
        limit_round_s, n_keys = _limit_s(pairs, workers)
        limit_times.append(limit_round_s)
    ratios = [took / max(limit_round_s, 1e-12) for took, limit_round_s in zip(pool_times, limit_times, strict=True)]
    opt_s, limit_s, of_limit = (statistics.median(values) for values in (pool_times, limit_times, ratios))
    identical = all(verdicts[i] == v for i, v in zip(subsample, base_verdicts, strict=True))
    n_correct = sum(v.correct for v in verdicts)
    checks: dict[str, Any] = {"verdicts_identical_on_subsample": identical}
    if limit_target is not None:
        checks[f"within_{limit_target:g}x_of_limit"] = of_limit <= limit_target
    target_text = f"target <= {limit_target:g}x" if limit_target is not None else "not checked in quick mode"
    rounds_text = f"median of {rounds} rounds" if rounds > 1 else "one round"
    return Measurement(
        name="grading",
        work=f"{len(pairs):,} samples ({n_problems} problems x {n_samples})",
        baseline_s=per_sample * len(pairs),
        optimized_s=opt_s,
        target=20.0,
        checks=checks,
        notes=[
            f"baseline timed on {len(subsample):,} random samples ({base_s:.2f} s, {per_sample * 1e3:.3f} ms/sample)"
            f" and extrapolated to {len(pairs):,}",
            f"{of_limit:.2f}x of the limit ({target_text}; {rounds_text}): limit = {n_keys:,} distinct (gold,"
            f" answer) pairs x {limit_s * workers / max(n_keys, 1) * 1e3:.3f} ms mean in-process cost / {workers}"
            f" workers = {limit_s:.2f} s",
            f"rounds (pool then limit, back to back): pool {', '.join(f'{t:.2f}' for t in pool_times)} s;"
            f" limit {', '.join(f'{t:.2f}' for t in limit_times)} s; ratio {', '.join(f'{r:.2f}' for r in ratios)}",
            f"pool: {workers} workers, {stats.n_keys:,} distinct keys graded;"
            f" pool start + warm-up {start_s:.2f} s not counted",
            f"{n_correct / len(pairs):.3f} of samples correct",
        ],
    )


# --------------------------------------------------------------------------- 2. pass@k


def _pass_at_k_loop(n: list[int], c: list[int], ks: list[int]) -> dict[int, float]:
    """The textbook estimator, one problem at a time with exact binomials; mean over problems per k."""
    out: dict[int, float] = {}
    for k in ks:
        total = 0.0
        for ni, ci in zip(n, c, strict=True):
            total += 1.0 - math.comb(ni - ci, k) / math.comb(ni, k)
        out[k] = total / len(n)
    return out


def measure_pass_at_k(n_problems: int, n_samples: int, baseline_problems: int) -> Measurement:
    """Vectorized pass@k for every k in 1, 2, 4, ... n vs a per-problem Python loop (extrapolated if subsampled)."""
    from quagmire.eval.metrics import ks_for, pass_at_ks

    rng = np.random.default_rng(SEED)
    p = rng.beta(0.5, 1.5, size=n_problems)  # many hard problems, a few easy ones, like a real benchmark
    c = rng.binomial(n_samples, p).astype(np.int64)
    n = np.full(n_problems, n_samples, dtype=np.int64)
    ks = ks_for(n_samples)

    pass_at_ks(n[:4], c[:4], [1])  # first call pays numpy's warm-up, not the measurement
    opt_s, opt = _timed(lambda: {k: float(v.mean()) for k, v in pass_at_ks(n, c, ks).items()}, repeat=5)

    m = min(baseline_problems, n_problems)
    sub = rng.choice(n_problems, size=m, replace=False)
    n_list, c_list = n[sub].tolist(), c[sub].tolist()
    base_s, base = _timed(lambda: _pass_at_k_loop(n_list, c_list, ks), repeat=5)
    opt_sub = {k: float(v.mean()) for k, v in pass_at_ks(n[sub], c[sub], ks).items()}
    max_diff = max(abs(base[k] - opt_sub[k]) for k in ks)
    return Measurement(
        name="pass@k",
        work=f"{n_problems:,} problems x {n_samples} samples ({n_problems * n_samples:,}), k in {ks[0]}..{ks[-1]}"
        f" ({len(ks)} values)",
        baseline_s=base_s * n_problems / m,
        optimized_s=opt_s,
        target=100.0,
        checks={"agree_within_1e-9": max_diff <= 1e-9, "optimized_under_1s": opt_s < 1.0},
        notes=[
            f"baseline timed on {m:,} problems ({base_s:.3f} s) and extrapolated"
            if m < n_problems
            else "baseline timed on every problem",
            f"max |baseline - optimized| = {max_diff:.2e}; best of 5 runs each; optimized {opt_s * 1e3:.1f} ms",
            f"pass@1 = {opt[1]:.4f}, pass@{ks[-1]} = {opt[ks[-1]]:.4f}",
        ],
    )


# --------------------------------------------------------------------------- 3. HF sampling


def _save_tiny_model(folder: Path) -> None:
    """The embedded tiny Llama (`TinyModelSpec()`, random init, seed 0) and its tokenizer, saved to `folder`."""
    from quagmire.world.model import TinyModelSpec, build_model
    from quagmire.world.tokenizer import build_tokenizer

    tok = build_tokenizer()
    build_model(TinyModelSpec(), tok, seed=0).save_pretrained(folder)
    tok.save_pretrained(folder)


def _write_addition_benchmark(path: Path, name: str, problems: int, rng: np.random.Generator) -> Path:
    """A benchmark file of `problems` two-digit additions (problem_id, prompt, answer), drawn from `rng`."""
    import pandas as pd

    pairs = rng.integers(10, 99, size=(problems, 2))
    pd.DataFrame({"problem_id": [f"{name}-{i}" for i in range(problems)], "prompt": [f"{x}+{y}=" for x, y in pairs],
                  "answer": [str(x + y) for x, y in pairs]}).to_parquet(path)
    return path


def measure_sampling(n: int, prompts_per_call: int, calls: int, baseline_completions: int, max_new: int) -> Measurement:
    """Batched n-sample generate vs one generate per completion, compared as seconds per completion."""
    import torch
    import transformers

    from quagmire.eval.sampling import HFBackend, SamplingSettings

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    prompts = [f"{a}+{b}=" for a, b in np.random.default_rng(SEED).integers(10, 99, size=(prompts_per_call, 2))]
    settings = SamplingSettings(n=n, temperature=1.0, max_new_tokens=max_new, prompts_per_call=prompts_per_call)
    with tempfile.TemporaryDirectory(prefix="quagmire-perf-") as tmp:
        _save_tiny_model(Path(tmp))
        backend = HFBackend(Path(tmp), threads=1)
    model, tok = backend.model, backend.tokenizer

    backend.generate(prompts[:1], SamplingSettings(n=2, max_new_tokens=4), seed=0)  # warm-up
    opt_s, outs = _timed(lambda: [backend.generate(prompts, settings, seed=i) for i in range(calls)])
    n_opt = sum(len(o) for call in outs for o in call)
    opt_tokens = sum(c.num_tokens for call in outs for o in call for c in o)

    def one_by_one() -> int:
        tokens = 0
        with torch.no_grad():
            for i in range(baseline_completions):
                enc = tok([prompts[i % len(prompts)]], return_tensors="pt").to(backend.device)
                out = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=1.0,
                    top_p=1.0,
                    top_k=0,
                    max_new_tokens=max_new,
                    num_return_sequences=1,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
                tokens += out.shape[1] - enc["input_ids"].shape[1]
        return tokens

    torch.manual_seed(SEED)
    base_s, base_tokens = _timed(one_by_one)
    return Measurement(
        name="sampling",
        work=f"{n_opt:,} completions (n={n} x {prompts_per_call} prompts x {calls} calls), max_new_tokens={max_new}",
        baseline_s=base_s / baseline_completions * n_opt,
        optimized_s=opt_s,
        target=5.0,
        checks={"all_completions_returned": n_opt == n * prompts_per_call * calls},
        notes=[
            f"baseline: {baseline_completions} single-sample generate calls ({base_s:.2f} s,"
            f" {base_s / baseline_completions * 1e3:.1f} ms/completion, {base_tokens / baseline_completions:.1f}"
            f" tokens each) scaled to {n_opt:,} completions",
            f"optimized: {opt_s / n_opt * 1e3:.2f} ms/completion, {opt_tokens / n_opt:.1f} tokens each;"
            f" torch threads = 1, device = {backend.device}",
        ],
    )


# --------------------------------------------------------------------------- 3b. evaluation jobs


def measure_eval_jobs(benchmarks: int, problems: int, n: int, max_new: int) -> Measurement:
    """One sampling job per model over every benchmark (`quagmire sample-model`, eval.sample_jobs: per_model) vs
    one job per benchmark (`quagmire sample`), each a real CLI process as the DAG runs it: what is saved is the
    process start and model load per benchmark, which dominate for a small model."""
    import subprocess

    import pandas as pd

    from quagmire.eval.shards import gather_samples

    rng = np.random.default_rng(SEED)
    settings = json.dumps({"n": n, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": max_new, "seed": 1,
                           "prompts_per_call": 16, "backend": "hf"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="quagmire-perf-") as tmp:
        root = Path(tmp)
        _save_tiny_model(root / "model")
        paths = {}
        for b in range(benchmarks):
            paths[f"b{b}"] = _write_addition_benchmark(root / f"b{b}.parquet", f"b{b}", problems, rng)

        def cli(*args: str) -> None:
            subprocess.run([sys.executable, "-m", "quagmire.cli", *args, "--model", str(root / "model"),
                            "--settings", settings, "--threads", "1"], check=True, env=env, capture_output=True)

        base_s, _ = _timed(lambda: [cli("sample", "--benchmark", str(p), "--out", str(root / f"{b}.one.parquet"))
                                    for b, p in paths.items()])
        pairs_arg = [f"{b}={p}" for b, p in paths.items()]
        opt_s, _ = _timed(lambda: cli("sample-model", "--benchmarks", *pairs_arg, "--out", str(root / "all.parquet")))
        same = True
        for b, p in paths.items():
            gather_samples([root / "all.parquet"], p, root / f"{b}.split.parquet")
            same &= pd.read_parquet(root / f"{b}.split.parquet").equals(pd.read_parquet(root / f"{b}.one.parquet"))
    return Measurement(
        name="eval-jobs",
        work=f"{benchmarks} benchmarks x {problems} problems x n={n}, max_new_tokens={max_new}, one model",
        baseline_s=base_s,
        optimized_s=opt_s,
        target=1.5,
        checks={"same_samples": bool(same)},
        notes=[f"baseline: {benchmarks} `quagmire sample` processes, one per benchmark ({base_s:.1f} s);"
               f" optimized: one `quagmire sample-model` process ({opt_s:.1f} s); samples identical: {same}"],
    )


# --------------------------------------------------------------------------- 3c. warm start


def measure_warm_start(jobs: int, problems: int, n: int, max_new: int) -> Measurement:
    """`jobs` sampling jobs as a local DAG runs them (`python -m quagmire sample`, one process each), cold vs
    forked from the warm-start server (`quagmire.warm_start`). The optimized time includes starting the server
    and its imports, though in a DAG they overlap the first jobs: the saving is each job's own imports."""
    import subprocess

    import pandas as pd

    from quagmire import warm_start

    settings = json.dumps({"n": n, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": max_new, "seed": 1,
                           "prompts_per_call": 16, "backend": "hf"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env = warm_start.job_environment(env, REPO / "src", threads=1)  # both sides run as a local DAG's jobs
    env.pop(warm_start.SOCKET_ENV, None)
    with tempfile.TemporaryDirectory(prefix="quagmire-perf-") as tmp:
        root = Path(tmp)
        _save_tiny_model(root / "model")
        _write_addition_benchmark(root / "b.parquet", "b", problems, np.random.default_rng(SEED))

        def run_jobs(tag: str, job_env: dict[str, str]) -> list[str]:
            logs = []
            for j in range(jobs):
                out = root / f"{tag}{j}.parquet"
                argv = ["sample", "--benchmark", str(root / "b.parquet"), "--model", str(root / "model"),
                        "--settings", settings, "--threads", "1", "--out", str(out)]
                job = subprocess.run([sys.executable, "-m", "quagmire", *argv], env=job_env, cwd=REPO,
                                     capture_output=True, text=True, check=True)
                logs.append(job.stderr)
            return logs

        base_s, _ = _timed(lambda: run_jobs("cold", env))

        def warm() -> list[str]:
            server = warm_start.Server(root / "warm.log")
            path = Path(server.start(env))
            try:
                server.wait_ready()
                return run_jobs("warm", {**env, warm_start.SOCKET_ENV: str(path)})
            finally:
                server.stop()

        opt_s, logs = _timed(warm)
        served = not any("warm start not used" in log for log in logs)
        # the samples themselves; the metadata differs only in the timing it records (seconds, completions/s)
        same = all(pd.read_parquet(root / f"cold{j}.parquet").equals(pd.read_parquet(root / f"warm{j}.parquet"))
                   for j in range(jobs))
        imports = (root / "warm.log").read_text().split("imported", 1)[-1].split(";")[0].strip()
    return Measurement(
        name="warm-start",
        work=f"{jobs} `python -m quagmire sample` jobs ({problems} problems x n={n}, max_new_tokens={max_new}, "
        "tiny model), one after another",
        baseline_s=base_s,
        optimized_s=opt_s,
        target=1.5,
        checks={"every_job_served": served, "same_samples": same},
        notes=[f"baseline: cold processes, {base_s / jobs:.2f} s a job; optimized: server start ({imports}) plus "
               f"forked jobs, {opt_s:.1f} s in all; samples identical: {same}"],
    )


# --------------------------------------------------------------------------- 4. planning

REPO = Path(__file__).resolve().parents[1]
PLAN_BUDGET_S, PLAN_BUDGET_JOBS = 10.0, 3000  # the target: a whole paper DAG of ~3,000 jobs in < 10 s


def paper_configs() -> list[Path]:
    """config/paper.yaml (every study in one DAG) when it exists, else the per-model paper configs."""
    combined = REPO / "config" / "paper.yaml"
    return [combined] if combined.exists() else sorted((REPO / "config").glob("paper_*.yaml"))


def measure_planning(configs: list[str] | None = None) -> Measurement:
    """Plan each config's whole DAG (no output exists: every job counts) one after the other; sum jobs and seconds."""
    from quagmire.plan import plan_workflow

    paths = [Path(c) if Path(c).is_absolute() else REPO / c for c in configs] if configs else paper_configs()
    started = time.perf_counter()
    import snakemake.api  # noqa: F401  - paid once per process, not per plan: timed apart
    import snakemake.workflow  # noqa: F401

    import_s = time.perf_counter() - started
    seconds: list[float] = []
    jobs: list[int] = []
    for path in paths:
        with tempfile.TemporaryDirectory(prefix="quagmire-plan-") as workdir:
            took, plan = _timed(lambda p=path, w=workdir: plan_workflow(p, workdir=w))
        seconds.append(took)
        jobs.append(plan.jobs)
    total_s, total_jobs = sum(seconds), sum(jobs)
    budget_s = PLAN_BUDGET_S * total_jobs / PLAN_BUDGET_JOBS
    return Measurement(
        name="planning",
        work=f"{total_jobs:,} jobs planned from {len(paths)} config(s), with each job's resources",
        baseline_s=budget_s,
        optimized_s=total_s,
        target=1.0,
        checks={"every_config_planned_jobs": all(n > 0 for n in jobs)},
        notes=[
            f"baseline = budget, not a measured run: {PLAN_BUDGET_S:g} s per {PLAN_BUDGET_JOBS:,} jobs, scaled to"
            f" {total_jobs:,} jobs = {budget_s:.2f} s; measured {total_s:.2f} s ({total_s / total_jobs * 1e3:.2f}"
            " ms/job)",
            "; ".join(
                f"{p.relative_to(REPO) if p.is_relative_to(REPO) else p}: {n:,} jobs in {t:.2f} s"
                for p, n, t in zip(paths, jobs, seconds, strict=True)
            ),
            f"each in an empty temporary working directory (nothing done yet); importing Snakemake first took"
            f" {import_s:.2f} s, not counted",
        ],
    )


# --------------------------------------------------------------------------- report


SIZES: dict[str, dict[str, dict[str, int]]] = {
    "full": {
        "grading": {"n_problems": 500, "n_samples": 256, "baseline_n": 2000, "limit_target": 1.5, "rounds": 5},
        "pass@k": {"n_problems": 3906, "n_samples": 256, "baseline_problems": 3906},
        "sampling": {"n": 16, "prompts_per_call": 16, "calls": 4, "baseline_completions": 128, "max_new": 32},
        "eval-jobs": {"benchmarks": 3, "problems": 48, "n": 16, "max_new": 32},
        "warm-start": {"jobs": 6, "problems": 16, "n": 4, "max_new": 16},
        "planning": {},  # the paper configs (see paper_configs), or --plan-config
    },
    "quick": {
        "grading": {"n_problems": 40, "n_samples": 64, "baseline_n": 300},
        "pass@k": {"n_problems": 500, "n_samples": 64, "baseline_problems": 500},
        "sampling": {"n": 8, "prompts_per_call": 8, "calls": 1, "baseline_completions": 16, "max_new": 16},
        "eval-jobs": {"benchmarks": 2, "problems": 4, "n": 2, "max_new": 8},
        "warm-start": {"jobs": 2, "problems": 4, "n": 2, "max_new": 8},
        "planning": {"configs": ["config/smoke.yaml"]},
    },
}


def format_row(m: Measurement) -> str:
    """One line per measurement; `ratio=` is what the tests and any log scraper look for."""
    verdict = "PASS" if m.passed else "FAIL"
    checks = ", ".join(f"{k}={v}" for k, v in m.checks.items())
    return (
        f"{m.name:<9} baseline={m.baseline_s:>9.4g}s optimized={m.optimized_s:>9.4g}s "
        f"ratio={m.ratio:>8.1f}x target>={m.target:g}x {verdict}  [{checks}]"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 30 s); checks the suite, not speed")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here (e.g. perf/results.json)")
    parser.add_argument(
        "--only", choices=["grading", "pass@k", "sampling", "eval-jobs", "warm-start", "planning"], action="append",
        help="run a subset"
    )
    parser.add_argument(
        "--plan-config", action="append", metavar="CONFIG",
        help="config(s) whose DAGs `planning` times, jobs summed (default: config/paper.yaml if it exists, else"
        " config/paper_*.yaml)",
    )
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    measurements: dict[str, Callable[..., Measurement]] = {
        "grading": measure_grading,
        "pass@k": measure_pass_at_k,
        "sampling": measure_sampling,
        "eval-jobs": measure_eval_jobs,
        "warm-start": measure_warm_start,
        "planning": measure_planning,
    }
    started = time.perf_counter()
    results: list[Measurement] = []
    print(f"quagmire performance suite ({mode} mode); ratio = baseline / optimized, both measured in this run")
    for name, fn in measurements.items():
        if args.only and name not in args.only:
            continue
        kwargs = dict(SIZES[mode][name])
        if name == "planning" and args.plan_config:
            kwargs["configs"] = args.plan_config
        m = fn(**kwargs)
        results.append(m)
        print(format_row(m), flush=True)
        print(f"{'':<9} work: {m.work}")
        for note in m.notes:
            print(f"{'':<9} {note}")
    total = time.perf_counter() - started
    all_passed = all(m.passed for m in results)
    print(f"{sum(m.passed for m in results)}/{len(results)} PASS in {total:.1f} s")
    if args.out:
        payload = {
            "mode": mode,
            "python": sys.version.split()[0],
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "seconds": round(total, 2),
            "measurements": [{**asdict(m), "ratio": m.ratio, "passed": m.passed} for m in results],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.out}")
    # Quick mode's sizes are too small for the targets to mean anything: it only fails on a broken check.
    if args.quick:
        return 0 if all(all(bool(v) for v in m.checks.values()) for m in results) else 1
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
