"""A hub base model: fetched from a local snapshot or a pinned hub revision, checked, with its lineage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import quagmire.train.base_model as base_model
from quagmire.errors import QuagmireError
from quagmire.hf import load_tokenizer, num_parameters
from quagmire.io import read_json
from quagmire.provenance import sha256_file
from quagmire.train.base_model import check_snapshot, fetch_base

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_a_local_snapshot_is_copied_checked_and_recorded(tiny_base: Path, tmp_path: Path) -> None:
    out, tok = tmp_path / "models" / "base", tmp_path / "models" / "tokenizer"
    record = fetch_base({"path": str(tiny_base)}, out, tok)
    assert record["source"]["kind"] == "local"
    weights = "model.safetensors"
    assert record["source"]["files"][weights] == sha256_file(tiny_base / weights) == sha256_file(out / weights)
    assert read_json(out / "lineage.json") == record
    assert record["model"]["model_type"] == "llama" and record["model"]["chat_template"] is False
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert record["model"]["parameters"] == num_parameters(out) == sum(p.numel() for p in model.parameters())
    assert load_tokenizer(tok).get_vocab() == load_tokenizer(tiny_base).get_vocab()


def test_a_snapshot_made_by_another_rule_keeps_its_snakemake_marker_to_itself(tiny_base: Path, tmp_path: Path) -> None:
    """A local snapshot that is another rule's directory output holds Snakemake's `.snakemake_timestamp`. Linked
    along, Snakemake's touch of the copy's marker would touch the source's too and rerun all that follows it."""
    source = tmp_path / "other_rule_output"
    shutil.copytree(tiny_base, source)
    marker = source / ".snakemake_timestamp"
    marker.touch()
    out = tmp_path / "models" / "base"
    fetch_base({"path": str(source)}, out, tmp_path / "models" / "tokenizer")
    assert not (out / ".snakemake_timestamp").exists()
    assert marker.stat().st_nlink == 1
    assert (out / "model.safetensors").is_file()


def test_the_hub_path_downloads_the_pinned_revision(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_download(hub_id: str, revision: str, dest: Path) -> None:
        calls.append((hub_id, revision))
        shutil.copytree(tiny_base, dest, dirs_exist_ok=True)

    monkeypatch.setattr(base_model, "_download", fake_download)
    record = fetch_base({"hub_id": "org/model", "revision": COMMIT}, tmp_path / "base")
    assert calls == [("org/model", COMMIT)]
    assert record["source"]["kind"] == "hub" and record["source"]["revision"] == COMMIT
    with pytest.raises(QuagmireError, match=r"base_model org/model: a hub revision must be pinned.*'main'"):
        fetch_base({"hub_id": "org/model", "revision": "main"}, tmp_path / "other")
    assert calls == [("org/model", COMMIT)] and not (tmp_path / "other").exists()


def test_a_folder_that_is_not_a_usable_model_says_what_is_missing(tiny_base: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_base, broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(QuagmireError, match="no tokenizer.json"):
        check_snapshot(broken, "base_model")
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(QuagmireError, match="no .safetensors weights"):
        fetch_base({"path": str(broken)}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(QuagmireError, match="needs base_model.hub_id"):
        fetch_base({}, tmp_path / "out")
