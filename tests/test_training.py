"""SFT and GRPO through the real TRL trainers, at toy size: outputs, resolved configs, lineage, atomicity,
checkpoints and resumption after a SIGKILL, chat templates, rewards, and how multi-GPU jobs are launched."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from transformers import TrainerCallback

from quagmire.errors import QuagmireError
from quagmire.io import partial_dir
from quagmire.provenance import sha256_file
from quagmire.train.runner import (
    COMPLETE_MARKER,
    TRAINER_SCRATCH,
    checkpoint_is_complete,
    checkpoint_step,
    last_complete_checkpoint,
)

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
TIMINGS = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second"}  # wall clock
# A chat template for the char-level tokenizer (it has no newline token): a user turn, then the assistant's.
# Runs one training in a child process with a pause after step `pause_after`, so that the test can SIGKILL it
# after a checkpoint is on disk. The pause (a sleep in a callback) changes nothing that is computed.
DRIVER = """
import json, sys, time
from pathlib import Path
from transformers import TrainerCallback


class Pause(TrainerCallback):
    def __init__(self, after):
        self.after = after

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step > self.after:
            time.sleep(600)


if __name__ == "__main__":  # grading workers re-import the main module
    spec = json.loads(sys.argv[1])
    if spec["kind"] == "sft":
        from quagmire.train.sft import train_sft as train
    else:
        from quagmire.train.grpo import train_grpo as train
    paths = [Path(spec[key]) for key in ("parent", "data", "out")]
    train(*paths, spec["settings"], callbacks=[Pause(spec["pause_after"])])
