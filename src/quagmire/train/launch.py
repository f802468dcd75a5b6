"""How a training job is started: a plain `quagmire` process on one device, `accelerate launch` on several GPUs.

Why the choice follows the model's size: data parallelism (DDP) keeps the whole model, its gradients and its Adam
states on every GPU, about 16 bytes per parameter in bf16 mixed precision, which fits an 80 GB GPU (with room for
activations) up to about 3B parameters. Above that the states must be sharded over the GPUs: FSDP full-shard by
default, DeepSpeed ZeRO-3 when asked. The accelerate config files live in `config/accelerate/`; the number of
processes is always passed on the command line, so one file serves any number of GPUs on a node.

A rule stays one CLI call, `quagmire sft ... --gpus {resources.gpu}`: with more than one GPU the command re-executes
itself under `accelerate launch --config_file config/accelerate/<ddp|fsdp|zero3>.yaml --num_processes N -m
quagmire.cli sft ...` (`relaunch`), choosing the config from the parameter count of the model it trains.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quagmire import REPO
from quagmire.errors import QuagmireError
from quagmire.hf import num_parameters

log = logging.getLogger(__name__)

CONFIG_DIR = REPO / "config" / "accelerate"
DDP_MAX_PARAMS = 3_000_000_000  # below this, every GPU can hold a full replica (see the module docstring)
SHARDED_BACKENDS = ("fsdp", "zero3")


def accelerate_config_for(
    num_params: int, num_gpus: int, sharded: str = "fsdp", config_dir: Path = CONFIG_DIR
) -> str | None:
    """The accelerate config file for training a `num_params` model on `num_gpus` GPUs of one node.

    None for one GPU or none (a plain process, no launcher); `ddp.yaml` below DDP_MAX_PARAMS parameters;
    `fsdp.yaml` (or `zero3.yaml` with sharded="zero3") from there on.
    """
    if num_params < 1:
        raise QuagmireError(f"the model's parameter count must be positive (got {num_params})")
    if num_gpus < 0:
        raise QuagmireError(f"the number of GPUs cannot be negative (got {num_gpus})")
    if sharded not in SHARDED_BACKENDS:
        raise QuagmireError(f"sharded training backend must be one of {', '.join(SHARDED_BACKENDS)} (got {sharded!r})")
    if num_gpus <= 1:
        return None
    name = "ddp" if num_params < DDP_MAX_PARAMS else sharded
    path = Path(config_dir) / f"{name}.yaml"
    if not path.is_file():
        raise QuagmireError(f"accelerate config {path} is missing: restore config/accelerate/ from the repository")
    return str(path)


def launch_command(config_file: str | None, num_gpus: int, main_process_port: int | None = None) -> list[str]:
    """The command words that start the `quagmire` CLI: `["quagmire"]` without a config file, else
    `accelerate launch --config_file F --num_processes N [--main_process_port P] -m quagmire.cli`.

    `main_process_port` matters when two multi-GPU jobs share a node (each needs its own rendezvous port).
    """
    if config_file is None:
        return ["quagmire"]
    if num_gpus < 2:
        raise QuagmireError(f"accelerate launch needs at least 2 GPUs (got {num_gpus}); run plain `quagmire` instead")
    command = ["accelerate", "launch", "--config_file", str(config_file), "--num_processes", str(num_gpus)]
    if main_process_port is not None:
        command += ["--main_process_port", str(main_process_port)]
    return [*command, "-m", "quagmire.cli"]


def relaunch(argv: Sequence[str], model_dir: Path, num_gpus: int, sharded: str = "fsdp") -> None:
    """Replace this process by `accelerate launch ... -m quagmire.cli <argv>` when training needs several GPUs.

    Returns (and the caller trains in this process) for one GPU or none, and inside a launched worker (accelerate
    sets LOCAL_RANK), so the command never launches itself twice.
    """
    if num_gpus <= 1 or "LOCAL_RANK" in os.environ:
        return
    config = accelerate_config_for(num_parameters(model_dir), num_gpus, sharded)
    command = [*launch_command(config, num_gpus), *argv]
    log.info("launching %d processes: %s", num_gpus, shlex.join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(command[0], command)


# ------------------------------------------------------------------------------------ the trainers' entry points


def _operational(**knobs: Any) -> dict[str, Any]:
    """Operational knobs given on the command line (checkpoint cadence, vLLM memory): how a run goes, not what
    it computes, so they stay out of its settings, its resume fingerprint and its lineage. Only those given."""
    return {key: value for key, value in knobs.items() if value is not None}


def run_sft(
    argv: Sequence[str],
    base: str | os.PathLike[str],
    data: str | os.PathLike[str],
    settings: Mapping[str, Any],
    out: str | os.PathLike[str],
    sharding: str,
    gpus: int = 0,
    threads: int = 1,
    save_steps: int | None = None,
    save_total_limit: int | None = None,
    snapshots: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """`quagmire sft`: re-execute under `accelerate launch` when `gpus` > 1 (`relaunch`, which never returns
    then), else fine-tune here (`train_sft`). `argv` is the command line to re-execute."""
    from quagmire.train.sft import train_sft

    relaunch(argv, Path(base), gpus, sharding)
    return train_sft(
        Path(base), Path(data), Path(out), settings, threads=threads,
        operational=_operational(save_steps=save_steps, save_total_limit=save_total_limit),
        snapshots=Path(snapshots) if snapshots is not None else None,
    )


def run_grpo(
    argv: Sequence[str],
    model: str | os.PathLike[str],
    prompts: str | os.PathLike[str],
    settings: Mapping[str, Any],
    out: str | os.PathLike[str],
    sharding: str,
    gpus: int = 0,
    threads: int = 1,
    save_steps: int | None = None,
    save_total_limit: int | None = None,
    vllm_gpu_memory: float | None = None,
) -> dict[str, Any]:
    """`quagmire grpo`: re-execute under `accelerate launch` when `gpus` > 1 (`relaunch`), else run GRPO here
    (`train_grpo`). `argv` is the command line to re-execute."""
    from quagmire.train.grpo import train_grpo

    relaunch(argv, Path(model), gpus, sharding)
    return train_grpo(
        Path(model), Path(prompts), Path(out), settings, threads=threads,
        operational=_operational(save_steps=save_steps, save_total_limit=save_total_limit,
                                 vllm_gpu_memory_utilization=vllm_gpu_memory),
    )
