"""Weight-only snapshots along SFT: the model at evenly spaced optimizer steps, for the loss along SFT.

Why: the paper's filter drops a candidate whose held-out loss is "high and rising"; whether it rises needs the
loss at several points of the run, not only at its end. A snapshot is the model (weights, config, tokenizer) at one
step, no optimizer or RNG state: it is measured (`quagmire.eval.along_sft`), never resumed from.

Where they live. While training, `<out>.partial/snapshots/step-N/` (each written as `step-N.tmp/` and renamed, so a
folder without the suffix is whole), beside the trainer's resume checkpoints. The snapshot callback runs at the end
of an optimizer step, before the trainer saves that step's checkpoint, so a run killed and resumed from checkpoint
C already has every snapshot up to C and rewrites the later ones as it replays the same steps. At the end they are
published as their own folder `sft/<recipe>.snapshots/` (a second output of the `sft` rule), not inside the model
folder: GRPO, sampling and genloss take the model folder as input and fingerprint it (every file's size and mtime,
small files by sha256), and at 7B scale K more copies of the weights there would be K × 15-30 GB more to stage and
identify for every job that reads the model.

Saving changes nothing computed: it reads the weights and draws no random number, so the final model is the same
bytes with or without snapshots (tested).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from quagmire.errors import QuagmireError
from quagmire.io import read_json, write_json

log = logging.getLogger(__name__)

SNAPSHOTS = "snapshots"  # the snapshots folder inside the scratch folder
SNAPSHOT_PATTERN = re.compile(r"^step-(\d+)$")
SNAPSHOT_RECORD = "snapshot.json"  # in each step-N/: its step, epoch and the run's total steps
TMP_SUFFIX = ".tmp"


def snapshot_steps(total_steps: int, count: int) -> list[int]:
    """`count` optimizer steps evenly spaced over 1..`total_steps`, the last step always among them: step
    ceil(i · total / count) for i = 1..count (fewer when the run has fewer steps than `count`)."""
    if total_steps < 1 or count < 1:
        raise QuagmireError(f"snapshots need a positive step count and snapshot count (got {total_steps}, {count})")
    return sorted({-(-i * total_steps // count) for i in range(1, count + 1)})


def snapshot_step(path: Path) -> int | None:
    """N of a `step-N` folder, None for anything else."""
    match = SNAPSHOT_PATTERN.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_snapshots(folder: str | os.PathLike[str]) -> list[Path]:
    """The whole `step-N` folders in `folder`, by step (half-written `step-N.tmp` ones are not listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and snapshot_step(p) is not None]
    return sorted(found, key=lambda p: snapshot_step(p) or 0)


def snapshot_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `snapshot.json` of one snapshot (step, epoch, total_steps)."""
    try:
        return read_json(Path(path) / SNAPSHOT_RECORD)
    except (OSError, ValueError) as exc:
        raise QuagmireError(f"{path} is not an SFT snapshot (no readable {SNAPSHOT_RECORD})") from exc


def drop_unfinished(folder: Path) -> None:
    """Remove half-written `step-N.tmp` folders a killed attempt left behind."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.endswith(TMP_SUFFIX):
                shutil.rmtree(path, ignore_errors=True)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def save_snapshot(folder: Path, trainer: Any, step: int, epoch: float | None, total_steps: int) -> Path:
    """Write the trainer's model (and tokenizer) as `folder/step-N` atomically; every process must call it
    (FSDP / ZeRO-3 gather the weights collectively)."""
    final = folder / f"step-{step}"
    tmp = folder / f"step-{step}{TMP_SUFFIX}"
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    plugin = trainer.accelerator.state.fsdp_plugin if getattr(trainer, "is_fsdp_enabled", False) else None
    previous = plugin.state_dict_type if plugin is not None else None
    if plugin is not None:  # a snapshot must load with from_pretrained; the resume checkpoints keep their own type
        plugin.set_state_dict_type("FULL_STATE_DICT")
    try:
        trainer.save_model(str(tmp))
    finally:
        if plugin is not None:
            plugin.set_state_dict_type(previous)
    _barrier()
    if trainer.is_world_process_zero():
        write_json(tmp / SNAPSHOT_RECORD, {"step": step, "epoch": epoch, "total_steps": total_steps})
        if final.exists():  # written by an attempt killed after it and before the next checkpoint: same step
            shutil.rmtree(final)
        os.replace(tmp, final)
    _barrier()
    return final


class SnapshotCallback(TrainerCallback):
    """Save a weight-only snapshot at each of `snapshot_steps(max_steps, count)` into `folder`.

    It runs at the end of an optimizer step, which the trainer calls before it saves that step's checkpoint."""

    def __init__(self, trainer: Any, folder: Path, count: int) -> None:
        self.trainer = trainer
        self.folder = Path(folder)
        self.count = count
        self.steps: set[int] = set()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps = set(snapshot_steps(state.max_steps, self.count))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step in self.steps:
            save_snapshot(self.folder, self.trainer, state.global_step, state.epoch, state.max_steps)


def publish_snapshots(scratch: Path, out: Path, total_steps: int, count: int) -> None:
    """Publish the snapshots of `scratch` as `out`, atomically, after checking that every expected step is there.

    Files are hard-linked where the file system allows (no second copy of the weights; the scratch folder, which
    still holds them, is deleted once the model is published), else copied; `out` appears by one rename. A job
    killed after this and before the model's own rename still finds them in the scratch folder on its rerun."""
    expected = snapshot_steps(total_steps, count)
    present = {snapshot_step(p) for p in list_snapshots(scratch)}
    missing = [s for s in expected if s not in present]
    if missing:
        raise QuagmireError(
            f"SFT snapshots missing for step(s) {', '.join(map(str, missing))} in {scratch} (expected {expected}); "
            "delete the run's .partial folder and rerun"
        )
    out = Path(out)
    tmp = out.with_name(out.name + TMP_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for step in expected:
        shutil.copytree(scratch / f"step-{step}", tmp / f"step-{step}", copy_function=_link_or_copy)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
