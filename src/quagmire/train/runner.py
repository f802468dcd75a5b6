"""The one training runner (`run_training`) and what SFT and GRPO runs share: device settings, fixed trainer
arguments, and resumable, atomic checkpoints.

Why one runner: every training run goes through the same sequence (load the parent model, its tokenizer and the
rows; fingerprint the run; find where an earlier attempt stopped; train; publish the model with its lineage and
stats), and the order of that sequence is what makes resumption and atomic publishing correct. `run_training` owns
it; a stage (`TrainingStage`: SFT in `quagmire.train.sft`, GRPO in `quagmire.train.grpo`) only supplies its
dataset, its trainer and the stats it records.

Why fixed arguments live here: both trainers must log, seed and save the same way, and TRL's defaults for these
drift between versions; one place states them.

Why training runs in a scratch folder `<out>.partial/`: a long job (hours at paper scale) must survive being
killed (preemption, wall-clock limits), so the trainer saves a full checkpoint (weights, optimizer, scheduler,
RNG states, trainer state) every `save_steps` steps into `<out>.partial/trainer/checkpoint-N/`, and a rerun
resumes from the last *complete* one. The finished model is staged in `<out>.partial/final/` and only renamed onto
`out` at the end, so a half-written folder never looks finished. `<out>.partial/fingerprint.json` records which
inputs and settings the partial run belongs to; a rerun with different inputs discards it instead of resuming.

Layout of the scratch folder::

    <out>.partial/
      fingerprint.json                  kind, settings, data sha256s, parent model identity, package versions
      trainer/checkpoint-N/             written by the HF Trainer, non-atomically ...
      trainer/checkpoint-N/quagmire_complete.json   ... so this marker, written last, says it is whole
      snapshots/step-N/                 weight-only snapshots along SFT (`quagmire.train.snapshots`), published
                                        as their own folder just before `final/` is renamed onto `out`
      final/                            the finished model, renamed onto `out`
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import TrainerCallback

from quagmire.errors import QuagmireError
from quagmire.hf import load_tokenizer
from quagmire.io import claim_partial, partial_dir, read_json, write_json
from quagmire.provenance import folder_identity, lineage, package_versions, sha256_file
from quagmire.train import snapshots as snapshot_store

log = logging.getLogger(__name__)

TRAINER_SCRATCH = "trainer"  # the trainer's own output_dir inside the scratch folder (checkpoint-N/ live here)
STAGING = "final"  # the finished model folder inside the scratch folder, renamed onto `out`
COMPLETE_MARKER = "quagmire_complete.json"  # written into checkpoint-N/ after the trainer has saved all of it
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")  # the HF Trainer's checkpoint folder names
DEFAULT_SAVE_TOTAL_LIMIT = 2  # the newest checkpoint may be half-written when killed; the one before is whole


def device_settings() -> dict[str, Any]:
    """bf16 on a GPU, fp32 on CPU: the paper's precision where it can run, exact arithmetic where it cannot.

    Activations are recomputed in the backward pass (TRL's default) only on a GPU, where memory is what limits a
    7B model; on CPU the recomputation is pure cost (a third of a tiny model's GRPO step) and saves nothing the
    host lacks. It changes no result: the recomputed forward is the same arithmetic.
    """
    import torch

    if torch.cuda.is_available():
        return {"bf16": True, "use_cpu": False, "gradient_checkpointing": True}
    return {"bf16": False, "use_cpu": True, "gradient_checkpointing": False}


def world_size() -> int:
    """Processes training together (set by `accelerate launch` / torchrun; 1 for a plain `quagmire` call)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def per_device_batch(global_batch: int, what: str, grad_accum: int = 1) -> int:
    """The per-process batch that keeps the configured *global* batch whatever the number of GPUs.

    Why: a recipe's batch size is part of the experiment; running it on 8 GPUs instead of 1 must not multiply it.
    """
    processes = world_size()
    if global_batch % (processes * grad_accum):
        raise QuagmireError(
            f"{what} = {global_batch} is not divisible by {processes} process(es) x {grad_accum} gradient "
            f"accumulation step(s); choose a batch that divides evenly or change the number of GPUs"
        )
    return global_batch // (processes * grad_accum)


def aligned_logging_steps(logging_steps: int, save_steps: int) -> int:
    """Log at every checkpoint: a resumed run can only reproduce the logs of an uninterrupted one if each
    checkpoint falls on a logging boundary (metrics accumulated since the last log are not checkpointed)."""
    return math.gcd(logging_steps, save_steps)


def fixed_trainer_args(
    seed: int, logging_steps: int, save_steps: int | None = None, save_total_limit: int = DEFAULT_SAVE_TOTAL_LIMIT
) -> dict[str, Any]:
    """Arguments every trainer of the study runs with, whatever TRL's defaults are.

    With `save_steps`, a full checkpoint (weights, optimizer, scheduler, RNG, trainer state) is written every
    `save_steps` optimizer steps and at the last step, keeping the newest `save_total_limit`.
    """
    saving: dict[str, Any] = {"save_strategy": "no"}
    if save_steps is not None:
        if save_steps < 1 or save_total_limit < 1:
            raise QuagmireError(
                f"save_steps and save_total_limit must be positive (got {save_steps}, {save_total_limit})"
            )
        saving = {
            "save_strategy": "steps",
            "save_steps": save_steps,
            "save_total_limit": save_total_limit,
            "save_only_model": False,  # optimizer, scheduler and RNG states are what make resumption exact
            "ignore_data_skip": False,  # on resume, skip the batches already trained on
        }
    return {
        "seed": seed,
        "data_seed": seed,
        "logging_steps": logging_steps,
        **saving,
        "report_to": [],
        "dataloader_num_workers": 0,
        **device_settings(),
    }


def resumable_trainer_args(
    settings: Mapping[str, Any], logging_steps: int, default_save_steps: int
) -> dict[str, Any]:
    """`fixed_trainer_args` for a run that checkpoints: `save_steps` and `save_total_limit` from its settings
    (schema defaults; the fallbacks serve direct library calls), logging aligned to the checkpoints."""
    save_steps = int(settings.get("save_steps", default_save_steps))
    return fixed_trainer_args(
        settings["seed"],
        logging_steps=aligned_logging_steps(logging_steps, save_steps),
        save_steps=save_steps,
        save_total_limit=int(settings.get("save_total_limit", DEFAULT_SAVE_TOTAL_LIMIT)),
    )


def load_for_training(model_dir: Path, data: Path, what: str, threads: int = 1) -> tuple[pd.DataFrame, Any, Any]:
    """The training rows (`what` names them in errors), the saved tokenizer and the model, in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    frame = pd.read_parquet(data)
    if frame.empty:
        raise QuagmireError(f"{what} {data} has no rows")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return frame, load_tokenizer(model_dir), model


# --- run identity ---------------------------------------------------------------------------------------------


def run_fingerprint(kind: str, settings: Mapping[str, Any], data: Sequence[Path], parent: Path) -> dict[str, Any]:
    """What makes two attempts the same run: resuming is only correct if every part of this is equal."""
    record = {
        "kind": kind,
        "settings": json.loads(json.dumps(dict(settings), sort_keys=True, default=str)),
        "data": {str(p): sha256_file(p) for p in data},
        "parent": {"path": str(parent), "files": folder_identity(parent)},
        "packages": package_versions(),
    }
    record["sha256"] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return record


# --- checkpoints ----------------------------------------------------------------------------------------------


def checkpoint_step(path: Path) -> int | None:
    """N of a `checkpoint-N` folder, None for anything else."""
    match = CHECKPOINT_PATTERN.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoint_is_complete(path: Path) -> bool:
    """Whether `checkpoint-N` was fully written: our marker is there, names step N, and every file it lists
    still exists with the size it had when the trainer had finished saving.

    Why a marker: the HF Trainer writes the weights, optimizer, RNG and state files one after another, in place;
    a job killed in between leaves a folder that has some of them (or a truncated one).
    """
    path = Path(path)
    try:
        marker = read_json(path / COMPLETE_MARKER)
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("global_step") != checkpoint_step(path):
        return False
    files = marker.get("files")
    if not isinstance(files, dict) or "trainer_state.json" not in files:
        return False
    for rel, size in files.items():
        file = path / rel
        if not file.is_file() or file.stat().st_size != size:
            return False
    return True


def list_checkpoints(trainer_dir: Path) -> list[Path]:
    """The `checkpoint-N` folders in `trainer_dir`, newest (largest N) first."""
    if not Path(trainer_dir).is_dir():
        return []
    found = [p for p in Path(trainer_dir).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0, reverse=True)


def last_complete_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest complete checkpoint in `trainer_dir`, skipping any that a kill left half-written."""
    return next((p for p in list_checkpoints(trainer_dir) if checkpoint_is_complete(p)), None)


def _file_sizes(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != COMPLETE_MARKER
    }


def _barrier() -> None:
    """Wait for every process of a distributed run (a no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class CheckpointCompleteMarker(TrainerCallback):
    """After the trainer has saved `checkpoint-N` (on every process), write its completeness marker."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        _barrier()  # every rank has written its RNG state / shards before the marker vouches for them
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_json(folder / COMPLETE_MARKER, {"global_step": state.global_step, "files": _file_sizes(folder)})


class LogLastStep(TrainerCallback):
    """Log at the last step too, so the logged history covers every step (the final loss is the final loss)."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= state.max_steps:
            control.should_log = True


def training_callbacks() -> list[TrainerCallback]:
    """The callbacks every resumable run of the study needs."""
    return [CheckpointCompleteMarker(), LogLastStep()]


def resume_point(trainer: Any, out: Path, fingerprint: Mapping[str, Any]) -> Path | None:
    """Prepare `<out>.partial/` for `trainer` and return the checkpoint to resume from (None: start fresh).

    A partial folder from a different run (another fingerprint) is discarded; half-written checkpoints are
    removed. Call it after the trainer is built (which sets up the processes of a distributed run).
    """
    scratch = partial_dir(out)
    trainer_dir = scratch / TRAINER_SCRATCH
    if trainer.is_world_process_zero():
        claim_partial(scratch, fingerprint, "the partial run")
        trainer_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(scratch / STAGING, ignore_errors=True)
        snapshot_store.drop_unfinished(scratch / snapshot_store.SNAPSHOTS)
        for checkpoint in list_checkpoints(trainer_dir):
            if not checkpoint_is_complete(checkpoint):
                log.warning("%s is incomplete (killed while saving?); removing it", checkpoint)
                shutil.rmtree(checkpoint)
    _barrier()
    resume = last_complete_checkpoint(trainer_dir)
    if resume is not None:
        log.info("resuming from step %d (%s)", checkpoint_step(resume), resume)
    return resume


def train_resumably(trainer: Any, out: Path, fingerprint: Mapping[str, Any]) -> tuple[Path | None, float]:
    """Train to the end, from the last complete checkpoint of an earlier attempt at this run if there is one.

    Returns the checkpoint resumed from (None for a fresh start) and the seconds this attempt trained.
    """
    import time

    resume = resume_point(trainer, out, fingerprint)
    start = time.monotonic()
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    return resume, time.monotonic() - start


def mean_logged_loss(history: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean training loss per step over the whole run, from the logged history (each entry is the mean over the
    steps since the previous one). Why from the history: it survives resumption; the Trainer's own
    `training_loss` only covers the steps of the current `train()` call."""
    total, steps, previous = 0.0, 0, 0
    for row in history:
        if "loss" not in row:
            continue
        window = int(row["step"]) - previous
        total += float(row["loss"]) * window
        steps += window
        previous = int(row["step"])
    return total / steps if steps else None


# --- the finished folder --------------------------------------------------------------------------------------


def save_checkpoint(
    folder: Path, trainer: Any, tokenizer: Any, stats: Mapping[str, Any], lineage_record: Mapping[str, Any]
) -> None:
    """Write the trained model, its tokenizer, `train_stats.json`, the resolved `trainer_config.json` and
    `lineage.json` into `folder`. Every process must call it (FSDP / ZeRO-3 gather the weights collectively)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        # Checkpoints may be sharded (fast to write, resumable); the published model must load with from_pretrained.
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(folder))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(folder)
        write_json(folder / "train_stats.json", dict(stats))
        write_json(folder / "trainer_config.json", trainer.args.to_dict())
        write_json(folder / "lineage.json", dict(lineage_record))


def publish_checkpoint(
    out: Path,
    trainer: Any,
    tokenizer: Any,
    stats: Mapping[str, Any],
    lineage_record: Mapping[str, Any],
    snapshots: tuple[Path, int] | None = None,
) -> None:
    """Stage the finished model in `<out>.partial/final`, rename it onto `out`, then drop the scratch folder.

    The rename is the only step that makes `out` appear, so a job killed at any earlier point leaves no `out`;
    one killed after it leaves a finished `out` and a scratch folder that the next attempt replaces. `snapshots`
    (their published folder, how many were asked for) are published just before that rename.
    """
    out = Path(out)
    scratch = partial_dir(out)
    staging = scratch / STAGING
    if trainer.is_world_process_zero():
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    _barrier()
    save_checkpoint(staging, trainer, tokenizer, stats, lineage_record)
    _barrier()
    if trainer.is_world_process_zero():
        if snapshots is not None:
            folder, count = snapshots
            snapshot_store.publish_snapshots(scratch / snapshot_store.SNAPSHOTS, folder, trainer.state.max_steps, count)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
        shutil.rmtree(scratch, ignore_errors=True)
    _barrier()


# --- the runner -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingJob:
    """One training run as its caller asks for it: the parent model, the rows, the output folder, and two kinds of
    settings.

    `settings` are what the run computes with: they are part of its fingerprint and lineage. `operational` knobs
    (save_steps, save_total_limit, vllm_gpu_memory_utilization) override them for the trainer only, so a run
    resumes across a new checkpoint cadence. `callbacks` are extra `transformers.TrainerCallback`s (monitoring,
    tests) that must not change what is computed. With `snapshots`, `settings["snapshots"]` weight-only snapshots
    along the run are published there (`quagmire.train.snapshots`).
    """

    parent: Path
    data: Path
    out: Path
    settings: Mapping[str, Any]
    operational: Mapping[str, Any] | None = None
    threads: int = 1
    callbacks: Sequence[Any] = ()
    snapshots: Path | None = None  # where to publish weight-only snapshots (settings["snapshots"] of them); None: none

    @property
    def trainer_settings(self) -> dict[str, Any]:
        """The settings the trainer's config is built from: `settings` with the operational knobs laid over them."""
        return {**self.settings, **(self.operational or {})}

    @property
    def trainer_dir(self) -> Path:
        """The trainer's own output_dir, inside the scratch folder: its `checkpoint-N/` folders go there."""
        return partial_dir(self.out) / TRAINER_SCRATCH


@dataclass(frozen=True)
class TrainedRun:
    """What a finished `trainer.train()` leaves for the stage's stats: the trainer (state, log history, args),
    the tokenizer and rows it trained with, the checkpoint this attempt resumed from and how long it trained."""

    trainer: Any
    tokenizer: Any
    frame: pd.DataFrame
    resume: Path | None
    seconds: float  # this attempt's training time, unrounded (the log line rounds it its own way)

    @property
    def global_steps(self) -> int:
        return self.trainer.state.global_step

    @property
    def resumed_from_step(self) -> int | None:
        return checkpoint_step(self.resume) if self.resume is not None else None


@dataclass(frozen=True)
class TrainingStage:
    """What a training stage supplies to `run_training`; the runner does everything else, in its fixed order.

    - `dataset(frame, tokenizer, settings)`: the trainer's dataset from the rows. It runs before anything is
      written, so a stage checks its rows here.
    - `trainer(job, model, tokenizer, dataset, callbacks)`: a context manager that yields the built TRL trainer
      (its config from `job.trainer_settings`, its output_dir `job.trainer_dir`, with `callbacks`). Why a context:
      a trainer may need something alive while it trains and is published (GRPO's grading pool). The trainer
      seeds every RNG when it is built, so the model and dataset handed to it are built first.
    - `stats(run)`: the whole `train_stats.json` record, in the stage's key order.
    - `summary(stats)`: the end of the log line "<title> done: N steps in S s, <summary>".
    """

    kind: str  # the run's kind in its fingerprint and lineage ("sft", "grpo")
    title: str  # its name in the log line ("SFT", "GRPO")
    rows: str  # its training rows' name in errors ("SFT data", "RL prompts")
    log: logging.Logger  # the stage's own logger, which reports the finished run
    dataset: Callable[[pd.DataFrame, Any, Mapping[str, Any]], Any]
    trainer: Callable[[TrainingJob, Any, Any, Any, list[TrainerCallback]], AbstractContextManager[Any]]
    stats: Callable[[TrainedRun], dict[str, Any]]
    summary: Callable[[Mapping[str, Any]], str]


def run_training(stage: TrainingStage, job: TrainingJob) -> dict[str, Any]:
    """Run `job` as `stage` from start to published model; return the stats written to `train_stats.json`.

    The sequence: load the parent model, tokenizer and rows; build the stage's dataset; fingerprint the run; build
    the trainer; resume from the last complete checkpoint of an earlier attempt at this same run (discarding a
    partial run for other inputs or settings); train to the end; publish `job.out` atomically with its lineage,
    resolved trainer config and stats. A job killed at any point leaves no `job.out`, and its rerun resumes.
    """
    frame, tokenizer, model = load_for_training(job.parent, job.data, stage.rows, job.threads)
    dataset = stage.dataset(frame, tokenizer, job.settings)
    fingerprint = run_fingerprint(stage.kind, job.settings, [job.data], job.parent)
    with stage.trainer(job, model, tokenizer, dataset, [*training_callbacks(), *job.callbacks]) as trainer:
        snapshots = None
        if job.snapshots is not None:
            count = int(job.settings["snapshots"])
            scratch = partial_dir(job.out) / snapshot_store.SNAPSHOTS
            trainer.add_callback(snapshot_store.SnapshotCallback(trainer, scratch, count))
            snapshots = (Path(job.snapshots), count)
        resume, seconds = train_resumably(trainer, job.out, fingerprint)
        run = TrainedRun(trainer, tokenizer, frame, resume, seconds)
        stats = stage.stats(run)
        record = lineage(stage.kind, parent=job.parent, data=[job.data], settings=job.settings)
        publish_checkpoint(job.out, trainer, tokenizer, stats, record, snapshots)
    stage.log.info(
        "%s done: %d steps in %.1f s%s, %s",
        stage.title,
        run.global_steps,
        seconds,
        f" (resumed from step {run.resumed_from_step})" if resume is not None else "",
        stage.summary(stats),
    )
    return stats
