"""Loss along SFT: snapshot steps, snapshots that survive a crash and resume, the final model unchanged by them,
and the per-snapshot loss and accuracy table of a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from transformers import TrainerCallback

from quagmire.errors import QuagmireError
from quagmire.eval import along_sft, along_table
from quagmire.eval.genloss import held_out_loss
from quagmire.io import partial_dir
from quagmire.train.snapshots import SNAPSHOTS, list_snapshots, snapshot_record, snapshot_step, snapshot_steps

SETTINGS = {
    "subset": "random", "n": 32, "epochs": 2, "lr": 1e-3, "batch_size": 8, "scheduler": "constant",
    "warmup_steps": 0, "weight_decay": 0.0, "max_length": 128, "seed": 0, "save_steps": 2, "snapshots": 3,
}  # fmt: skip  # 2 epochs of 4 steps: snapshots at steps 3, 6, 8
ALONG = {
    "n": 2,
    "problems": 6,  # of addsub2's 8
    "genloss": {"max_length": 128, "batch_size": 16},
    "sampling": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "seed": 1234, "prompts_per_call": 8,
                 "prompt_template": "{prompt}", "instruction": ""},  # fmt: skip
    "grading_timeout_s": 5.0,
}


@pytest.mark.parametrize(
    ("total", "count", "steps"),
    [(8, 3, [3, 6, 8]), (8, 4, [2, 4, 6, 8]), (10, 4, [3, 5, 8, 10]), (3, 5, [1, 2, 3]), (7, 1, [7]), (1, 4, [1])],
)
def test_snapshot_steps_are_evenly_spaced_and_end_at_the_last_step(total: int, count: int, steps: list[int]) -> None:
    got = snapshot_steps(total, count)
    assert got == steps and got[-1] == total and len(got) == min(total, count)


def test_snapshot_steps_reject_nonpositive_counts() -> None:
    with pytest.raises(QuagmireError, match="positive"):
        snapshot_steps(8, 0)


@pytest.fixture(scope="module")
def uninterrupted(tiny_base: Path, sft_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run with snapshots, uninterrupted: its model folder (the snapshots beside it, `<out>.snapshots`)."""
    from quagmire.train.sft import train_sft

    out = tmp_path_factory.mktemp("sft") / "run"
    train_sft(tiny_base, sft_data, out, SETTINGS, snapshots=snapshots_of(out))
    return out


def snapshots_of(out: Path) -> Path:
    return out.with_name(out.name + ".snapshots")


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


