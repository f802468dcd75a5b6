"""Loss along SFT: the held-out loss and the post-SFT accuracy of every snapshot of one SFT run.

Why: the paper's filter drops a candidate whose generalization loss is "high and rising"; the final checkpoint's
loss (`quagmire.eval.genloss`) says whether it is high, the series along SFT whether it rises. Accuracy at the same
snapshots shows what the loss curve costs in score (the paper's loss teaser, per step instead of per run).

Each snapshot (`quagmire.train.snapshots`) is measured as the final model is: `genloss.held_out_loss` with the
study's genloss settings, and samples drawn by the HF sampling backend with the study's eval settings except `n`
(`along_sft.n`, small: a trend, not a score) and `prompts_per_call` (`along_sft.prompts_per_call`, more problems
per call so a call is as wide as an eval call), graded by the verify pool and scored by `metrics.score` (macro
avg@n over the study's benchmarks). The HF backend whatever `eval.backend` says: this job runs in the train env, where
a snapshot is loaded once for both measurements.

Output: one CSV per run, a row per snapshot (run, step, epoch, genloss, accuracy, n), with a manifest beside it;
`quagmire.eval.along_table.gather_to_file` joins the runs of a study into `tables/loss_along_sft.csv`, the table
`quagmire rank --loss-steps` and `quagmire predictor-cost --loss-along-sft` read.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.eval.along_table import COLUMNS
from quagmire.io import atomic_path
from quagmire.provenance import step_manifest, write_sidecar

log = logging.getLogger(__name__)



def snapshot_accuracy(
    model_dir: Path,
    benchmarks: Mapping[str, pd.DataFrame],
    sampling: Any,
    pool: Any,
    threads: int = 1,
) -> float:
    """Macro avg@n of the model in `model_dir` over `benchmarks` (name -> problems), sampled with `sampling`
    (a `SamplingSettings`) and graded in the open verify `pool`."""
    from quagmire.eval.grading import grade_samples
    from quagmire.eval.metrics import score
    from quagmire.eval.sampling import HFBackend, render_prompts, sample_benchmark

    backend = HFBackend(model_dir, threads=threads)
    grades = {}
    for name, problems in benchmarks.items():
        prompts = render_prompts(problems, backend.tokenizer, sampling.prompt_template, sampling.instruction)
        samples = sample_benchmark(backend, problems, sampling, prompts, progress=False)
        grades[name] = grade_samples(samples, problems, pool=pool)
    # n_boot=1: the macro mean is all this job reads; the smallest valid bootstrap keeps metrics.score unchanged
    return float(score(grades, n_boot=1)["macro"][f"avg@{sampling.n}"])


def drawn(problems: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """`cap` of a benchmark's problems, a seeded draw kept in the benchmark's order (all when None or fewer)."""
    if cap is None or len(problems) <= cap:
        return problems
    return problems.sample(n=int(cap), random_state=seed).sort_index()


def loss_along_sft(
    run: str,
    snapshots: str | os.PathLike[str],
    heldout: str | os.PathLike[str],
    benchmarks: Sequence[tuple[str, str | os.PathLike[str]]],
    settings: Mapping[str, Any],
    threads: int = 1,
) -> pd.DataFrame:
    """A row per snapshot of `run` in the folder `snapshots`: its step, epoch, held-out loss and accuracy.

    `settings`: `n` (samples per problem; 0 = accuracy not measured, NaN), `problems` (per benchmark, None = all),
    `genloss` ({max_length, batch_size}), `sampling` (eval's sampling keys but n and backend) and
    `grading_timeout_s`. The last snapshot's folder and its whole `held_out_loss` result ride along in the frame's
    `attrs` (`last_folder`, `last_loss`): the recipe's genloss, when the job writes it (`along_to_file`).
    """
    from quagmire.eval.genloss import held_out_loss
    from quagmire.eval.sampling import SamplingSettings
    from quagmire.train.snapshots import list_snapshots, snapshot_record
    from quagmire.verify_pool import GradingPool

    folders = list_snapshots(snapshots)
    if not folders:
        raise QuagmireError(f"no SFT snapshots (step-N folders) in {snapshots}")
    n = int(settings["n"])
    if n < 0:
        raise QuagmireError(f"along_sft.n must be 0 or more (got {n})")
    sampling = SamplingSettings.from_config({**settings["sampling"], "n": n, "backend": "hf"})
    cap = settings.get("problems")
    problems = {name: drawn(pd.read_parquet(path), cap, sampling.seed) for name, path in benchmarks} if n else {}
    genloss = settings["genloss"]
    rows, last = [], {}
    pool = GradingPool(workers=threads, timeout_s=float(settings["grading_timeout_s"])) if n else nullcontext()
    with pool:
        for folder in folders:
            start = time.monotonic()
            record = snapshot_record(folder)
            last = held_out_loss(folder, Path(heldout), max_length=int(genloss["max_length"]),
                                 batch_size=int(genloss["batch_size"]), threads=threads)  # fmt: skip
            loss = last["genloss"]
            accuracy = snapshot_accuracy(folder, problems, sampling, pool, threads) if problems else math.nan
            rows.append((run, int(record["step"]), record.get("epoch"), loss, accuracy, n))
            log.info("%s step %d: held-out loss %.4f, accuracy %.3f (%.1f s)", run, record["step"], loss, accuracy,
                     time.monotonic() - start)  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs.update(last_folder=folders[-1], last_loss=last)
    return frame


def along_to_file(
    run: str,
    snapshots: str | os.PathLike[str],
    heldout: str | os.PathLike[str],
    benchmarks: Sequence[tuple[str, str | os.PathLike[str]]],
    settings: Mapping[str, Any],
    out: str | os.PathLike[str],
    threads: int = 1,
    model: str | os.PathLike[str] | None = None,
    genloss_out: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """The `quagmire loss-along-sft` step of one SFT run: its CSV and the manifest beside it; with `model` (the
    run's published checkpoint) and `genloss_out`, also its generalization loss (`genloss.genloss_to_file`'s JSON).

    Why here: the last snapshot is the published checkpoint (same weights, config and tokenizer, byte for byte),
    and this job has just measured its held-out loss with the study's genloss settings. A `genloss` job of its own
    repeated that measurement after its own process start and imports (on the embedded study, 12 jobs of ~8 s).
    The bytes are compared, not assumed: if they differ, the checkpoint in `model` is measured here instead.
    """
    from quagmire.eval.genloss import held_out_loss, write_genloss

    if (model is None) != (genloss_out is None):
        raise QuagmireError("loss-along-sft: --model and --genloss-out come together")
    frame = loss_along_sft(run, snapshots, heldout, benchmarks, settings, threads=threads)
    last_folder, last = frame.attrs["last_folder"], frame.attrs["last_loss"]
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    inputs = [("snapshots", snapshots), ("heldout", heldout), *((f"benchmark:{b}", p) for b, p in benchmarks)]
    write_sidecar(out, step_manifest("loss_along_sft", inputs, settings={"run": run, **dict(settings)}))
    if model is not None and genloss_out is not None:
        max_length, batch_size = int(settings["genloss"]["max_length"]), int(settings["genloss"]["batch_size"])
        measured_on: tuple[str, str | os.PathLike[str]] | None = ("snapshots", snapshots)
        if not same_checkpoint(last_folder, Path(model)):
            log.info("%s differs from its last snapshot %s: measuring it", model, last_folder)
            last = held_out_loss(Path(model), Path(heldout), max_length=max_length, batch_size=batch_size,
                                 threads=threads)  # fmt: skip
            measured_on = None
        write_genloss(last, model, heldout, genloss_out, max_length=max_length, batch_size=batch_size,
                      measured_on=measured_on)  # fmt: skip
    return frame


# What decides a held-out loss: the weights, the architecture and the tokenizer (a snapshot's snapshot.json and
# training_args.bin do not).
_CHECKPOINT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def same_checkpoint(a: Path, b: Path) -> bool:
    """Whether the folders `a` and `b` hold the same model: the same weight files and the same config and
    tokenizer files, byte for byte."""
    from quagmire.provenance import sha256_file

    def files(folder: Path) -> list[str]:
        weights = sorted(p.name for p in folder.glob("*.safetensors"))
        return weights + [name for name in _CHECKPOINT_FILES if (folder / name).exists()]

    names = files(a)
    if not any(name.endswith(".safetensors") for name in names) or names != files(b):
        return False
    return all(sha256_file(a / name) == sha256_file(b / name) for name in names)