"""


@pytest.fixture(scope="module")
def sft_checkpoint(tiny_base: Path, sft_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from quagmire.train.sft import train_sft

    out = tmp_path_factory.mktemp("sft") / "random_n32_ep1"
    train_sft(tiny_base, sft_data, out, SFT_SETTINGS)
    return out


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _stats(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "train_stats.json").read_text())


# --- outputs --------------------------------------------------------------------------------------------------


def test_sft_checkpoint_is_a_loadable_model_with_its_tokenizer(sft_checkpoint: Path) -> None:
    from transformers import AutoModelForCausalLM

    from quagmire.hf import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(sft_checkpoint)
    tokenizer = load_tokenizer(sft_checkpoint)
    assert model.config.vocab_size == len(tokenizer)
    assert not (sft_checkpoint / TRAINER_SCRATCH).exists(), "trainer scratch must not be left in the checkpoint"
    assert not partial_dir(sft_checkpoint).exists(), "a finished run removes its scratch folder"


def test_sft_writes_the_resolved_trainer_config(sft_checkpoint: Path) -> None:
    resolved = json.loads((sft_checkpoint / "trainer_config.json").read_text())
    assert resolved["learning_rate"] == SFT_SETTINGS["lr"]
    assert resolved["per_device_train_batch_size"] == SFT_SETTINGS["batch_size"]
    assert resolved["num_train_epochs"] == SFT_SETTINGS["epochs"]
    assert resolved["completion_only_loss"] is True and resolved["packing"] is False
    assert resolved["save_strategy"] == "steps" and resolved["save_steps"] == 100
    stats = _stats(sft_checkpoint)
    assert stats["global_steps"] == 32 // 8
    assert stats["resumed_from_step"] is None and stats["chat_template"] is False
    assert stats["history"][-1]["step"] == stats["global_steps"], "the last step is always logged"


def test_sft_lineage_names_the_exact_data_and_parent(sft_checkpoint: Path, sft_data: Path, tiny_base: Path) -> None:
    lineage = json.loads((sft_checkpoint / "lineage.json").read_text())
    assert lineage["kind"] == "sft"
    assert lineage["parent"]["path"] == str(tiny_base)
    assert lineage["data"][0]["sha256"] == sha256_file(sft_data)
    assert lineage["settings"]["epochs"] == 1
    assert "trl" in lineage["packages"]


def test_grpo_trains_from_an_sft_checkpoint_with_the_configured_group(
    sft_checkpoint: Path, tiny_world: Path, tmp_path: Path
) -> None:
    from quagmire.train.grpo import train_grpo

    out = tmp_path / "rl"
    stats = train_grpo(sft_checkpoint, tiny_world / "rl.parquet", out, RL_SETTINGS)
    assert stats["global_steps"] == RL_SETTINGS["steps"]
    resolved = json.loads((out / "trainer_config.json").read_text())
    assert resolved["num_generations"] == RL_SETTINGS["group_size"]
    assert resolved["per_device_train_batch_size"] == RL_SETTINGS["group_size"] * RL_SETTINGS["prompts_per_step"]
    assert resolved["loss_type"] == "dapo" and resolved["beta"] == 0.0
    assert resolved["use_vllm"] is False and resolved["reward_weights"] is None
    assert all("reward" in row for row in stats["history"])
    rewarded = [row["step"] for row in stats["history"] if "reward" in row]
    assert rewarded == list(range(1, RL_SETTINGS["steps"] + 1)), "early-RL fits need a reward at every step"
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["parent"]["lineage"]["kind"] == "sft", "the GRPO lineage must embed its SFT parent's"
    assert not partial_dir(out).exists()


def test_grpo_rejects_prompts_without_gold_answers(sft_checkpoint: Path, tmp_path: Path) -> None:
    from quagmire.train.grpo import train_grpo

    prompts = tmp_path / "rl.parquet"
    pd.DataFrame({"prompt": ["1+1="]}).to_parquet(prompts)
    with pytest.raises(QuagmireError, match="answer"):
        train_grpo(sft_checkpoint, prompts, tmp_path / "out", RL_SETTINGS)
    assert not (tmp_path / "out").exists()
    assert not partial_dir(tmp_path / "out").exists()


# --- resumption after SIGKILL ---------------------------------------------------------------------------------


def _kill_after_checkpoint(
    spec: dict[str, Any], step: int, launcher: tuple[str, ...] = (sys.executable,), timeout_s: float = 120.0
) -> None:
    """Run the DRIVER on `spec` (with `launcher`: python or torchrun), wait until checkpoint `step` is complete
    on disk, then SIGKILL the job and everything it started."""
    out = Path(spec["out"])
    trainer_dir = partial_dir(out) / TRAINER_SCRATCH
    driver = out.parent / "driver.py"
    driver.parent.mkdir(parents=True, exist_ok=True)
    driver.write_text(DRIVER)
    proc = subprocess.Popen(
        [*launcher, str(driver), json.dumps({**spec, "pause_after": step})],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its grading workers die with it
    )
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the {spec['kind']} job exited (status {proc.returncode}) before it could be killed")
            newest = last_complete_checkpoint(trainer_dir)
            if newest is not None and checkpoint_step(newest) >= step:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the {spec['kind']} job wrote no complete checkpoint-{step} in {timeout_s} s")
    finally:
        tree = _descendants(proc.pid)  # torchrun's workers leave its process group: kill each, as Slurm would
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def _descendants(pid: int) -> list[int]:
    """Every live process started (directly or not) by `pid`, from the parent ids in /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _fake_half_written_checkpoint(trainer_dir: Path, step: int) -> Path:
    """What a kill in the middle of `_save_checkpoint` leaves: some files, one truncated, no marker."""
    source = last_complete_checkpoint(trainer_dir)
    assert source is not None
    target = trainer_dir / f"checkpoint-{step}"
    shutil.copytree(source, target)
    (target / COMPLETE_MARKER).unlink()
    (target / "trainer_state.json").unlink()
    with open(target / "optimizer.pt", "r+b") as handle:
        handle.truncate(100)
    return target