class _CrashAfterStep(TrainerCallback):
    """Raises at the end of optimizer step `step` (after the snapshot callback, before that step's checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.step:
            raise RuntimeError("simulated crash")


def test_snapshots_are_published_beside_the_model_at_the_expected_steps(uninterrupted: Path) -> None:
    folders = list_snapshots(snapshots_of(uninterrupted))
    assert [snapshot_step(p) for p in folders] == [3, 6, 8]
    assert [snapshot_record(p)["epoch"] for p in folders] == [0.75, 1.5, 2.0]
    assert all((p / "config.json").is_file() and (p / "model.safetensors").is_file() for p in folders)
    assert not partial_dir(uninterrupted).exists()
    assert not any(p.name.startswith("step-") for p in uninterrupted.iterdir())  # the model folder is unchanged
    last, final = tensors(folders[-1]), tensors(uninterrupted)
    assert last.keys() == final.keys() and all(torch.equal(last[k], final[k]) for k in final)


def test_snapshots_leave_the_final_weights_byte_identical(
    uninterrupted: Path, tiny_base: Path, sft_data: Path, tmp_path: Path
) -> None:
    from quagmire.train.sft import train_sft

    plain = tmp_path / "plain"
    train_sft(tiny_base, sft_data, plain, SETTINGS)  # no snapshots folder: none saved
    assert (plain / "model.safetensors").read_bytes() == (uninterrupted / "model.safetensors").read_bytes()
    assert not snapshots_of(plain).exists()
    history = [json.loads((p / "train_stats.json").read_text())["history"] for p in (plain, uninterrupted)]
    assert [r["loss"] for r in history[0]] == [r["loss"] for r in history[1]]


def test_a_crashed_and_resumed_run_ends_with_the_same_snapshots(
    uninterrupted: Path, tiny_base: Path, sft_data: Path, tmp_path: Path
) -> None:
    from quagmire.train.sft import train_sft

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):  # after step 7: checkpoint 6 is the resume point
        train_sft(tiny_base, sft_data, out, SETTINGS, snapshots=snapshots_of(out), callbacks=[_CrashAfterStep(7)])
    scratch = partial_dir(out) / SNAPSHOTS
    assert [snapshot_step(p) for p in list_snapshots(scratch)] == [3, 6]
    assert not out.exists() and not snapshots_of(out).exists()
    (scratch / "step-8.tmp").mkdir()  # what a kill while saving a snapshot leaves: dropped on resume
    stats = train_sft(tiny_base, sft_data, out, SETTINGS, snapshots=snapshots_of(out))
    assert stats["resumed_from_step"] == 6
    resumed, reference = list_snapshots(snapshots_of(out)), list_snapshots(snapshots_of(uninterrupted))
    assert [p.name for p in resumed] == [p.name for p in reference] == ["step-3", "step-6", "step-8"]
    for a, b in zip(resumed, reference, strict=True):
        ta, tb = tensors(a), tensors(b)
        assert all(torch.equal(ta[k], tb[k]) for k in tb), f"{a.name} differs after resumption"
        assert snapshot_record(a) == snapshot_record(b)
    assert (out / "model.safetensors").read_bytes() == (uninterrupted / "model.safetensors").read_bytes()


def test_the_along_job_measures_every_snapshot(uninterrupted: Path, tiny_world: Path, tmp_path: Path) -> None:
    heldout = tmp_path / "heldout.parquet"
    pd.read_parquet(tiny_world / "heldout.parquet").head(16).to_parquet(heldout)
    benchmark = tiny_world / "benchmarks" / "addsub2.parquet"
    out = tmp_path / "along" / "run.csv"
    frame = along_sft.along_to_file("run", snapshots_of(uninterrupted), heldout, [("bench", benchmark)], ALONG, out)
    written = pd.read_csv(out)
    assert list(written.columns) == list(along_table.COLUMNS)
    assert written["step"].tolist() == [3, 6, 8] and written["epoch"].tolist() == [0.75, 1.5, 2.0]
    assert set(written["run"]) == {"run"} and set(written["n"]) == {2}
    assert written["accuracy"].between(0, 1).all()
    twelfths = written["accuracy"] * 12  # 6 of the 8 problems, 2 samples each: a multiple of 1/12
    assert (twelfths - twelfths.round()).abs().max() < 1e-9
    last = held_out_loss(list_snapshots(snapshots_of(uninterrupted))[-1], heldout, max_length=128, batch_size=16)
    assert written["genloss"].iloc[-1] == pytest.approx(last["genloss"], rel=1e-12)
    assert written["genloss"].nunique() == 3  # each snapshot its own model
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["step"] == "loss_along_sft" and [r["role"] for r in manifest["inputs"]][:2] == [
        "snapshots", "heldout"]  # fmt: skip
    assert len(frame) == 3

    loss_only = along_sft.loss_along_sft("run", snapshots_of(uninterrupted), heldout, [], {**ALONG, "n": 0})
    assert loss_only["accuracy"].map(math.isnan).all() and set(loss_only["n"]) == {0}
    assert loss_only["genloss"].tolist() == pytest.approx(written["genloss"].tolist(), rel=1e-12)

    table = tmp_path / "tables" / "loss_along_sft.csv"
    gathered = along_table.gather_to_file([out, out], table)
    assert len(gathered) == 6 and pd.read_csv(table).columns.tolist() == list(along_table.COLUMNS)


def test_the_along_job_writes_the_recipes_genloss_as_the_genloss_job_would(
    uninterrupted: Path, tiny_world: Path, tmp_path: Path
) -> None:
    """The last snapshot is the published checkpoint, byte for byte: the along job writes its genloss JSON, the
    same file `quagmire genloss` writes (but for the manifest's code record). A checkpoint that differs from the
    last snapshot is measured itself, never given the snapshot's loss."""
    from quagmire.eval.genloss import genloss_to_file

    heldout = tmp_path / "heldout.parquet"
    pd.read_parquet(tiny_world / "heldout.parquet").head(16).to_parquet(heldout)
    settings = {**ALONG, "n": 0}
    assert along_sft.same_checkpoint(list_snapshots(snapshots_of(uninterrupted))[-1], uninterrupted)
    written = along_sft.along_to_file("run", snapshots_of(uninterrupted), heldout, [], settings,
                                      tmp_path / "along.csv", model=uninterrupted, genloss_out=tmp_path / "a.json")
    reference = genloss_to_file(uninterrupted, heldout, tmp_path / "b.json", max_length=128, batch_size=16)
    ours = json.loads((tmp_path / "a.json").read_text())
    assert ours["genloss"] == written["genloss"].iloc[-1] == reference["genloss"]
    assert ours["model"] == str(uninterrupted) and ours["manifest"]["step"] == "genloss"
    assert {k: v for k, v in ours.items() if k != "manifest"} == {k: v for k, v in reference.items() if k != "manifest"}
    # the manifest names what was read: the checkpoint and the held-out set, as genloss's, and the snapshots measured
    assert ours["manifest"]["inputs"][:2] == reference["manifest"]["inputs"]
    assert [r["role"] for r in ours["manifest"]["inputs"][2:]] == ["snapshots"]

    # another checkpoint (the first snapshot's weights) under the model's name: measured, not copied
    other = tmp_path / "other"
    other.mkdir()
    for path in list_snapshots(snapshots_of(uninterrupted))[0].iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    assert not along_sft.same_checkpoint(list_snapshots(snapshots_of(uninterrupted))[-1], other)
    along_sft.along_to_file("run", snapshots_of(uninterrupted), heldout, [], settings, tmp_path / "along2.csv",
                            model=other, genloss_out=tmp_path / "c.json")  # fmt: skip
    measured = json.loads((tmp_path / "c.json").read_text())
    assert [r["role"] for r in measured["manifest"]["inputs"]] == ["model", "heldout"]
    measured = measured["genloss"]
    assert measured == pytest.approx(written["genloss"].iloc[0], rel=1e-12) != written["genloss"].iloc[-1]
    # a loss measured with other settings is never written as this checkpoint's genloss
    from quagmire.eval.genloss import write_genloss

    with pytest.raises(QuagmireError, match="is not the one asked for"):
        write_genloss(reference, uninterrupted, heldout, tmp_path / "d.json", max_length=64, batch_size=16)
    assert not (tmp_path / "d.json").exists()
    with pytest.raises(QuagmireError, match="come together"):
        along_sft.along_to_file("run", snapshots_of(uninterrupted), heldout, [], settings, tmp_path / "x.csv",
                                model=uninterrupted)  # fmt: skip


def test_the_along_job_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(QuagmireError, match="no SFT snapshots"):
        along_sft.loss_along_sft("run", tmp_path, tmp_path / "heldout.parquet", [], ALONG)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"run": ["a"], "step": [1]}).to_csv(bad, index=False)
    with pytest.raises(QuagmireError, match="lacks column"):
        along_table.gather_to_file([bad], tmp_path / "out.csv")


