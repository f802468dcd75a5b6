"""The study's base model at paper scale: a hub snapshot at a pinned revision, or a local copy of one.

Why the base model is an artifact of the DAG (`models/base`) and not a hub id passed to every rule: every later
checkpoint's lineage must name exactly which weights it started from, and a cluster's compute nodes are often
offline. The rule fetches once, checks that the folder is a usable causal LM (config, weights, a fast
tokenizer), and records the source and a sha256 of every file, so an audit can tell two snapshots apart.

The embedded study does not come through here: it builds and pre-trains its own tiny model (`world/`).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quagmire.errors import QuagmireError
from quagmire.hf import num_parameters
from quagmire.io import atomic_dir, read_json, write_json
from quagmire.provenance import lineage, require_pinned, sha256_file

log = logging.getLogger(__name__)

# What a training or sampling job needs from a hub snapshot; skips other formats' weights (.bin, .pth, .gguf).
SNAPSHOT_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken")


def _copy_tree(source: Path, dest: Path, patterns: tuple[str, ...] | None = None) -> None:
    """Hard-link every file of `source` (whose name matches one of `patterns`, when given) into `dest` (same
    filesystem: no copy of 16 GB), else copy it. A symbolic link (a hub cache's snapshot file) is followed.

    Snakemake's own markers (`.snakemake_timestamp`, when `source` is another rule's directory output) are left
    out: Snakemake touches that file in `dest` when the job ends, and through a hard link it would touch the
    source's too, so the source's model would look updated and everything downstream of it would rerun.
    """
    for item in sorted(source.rglob("*")):
        if item.name.startswith(".snakemake"):
            continue
        target = dest / item.relative_to(source)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if patterns is not None and not any(fnmatch.fnmatch(item.name, p) for p in patterns):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(item.resolve(), target)
        except OSError:
            shutil.copy2(item, target)


def _download(hub_id: str, revision: str, dest: Path) -> None:
    """The snapshot of `hub_id` at `revision`, fetched into the hub cache once and hard-linked from there into
    `dest`: a rerun (or a second study, or a candidate that is a study's base model) reads the cache, offline
    too, instead of downloading the weights again."""
    from huggingface_hub import snapshot_download

    cached = snapshot_download(repo_id=hub_id, revision=revision, allow_patterns=list(SNAPSHOT_PATTERNS))
    _copy_tree(Path(cached), dest, SNAPSHOT_PATTERNS)


def check_snapshot(folder: Path, what: str) -> dict[str, Any]:
    """Fail clearly unless `folder` holds a causal-LM config, safetensors weights and a fast tokenizer."""
    from transformers import AutoConfig

    from quagmire.hf import load_tokenizer

    if not (folder / "config.json").is_file():
        raise QuagmireError(f"{what}: no config.json in {folder}; is this a model snapshot?")
    if not any(folder.glob("*.safetensors")):
        raise QuagmireError(f"{what}: no .safetensors weights in {folder} (convert .bin weights to safetensors)")
    if not (folder / "tokenizer.json").is_file():
        raise QuagmireError(f"{what}: no tokenizer.json in {folder}; the study needs a fast tokenizer")
    config = AutoConfig.from_pretrained(folder)
    tokenizer = load_tokenizer(folder)
    return {
        "architectures": list(getattr(config, "architectures", None) or []),
        "model_type": config.model_type,
        "parameters": num_parameters(folder),
        "vocab_size": len(tokenizer),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }


def fetch_base(settings: Mapping[str, Any], out: Path, tokenizer_out: Path | None = None) -> dict[str, Any]:
    """Materialize the base model named by the `base_model` config section in `out` (and its tokenizer).

    `path` (a local snapshot folder) wins over `hub_id` + `revision`; a hub revision must be a commit.
    """
    if not settings.get("path") and not settings.get("hub_id"):
        raise QuagmireError("base_model: source 'hub' needs base_model.hub_id (+ revision) or base_model.path")
    return _materialize(settings, out, "base_model", "base", tokenizer_out)


def fetch_candidate(name: str, settings: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """Materialize SFT candidate `name` (its `candidates.<name>` entry: a local folder or a pinned hub snapshot) in
    `out`, checked and hashed like the base model, so every evaluation of it names exactly which weights it read.

    A local folder is hard-linked (copied across file systems), a hub snapshot fetched once (the hub cache serves
    it again): a rerun never downloads it anew. A candidate that is a copy of one of our checkpoints keeps that
    checkpoint's lineage inside its own (`source.lineage`)."""
    where = f"candidates.{name}"
    if not settings.get("path") and not settings.get("hub_id"):
        raise QuagmireError(f"{where}: needs path (a local checkpoint folder) or hub_id with a pinned revision")
    return _materialize(settings, out, where, "candidate", None)


def _materialize(
    settings: Mapping[str, Any], out: Path, where: str, kind: str, tokenizer_out: Path | None
) -> dict[str, Any]:
    """A local folder (`path`, wins) or the pinned hub snapshot (`hub_id` + `revision`) copied into `out` atomically,
    checked as a causal LM, every file hashed into `out/lineage.json` (`kind`: base or candidate)."""
    path, hub_id, revision = settings.get("path"), settings.get("hub_id"), settings.get("revision")
    with atomic_dir(out) as tmp:
        if path:
            source = Path(path)
            if not source.is_dir():
                raise QuagmireError(f"{where}.path: {source} is not a folder")
            _copy_tree(source, tmp)
            origin: dict[str, Any] = {"kind": "local", "path": str(source.resolve())}
        else:
            require_pinned(revision, f"{where} {hub_id}")
            _download(hub_id, revision, tmp)
            origin = {"kind": "hub", "hub_id": hub_id, "revision": revision}
        if kind == "candidate" and (tmp / "lineage.json").is_file():
            origin["lineage"] = read_json(tmp / "lineage.json")
        for stale in ("lineage.json", "train_stats.json", "trainer_config.json"):
            (tmp / stale).unlink(missing_ok=True)  # a local copy of one of our checkpoints starts a new lineage
        facts = check_snapshot(tmp, f"{where} {path or hub_id}")
        files = {
            str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        record = lineage(kind, parent=None, data=[], settings=dict(settings))
        record["source"] = origin | {"files": files}
        record["model"] = facts
        write_json(tmp / "lineage.json", record)
        if tokenizer_out is not None:
            from quagmire.hf import load_tokenizer

            with atomic_dir(tokenizer_out) as tok_tmp:
                load_tokenizer(tmp).save_pretrained(tok_tmp)
    log.info("%s %s: %s parameters, %s", where, path or f"{hub_id}@{revision}", f"{facts['parameters']:,}",
             facts["model_type"])
    return record