def _assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    """Same steps, same logged history (losses, rewards) and the same weights, bit for bit."""
    a, b = _stats(resumed), _stats(uninterrupted)
    assert a["global_steps"] == b["global_steps"]
    assert len(a["history"]) == len(b["history"])
    for row_a, row_b in zip(a["history"], b["history"], strict=True):
        keys = (row_a.keys() | row_b.keys()) - TIMINGS
        differ = sorted(k for k in keys if row_a.get(k) != row_b.get(k))
        shown = ", ".join(f"{k} {row_a.get(k)} != {row_b.get(k)}" for k in differ)
        assert not differ, f"step {row_a['step']}: {shown}"
    wa, wb = _weights(resumed), _weights(uninterrupted)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{name} differs after resumption"


@pytest.mark.slow
def test_killed_sft_resumes_to_the_same_checkpoint(
    tiny_base: Path, sft_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from quagmire.train.sft import train_sft

    # 2 epochs of 4 steps, a checkpoint every 2: killed after step 6, the run resumes mid-way through epoch 2
    # (the hardest case: a new epoch's shuffle, then batches to skip).
    settings = {**SFT_SETTINGS, "epochs": 2, "save_steps": 2}
    out = tmp_path / "sft" / "resumed"
    _kill_after_checkpoint(
        {"kind": "sft", "parent": str(tiny_base), "data": str(sft_data), "out": str(out), "settings": settings}, 6
    )
    assert not out.exists(), "a killed SFT job must not leave its output folder"
    trainer_dir = partial_dir(out) / TRAINER_SCRATCH
    resume_from = checkpoint_step(last_complete_checkpoint(trainer_dir))
    assert resume_from == 6
    half = _fake_half_written_checkpoint(trainer_dir, 8)
    assert not checkpoint_is_complete(half)

    with caplog.at_level(logging.INFO, logger="quagmire"):
        resumed = train_sft(tiny_base, sft_data, out, settings)
    assert resumed["resumed_from_step"] == 6
    assert "resuming from step 6" in caplog.text
    assert "checkpoint-8 is incomplete" in caplog.text
    assert not partial_dir(out).exists()

    reference = tmp_path / "sft" / "uninterrupted"
    uninterrupted = train_sft(tiny_base, sft_data, reference, settings)
    assert uninterrupted["resumed_from_step"] is None
    assert resumed["global_steps"] == uninterrupted["global_steps"] == 8
    assert resumed["final_logged_loss"] == uninterrupted["final_logged_loss"]
    assert resumed["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-12)
    _assert_same_run(out, reference)


@pytest.mark.slow
def test_killed_grpo_resumes_to_the_same_checkpoint(sft_checkpoint: Path, tiny_world: Path, tmp_path: Path) -> None:
    from quagmire.train.grpo import train_grpo

    # The toy model never solves a real problem: with the true golds every reward is 0, every advantage 0, and
    # GRPO would leave the weights alone, so "resumed == uninterrupted" would hold trivially. With the gold "0",
    # math-verify (reading the last number of an unboxed completion) rewards a few random completions, which
    # gives real updates. Generation samples from the global torch RNG, which the checkpoint restores.
    prompts = tmp_path / "rl.parquet"
    pd.read_parquet(tiny_world / "rl.parquet").assign(answer="0").to_parquet(prompts)
    settings = {
        **RL_SETTINGS,
        "steps": 6,
        "save_steps": 2,
        "lr": 1e-3,
        "prompts_per_step": 4,
        "group_size": 16,
        "max_completion_length": 32,
    }
    out = tmp_path / "rl" / "resumed"
    spec = {"kind": "grpo", "parent": str(sft_checkpoint), "data": str(prompts), "out": str(out)}
    _kill_after_checkpoint({**spec, "settings": settings}, 2)
    assert not out.exists(), "a killed GRPO job must not leave its output folder"

    resumed = train_grpo(sft_checkpoint, prompts, out, settings)
    assert resumed["resumed_from_step"] == 2
    uninterrupted = train_grpo(sft_checkpoint, prompts, tmp_path / "rl" / "uninterrupted", settings)
    assert resumed["global_steps"] == uninterrupted["global_steps"] == 6
    assert any(row["grad_norm"] > 0 for row in resumed["history"][2:]), "no update after the resume: a vacuous test"
    assert [r["reward"] for r in resumed["history"]] == [r["reward"] for r in uninterrupted["history"]]
    assert resumed["history"][-1]["loss"] == uninterrupted["history"][-1]["loss"]
    _assert_same_run(out, tmp_path / "rl" / "uninterrupted")
    parent = _weights(sft_checkpoint)
    assert any(not torch.equal(parent[k], w) for k, w in _weights(out).items()), "GRPO changed nothing"


TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")


@pytest.mark.slow
def test_killed_two_process_sft_resumes_and_matches_one_process(
    tiny_base: Path, sft_data: Path, sft_checkpoint: Path, tmp_path: Path
) -> None:
    """Real data parallelism on CPU (torchrun, gloo): rank-aware markers, resumption and publishing, and the
    global batch kept, so two processes train what one does (up to float summation order)."""
    settings = {**SFT_SETTINGS, "save_steps": 2}
    out = tmp_path / "ddp" / "sft"
    spec = {"kind": "sft", "parent": str(tiny_base), "data": str(sft_data), "out": str(out), "settings": settings}
    _kill_after_checkpoint(spec, 2, launcher=TORCHRUN)
    assert not out.exists()
    checkpoint = partial_dir(out) / TRAINER_SCRATCH / "checkpoint-2"
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in checkpoint.iterdir()}, "one RNG state a rank"
    command = ["-m", "quagmire.cli", "sft", "--base", str(tiny_base), "--data", str(sft_data)]
    command += ["--settings", json.dumps(settings), "--out", str(out), "--sharding", "fsdp"]
    done = subprocess.run([*TORCHRUN, *command], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from step 2" in done.stderr
    stats, single = _stats(out), _stats(sft_checkpoint)
    assert stats["resumed_from_step"] == 2 and stats["global_steps"] == single["global_steps"] == 4
    assert json.loads((out / "trainer_config.json").read_text())["per_device_train_batch_size"] == 4
    assert stats["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
    reference = _weights(sft_checkpoint)
    for name, weight in _weights(out).items():
        torch.testing.assert_close(weight, reference[name], rtol=1e-4, atol=1e-6)
    assert not partial_dir(out).exists()


class _CrashAfter(TrainerCallback):
    """Raises after checkpoint `step` is saved, leaving a partial run behind as a crash would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.step:
            raise RuntimeError("simulated crash")


def test_a_partial_run_for_other_settings_is_discarded_not_resumed(
    tiny_base: Path, sft_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from quagmire.train.sft import train_sft

    out = tmp_path / "sft"
    settings = {**SFT_SETTINGS, "save_steps": 2}
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sft(tiny_base, sft_data, out, settings, callbacks=[_CrashAfter(2)])
    assert checkpoint_step(last_complete_checkpoint(partial_dir(out) / TRAINER_SCRATCH)) == 2
    with caplog.at_level(logging.INFO, logger="quagmire"):
        stats = train_sft(tiny_base, sft_data, out, {**settings, "lr": 2e-3})
    assert stats["resumed_from_step"] is None
    assert "discarding the partial run" in caplog.text and "settings" in caplog.text
    assert stats["global_steps"] == 4 and not partial_dir(out).exists()


def test_a_run_stopped_after_its_last_checkpoint_publishes_without_training_again(
    tiny_base: Path, sft_data: Path, sft_checkpoint: Path, tmp_path: Path
) -> None:
    from quagmire.train.sft import train_sft

    out = tmp_path / "sft"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sft(tiny_base, sft_data, out, SFT_SETTINGS, callbacks=[_CrashAfter(4)])  # 4 = the last step
    assert not out.exists()
    stats = train_sft(tiny_base, sft_data, out, SFT_SETTINGS)
    assert stats["resumed_from_step"] == 4 and stats["global_steps"] == 4
    assert stats["final_logged_loss"] == _stats(sft_checkpoint)["final_logged_loss"]
    reference = _weights(sft_checkpoint)
    assert all(torch.equal(reference[k], w) for k, w in _weights(out).items())


def test_the_fingerprint_follows_settings_data_and_parent(tiny_base: Path, sft_data: Path, tmp_path: Path) -> None:
    from quagmire.train.runner import run_fingerprint

    data, parent = tmp_path / "data.parquet", tmp_path / "parent"
    shutil.copy(sft_data, data)
    shutil.copytree(tiny_base, parent)
    first = run_fingerprint("sft", SFT_SETTINGS, [data], parent)["sha256"]
    assert run_fingerprint("sft", dict(reversed(SFT_SETTINGS.items())), [data], parent)["sha256"] == first
    assert run_fingerprint("grpo", SFT_SETTINGS, [data], parent)["sha256"] != first
    assert run_fingerprint("sft", {**SFT_SETTINGS, "lr": 2e-3}, [data], parent)["sha256"] != first
    pd.read_parquet(sft_data).head(31).to_parquet(data)
    second = run_fingerprint("sft", SFT_SETTINGS, [data], parent)["sha256"]
    assert second != first, "other data, same path"
    with open(parent / "config.json", "a") as handle:
        handle.write(" ")
    assert run_fingerprint("sft", SFT_SETTINGS, [data], parent)["sha256"] != second, "a changed parent model"


def test_only_complete_checkpoints_are_resumed_from(tmp_path: Path) -> None:
    from quagmire.io import write_json

    def checkpoint(step: int, marker: bool = True, marker_step: int | None = None) -> Path:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"x" * 64)
        if marker:
            files = {"trainer_state.json": 2, "model.safetensors": 64}
            write_json(folder / COMPLETE_MARKER, {"global_step": marker_step or step, "files": files})
        return folder

    assert last_complete_checkpoint(tmp_path) is None
    checkpoint(2)
    checkpoint(10)
    checkpoint(12, marker=False)  # killed before the marker
    checkpoint(14, marker_step=12)  # a marker copied from elsewhere
    truncated = checkpoint(16)
    (truncated / "model.safetensors").write_bytes(b"x" * 10)  # a file cut short after the marker
    (tmp_path / "checkpoint-oops").mkdir()
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_the_runner_owns_the_sequence_and_a_stage_supplies_only_its_parts(
    tiny_base: Path, sft_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A toy stage (a fake trainer, no TRL): the runner builds the dataset before anything is written, keeps the
    stage's trainer context open through training and publishing, hands the trainer only the operational knobs,
    and publishes the stage's stats with the runner's lineage and log line."""
    from types import SimpleNamespace

    from quagmire.train.runner import TrainingJob, TrainingStage, run_training

    events: list[Any] = []
    out = tmp_path / "toy"

    class FakeTrainer:
        def __init__(self, settings: dict[str, Any], output_dir: Path) -> None:
            self.args = SimpleNamespace(to_dict=lambda: {"save_steps": settings["save_steps"]})
            self.state = SimpleNamespace(global_step=0)
            self.output_dir = output_dir

        def is_world_process_zero(self) -> bool:
            return True

        def train(self, resume_from_checkpoint: str | None = None) -> None:
            events.append(("train", resume_from_checkpoint, self.output_dir.is_dir()))
            self.state.global_step = 3

        def save_model(self, folder: str) -> None:
            events.append("save")
            (Path(folder) / "model.bin").write_text("weights")

    @contextlib.contextmanager
    def open_trainer(job: TrainingJob, model: Any, tokenizer: Any, dataset: Any, callbacks: list[Any]):
        events.append(("open", dataset[:1], [type(c).__name__ for c in callbacks]))
        assert not partial_dir(job.out).exists(), "nothing is written before the trainer exists"
        yield FakeTrainer(job.trainer_settings, job.trainer_dir)
        events.append("close")

    def dataset(frame: pd.DataFrame, tokenizer: Any, settings: Any) -> list[str]:
        events.append("dataset")
        return list(frame["prompt"])

    stage = TrainingStage(
        kind="toy",
        title="Toy",
        rows="toy rows",
        log=logging.getLogger("quagmire.tests.toy"),
        dataset=dataset,
        trainer=open_trainer,
        stats=lambda run: {"steps": run.global_steps, "resumed": run.resumed_from_step, "rows": len(run.frame)},
        summary=lambda stats: f"{stats['rows']} rows",
    )
    settings = {"seed": 0, "lr": 1e-3}
    job = TrainingJob(tiny_base, sft_data, out, settings, operational={"save_steps": 5}, callbacks=[TrainerCallback()])
    with caplog.at_level(logging.INFO, logger="quagmire"):
        stats = run_training(stage, job)

    first = pd.read_parquet(sft_data)["prompt"].iloc[0]
    assert events[:2] == ["dataset", ("open", [first], ["CheckpointCompleteMarker", "LogLastStep", "TrainerCallback"])]
    assert events[2:] == [("train", None, True), "save", "close"], "published while the trainer context is open"
    assert stats == {"steps": 3, "resumed": None, "rows": 32}
    assert json.loads((out / "train_stats.json").read_text()) == stats
    assert json.loads((out / "trainer_config.json").read_text()) == {"save_steps": 5}
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["kind"] == "toy" and lineage["settings"] == settings, "operational knobs stay out of lineage"
    assert (out / "model.bin").read_text() == "weights" and (out / "tokenizer.json").is_file()
    assert not partial_dir(out).exists()
    assert "Toy done: 3 steps in " in caplog.text and " s, 32 rows" in caplog.text


# --- chat templates -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat-template"])
def test_sft_loss_covers_exactly_the_completion_tokens(
    chat: bool, tiny_base: Path, chat_base: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from quagmire.eval.genloss import encode_example
    from quagmire.hf import load_tokenizer
    from quagmire.train.sft import prompt_completion_dataset, sft_config

    base = chat_base if chat else tiny_base
    tokenizer = load_tokenizer(base)
    frame = pd.DataFrame({"prompt": ["12+30=", "7-5="], "response": ["2+0=2 \\boxed{42}", "\\boxed{2}"]})
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(base),
        args=sft_config({**SFT_SETTINGS, "batch_size": 2}, tmp_path / "trainer"),
        train_dataset=prompt_completion_dataset(frame, tokenizer),
        processing_class=tokenizer,
    )
    for row, (prompt, response) in enumerate(zip(frame["prompt"], frame["response"], strict=True)):
        example = trainer.train_dataset[row]
        scored = [i for i, label in enumerate(example["labels"]) if label != -100]
        ids, start = encode_example(tokenizer, prompt, response, max_length=SFT_SETTINGS["max_length"])
        assert example["input_ids"] == ids, "genloss must tokenize exactly as SFT"
        assert scored == list(range(start, len(ids))), "the loss mask must be the completion tokens, contiguous"
        completion = tokenizer.decode([example["input_ids"][i] for i in scored])
        assert completion == response + tokenizer.eos_token
        prompt_part = tokenizer.decode(example["input_ids"][:start], skip_special_tokens=True)
        assert prompt_part == (f"User: {prompt} Assistant: " if chat else prompt)
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    encoded = [encode_example(tokenizer, p, r, 128) for p, r in zip(frame["prompt"], frame["response"], strict=True)]
    assert int((batch["labels"] != -100).sum()) == sum(len(ids) - start for ids, start in encoded)


def test_sft_and_grpo_run_through_a_chat_template(
    chat_base: Path, sft_data: Path, tiny_world: Path, tmp_path: Path
) -> None:
    from quagmire.hf import load_tokenizer
    from quagmire.train.grpo import prompt_dataset, train_grpo
    from quagmire.train.sft import train_sft

    sft = train_sft(chat_base, sft_data, tmp_path / "sft", SFT_SETTINGS)
    assert sft["chat_template"] is True and sft["global_steps"] == 4
    assert load_tokenizer(tmp_path / "sft").chat_template == load_tokenizer(chat_base).chat_template
    rows = prompt_dataset(pd.read_parquet(tiny_world / "rl.parquet").head(2), load_tokenizer(chat_base))
    assert rows[0]["prompt"][0]["role"] == "user"
    rl = train_grpo(tmp_path / "sft", tiny_world / "rl.parquet", tmp_path / "rl", {**RL_SETTINGS, "steps": 1})
    assert rl["chat_template"] is True and rl["global_steps"] == 1


# --- GRPO settings --------------------------------------------------------------------------------------------


def test_rl_schedule_visits_every_prompt_once_per_epoch_in_a_seeded_order() -> None:
    from quagmire.train.grpo import rl_schedule

    frame = pd.DataFrame({"prompt": [f"p{i}" for i in range(10)], "answer": [str(i) for i in range(10)]})
    schedule = rl_schedule(frame, steps=7, prompts_per_step=3, seed=0)
    assert len(schedule) == 21
    assert sorted(schedule["prompt"][:10]) == sorted(frame["prompt"])
    assert sorted(schedule["prompt"][10:20]) == sorted(frame["prompt"])
    assert list(schedule["prompt"][:10]) != list(schedule["prompt"][10:20]), "each epoch has its own order"
    longer = rl_schedule(frame, steps=20, prompts_per_step=3, seed=0)
    assert longer.head(21).equals(schedule), "the order never depends on the run's length"
    assert not rl_schedule(frame, steps=7, prompts_per_step=3, seed=1).equals(schedule)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("9+3=12,5+6+1=12 \\boxed{122}", True),
        ("so the answer is $\\boxed{\\frac{1}{2}}$.", True),
        ("\\boxed{x^{2}}\\]", True),
        ("\\boxed{\\{1\\}}", True),
        ("no box at all: 42", False),
        ("\\boxed{1} or \\boxed{2}", False),
        ("\\boxed{42} and then a long ramble", False),
        ("\\boxed{42} 7", False),
        ("\\boxed{42", False),
    ],
)
def test_format_reward_wants_one_boxed_answer_at_the_end(text: str, ok: bool) -> None:
    from quagmire.train.grpo import format_reward, has_one_final_boxed

    assert has_one_final_boxed(text) is ok
    assert format_reward([], [text, [{"role": "assistant", "content": text}]]) == [float(ok)] * 2


def test_format_reward_is_off_by_default_and_weighted_when_on() -> None:
    from quagmire.train.grpo import grpo_config, reward_weights

    assert reward_weights(RL_SETTINGS) is None
    assert reward_weights({**RL_SETTINGS, "format_reward": 0.2}) == [1.0, 0.2]
    with pytest.raises(QuagmireError, match="format_reward"):
        reward_weights({**RL_SETTINGS, "format_reward": -1})
    config = grpo_config({**RL_SETTINGS, "format_reward": 0.2, "use_vllm": True}, Path("unused"))
    assert config.reward_weights == [1.0, 0.2]
    assert config.use_vllm is False, "no GPU here: vLLM is asked for but HF generation must run"


def test_batches_are_global_whatever_the_number_of_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from quagmire.train.runner import per_device_batch
    from quagmire.train.sft import sft_config

    monkeypatch.setattr("quagmire.train.runner.world_size", lambda: 4)  # as under `accelerate launch` on 4 GPUs
    sft = sft_config({**SFT_SETTINGS, "batch_size": 32, "gradient_accumulation_steps": 2}, Path("unused"))
    assert sft.per_device_train_batch_size == 4 and sft.gradient_accumulation_steps == 2
    assert per_device_batch(RL_SETTINGS["prompts_per_step"] * RL_SETTINGS["group_size"], "rl") == 2
    with pytest.raises(QuagmireError, match="not divisible"):
        sft_config({**SFT_SETTINGS, "batch_size": 6}, Path("unused"))


def test_every_trainer_runs_with_the_same_fixed_arguments_on_cpu() -> None:
    from quagmire.train.runner import aligned_logging_steps, fixed_trainer_args

    args = fixed_trainer_args(seed=7, logging_steps=3)
    assert args["seed"] == args["data_seed"] == 7
    assert args["save_strategy"] == "no" and args["report_to"] == []
    assert args["use_cpu"] is True and args["bf16"] is False  # no GPU on this machine: fp32
    saving = fixed_trainer_args(seed=7, logging_steps=3, save_steps=6)
    assert saving["save_strategy"] == "steps" and saving["save_steps"] == 6 and saving["save_total_limit"] == 2
    assert saving["save_only_model"] is False
    assert aligned_logging_steps(10, 25) == 5 and aligned_logging_steps(5, 20) == 5


# --- multi-GPU launch -----------------------------------------------------------------------------------------


def test_the_launcher_follows_model_size_and_gpu_count() -> None:
    from quagmire.train.launch import accelerate_config_for, launch_command

    assert accelerate_config_for(8_000_000_000, 1) is None
    assert accelerate_config_for(1_000_000, 0) is None
    assert Path(accelerate_config_for(1_500_000_000, 4)).name == "ddp.yaml"
    assert Path(accelerate_config_for(8_000_000_000, 8)).name == "fsdp.yaml"
    assert Path(accelerate_config_for(8_000_000_000, 8, sharded="zero3")).name == "zero3.yaml"
    with pytest.raises(QuagmireError, match="fsdp, zero3"):
        accelerate_config_for(8_000_000_000, 8, sharded="tp")
    assert launch_command(None, 1) == ["quagmire"]
    command = launch_command("config/accelerate/ddp.yaml", 4, main_process_port=29511)
    assert command[:2] == ["accelerate", "launch"] and command[-2:] == ["-m", "quagmire.cli"]
    assert command[command.index("--num_processes") + 1] == "4"


def test_a_multi_gpu_training_command_reexecutes_itself_under_accelerate(
    tiny_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import quagmire.train.launch as launch

    calls: list[list[str]] = []
    monkeypatch.setattr(launch.os, "execvp", lambda file, args: calls.append(list(args)))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    argv = ["sft", "--base", str(tiny_base), "--gpus", "4"]
    launch.relaunch(argv, tiny_base, num_gpus=1)
    assert calls == []  # one GPU: train in this process
    launch.relaunch(argv, tiny_base, num_gpus=4)
    (command,) = calls
    assert command[:2] == ["accelerate", "launch"] and Path(command[3]).name == "ddp.yaml"  # a tiny model: DDP
    assert command[-len(argv) - 2 :] == ["-m", "quagmire.cli", *argv]
    monkeypatch.setenv("LOCAL_RANK", "0")  # inside a launched worker: never launch again
    launch.relaunch(argv, tiny_base, num_gpus=4)
    assert len(calls) == 1


@pytest.mark.parametrize(("name", "distributed_type"), [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("zero3", "DEEPSPEED")])
def test_accelerate_config_files_are_valid_for_accelerate(name: str, distributed_type: str) -> None:
    import yaml
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    from quagmire.train.launch import CONFIG_DIR, launch_command

    path = CONFIG_DIR / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    for key in ("compute_environment", "distributed_type", "num_processes", "num_machines", "mixed_precision"):
        assert key in raw, f"{path.name} lacks {key}"
    assert raw["mixed_precision"] == "bf16" and raw["num_machines"] == 1 and raw["use_cpu"] is False
    config = load_config_from_file(str(path))  # accelerate's own loader: unknown keys are errors
    assert config.distributed_type.value == distributed_type
    if name == "fsdp":
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert config.fsdp_config["fsdp_reshard_after_forward"] is True  # full shard
    if name == "zero3":
        assert config.deepspeed_config["zero_stage"] == 3
    args = launch_command_parser().parse_args([*launch_command(str(path), 4)[2:], "sft"])
    assert args.config_file == str(path) and args.num_processes == 4 and args.module is True


def test_parameters_are_counted_from_the_saved_weights(tiny_base: Path) -> None:
    from transformers import AutoModelForCausalLM

    from quagmire.hf import num_parameters

    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    assert num_parameters(tiny_base) == sum(p.numel() for p in model.parameters())