def test_a_problem_cap_draws_the_same_problems_in_benchmark_order() -> None:
    problems = pd.DataFrame({"problem_id": [f"p{i}" for i in range(10)]})
    first, again = along_sft.drawn(problems, 4, seed=1), along_sft.drawn(problems, 4, seed=1)
    assert len(first) == 4 and first.equals(again) and list(first.index) == sorted(first.index)
    assert along_sft.drawn(problems, None, seed=1) is problems and along_sft.drawn(problems, 10, seed=1) is problems


@pytest.mark.parametrize("n", [4, 0])
def test_the_figure_draws_loss_and_accuracy_against_steps(n: int, tmp_path: Path) -> None:
    from quagmire.analysis import plots
    from quagmire.analysis import tables as tidy_tables

    rows = [(run, step, step / 4, 1.0 - 0.1 * step + (0.3 if run == "b" and step == 4 else 0.0),
             0.1 * step if n else math.nan, n) for run in ("a", "b") for step in (1, 2, 3, 4)]  # fmt: skip
    along_csv, recipes_csv = tmp_path / "along.csv", tmp_path / "recipes.csv"
    pd.DataFrame(rows, columns=list(along_table.COLUMNS)).to_csv(along_csv, index=False)
    pd.DataFrame([(r, "random", 64, 1, 1e-3, True, False) for r in ("a", "b")],
                 columns=list(tidy_tables.RECIPE_COLUMNS)).to_csv(recipes_csv, index=False)  # fmt: skip
    out = plots.render_loss_along_sft(along_csv, recipes_csv, tmp_path / "fig.png", {"dpi": 40, "width": 3.0})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(f"{out}.manifest.json").is_file()
    fig = plots.loss_along_sft(pd.read_csv(along_csv), pd.read_csv(recipes_csv), plots.PlotSettings.from_config({}))
    left, right = fig.axes[:2]
    assert [line.get_label() for line in left.get_lines()] == ["a", "b"] and left.get_xlabel() == "SFT step"
    notes = [t.get_text() for t in right.texts]
    assert (len(right.get_lines()) == 2 and not notes) if n else notes == ["accuracy not measured (along_sft.n = 0)"]
