"""SFT and GRPO through the real TRL trainers, at toy size: outputs, resolved configs, lineage, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from quagmire.provenance import sha256_file

SFT_SETTINGS = {
    "subset": "random",
    "n": 32,
    "epochs": 1,
    "lr": 1e-3,
    "batch_size": 8,
    "scheduler": "constant",
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "max_length": 128,
    "seed": 0,
}
RL_SETTINGS = {
    "lr": 1e-4,
    "steps": 2,
    "prompts_per_step": 2,
    "group_size": 4,
    "max_completion_length": 16,
    "temperature": 1.0,
    "beta": 0.0,
    "loss_type": "dapo",
    "scale_rewards": "group",
    "seed": 0,
    "grading_timeout_s": 5.0,
}


@pytest.fixture(scope="module")
def sft_data(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("subset") / "random-32.parquet"
    pd.read_parquet(tiny_world / "sft.parquet").head(32).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def sft_checkpoint(tiny_base: Path, sft_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from quagmire.sft import train_sft

    out = tmp_path_factory.mktemp("sft") / "random_n32_ep1"
    train_sft(tiny_base, sft_data, out, SFT_SETTINGS)
    return out


def test_sft_checkpoint_is_a_loadable_model_with_its_tokenizer(sft_checkpoint: Path) -> None:
    from transformers import AutoModelForCausalLM

    from quagmire.world.tokenizer import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(sft_checkpoint)
    tokenizer = load_tokenizer(sft_checkpoint)
    assert model.config.vocab_size == len(tokenizer)
    assert not (sft_checkpoint / "trainer").exists(), "trainer scratch must not be left in the checkpoint"


def test_sft_writes_the_resolved_trainer_config(sft_checkpoint: Path) -> None:
    resolved = json.loads((sft_checkpoint / "trainer_config.json").read_text())
    assert resolved["learning_rate"] == SFT_SETTINGS["lr"]
    assert resolved["per_device_train_batch_size"] == SFT_SETTINGS["batch_size"]
    assert resolved["num_train_epochs"] == SFT_SETTINGS["epochs"]
    assert resolved["completion_only_loss"] is True and resolved["packing"] is False
    stats = json.loads((sft_checkpoint / "train_stats.json").read_text())
    assert stats["global_steps"] == 32 // 8


def test_sft_lineage_names_the_exact_data_and_parent(
    sft_checkpoint: Path, sft_data: Path, tiny_base: Path
) -> None:
    lineage = json.loads((sft_checkpoint / "lineage.json").read_text())
    assert lineage["kind"] == "sft"
    assert lineage["parent"]["path"] == str(tiny_base)
    assert lineage["data"][0]["sha256"] == sha256_file(sft_data)
    assert lineage["settings"]["epochs"] == 1
    assert "trl" in lineage["packages"]


def test_grpo_trains_from_an_sft_checkpoint_with_the_configured_group(
    sft_checkpoint: Path, tiny_world: Path, tmp_path: Path
) -> None:
    from quagmire.grpo import train_grpo

    out = tmp_path / "rl"
    stats = train_grpo(sft_checkpoint, tiny_world / "rl.parquet", out, RL_SETTINGS)
    assert stats["global_steps"] == RL_SETTINGS["steps"]
    resolved = json.loads((out / "trainer_config.json").read_text())
    assert resolved["num_generations"] == RL_SETTINGS["group_size"]
    assert (
        resolved["per_device_train_batch_size"] == RL_SETTINGS["group_size"] * RL_SETTINGS["prompts_per_step"]
    )
    assert resolved["loss_type"] == "dapo" and resolved["beta"] == 0.0
    assert all("reward" in row for row in stats["history"])
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["parent"]["lineage"]["kind"] == "sft", "the GRPO lineage must embed its SFT parent's"


def test_grpo_rejects_prompts_without_gold_answers(sft_checkpoint: Path, tmp_path: Path) -> None:
    from quagmire.errors import QuagmireError
    from quagmire.grpo import train_grpo

    prompts = tmp_path / "rl.parquet"
    pd.DataFrame({"prompt": ["1+1="]}).to_parquet(prompts)
    with pytest.raises(QuagmireError, match="answer"):
        train_grpo(sft_checkpoint, prompts, tmp_path / "out", RL_SETTINGS)
    assert not (tmp_path / "out").exists()


def _kill_when_training(cmd: list[str], parent: Path, timeout_s: float = 120.0) -> None:
    """Start `cmd`, wait until its temporary output folder exists and training has begun, then SIGKILL it."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{cmd[1]} finished before it could be killed (make the job longer)")
            if any(p.name.endswith(".tmp") for p in parent.iterdir()):
                time.sleep(3.0)  # let the trainer get going inside the temporary folder
                break
            time.sleep(0.2)
        else:
            pytest.fail("the job never created its temporary output folder")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_killed_sft_leaves_nothing_that_looks_finished(
    tiny_base: Path, sft_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sft" / "long_run"
    out.parent.mkdir()
    settings = {**SFT_SETTINGS, "epochs": 500}
    cmd = [
        sys.executable,
        "-m",
        "quagmire.cli",
        "sft",
        "--base",
        str(tiny_base),
        "--data",
        str(sft_data),
        "--settings",
        json.dumps(settings),
        "--out",
        str(out),
    ]
    _kill_when_training(cmd, out.parent)
    assert not out.exists(), "a killed SFT job must not leave its output folder"


@pytest.mark.slow
def test_killed_grpo_leaves_nothing_that_looks_finished(
    sft_checkpoint: Path, tiny_world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rl" / "long_run"
    out.parent.mkdir()
    settings = {**RL_SETTINGS, "steps": 5000}
    cmd = [
        sys.executable,
        "-m",
        "quagmire.cli",
        "grpo",
        "--model",
        str(sft_checkpoint),
        "--prompts",
        str(tiny_world / "rl.parquet"),
        "--settings",
        json.dumps(settings),
        "--out",
        str(out),
    ]
    _kill_when_training(cmd, out.parent)
    assert not out.exists(), "a killed GRPO job must not leave its output folder"


def test_every_trainer_runs_with_the_same_fixed_arguments_on_cpu() -> None:
    from quagmire.training import fixed_trainer_args

    args = fixed_trainer_args(seed=7, logging_steps=3)
    assert args["seed"] == args["data_seed"] == 7
    assert args["save_strategy"] == "no" and args["report_to"] == []
    assert args["use_cpu"] is True and args["bf16"] is False  # no GPU on this machine: fp32
