"""Provenance: which data and which parent model went into each artifact, by path and sha256.

Why: a user auditing a figure must be able to walk back from any checkpoint to the exact data files that
trained it. Each model folder carries a `lineage.json` that embeds its parent's lineage, so the chain
base -> SFT -> GRPO is readable from the final checkpoint alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from quagmire.errors import QuagmireError

_COMMIT = re.compile(r"[0-9a-f]{40}")
_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout whose src/ this module was imported from
UNKNOWN = "unknown"
MANIFEST_KEY = "manifest"  # the key of a step's manifest in a JSON artifact or a Parquet file's metadata
SIDECAR_SUFFIX = ".manifest.json"  # `<artifact>.manifest.json`: the manifest of an artifact that cannot hold one
TRACKED_PACKAGES = ("torch", "transformers", "trl", "datasets", "math-verify", "snakemake")
_CHUNK = 1 << 20
HASH_CONTENT_UP_TO = 256 * 1024 * 1024  # files up to this size are hashed; larger shards by size + mtime


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages whose defaults shape the results."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def file_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Path, size and sha256 of one input file."""
    p = Path(path)
    return {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)}


@functools.cache
def code_version() -> dict[str, Any]:
    """The git commit of the quagmire checkout that is running and whether its tree had uncommitted changes.

    Why: two runs of the same rule with the same settings differ when the library code differs; the commit names
    the code, `dirty` says the commit alone does not. Cached: one `git` call pair per job process. Without git, or
    when the code is not a git checkout (an installed wheel), both are "unknown".
    """
    if not (_SOURCE_ROOT / ".git").exists():
        return {"commit": UNKNOWN, "dirty": UNKNOWN}
    try:
        head = subprocess.run(["git", "-C", str(_SOURCE_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=30)
        status = subprocess.run(["git", "-C", str(_SOURCE_ROOT), "status", "--porcelain"],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {"commit": UNKNOWN, "dirty": UNKNOWN}
    commit = head.stdout.strip()
    if head.returncode != 0 or not is_commit(commit):
        return {"commit": UNKNOWN, "dirty": UNKNOWN}
    return {"commit": commit, "dirty": bool(status.stdout.strip()) if status.returncode == 0 else UNKNOWN}


def identity_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 identity of a file (its bytes) or a folder (a model checkpoint: the sha256 of its
    `folder_identity`, so two folders with the same files have the same identity)."""
    p = Path(path)
    if p.is_dir():
        return hashlib.sha256(json.dumps(folder_identity(p), sort_keys=True).encode()).hexdigest()
    return sha256_file(p)


def input_record(role: str, path: str | os.PathLike[str]) -> dict[str, Any]:
    """One input of a step: its role (model, benchmark, samples, ...), path, kind and sha256 identity."""
    p = Path(path)
    return {"role": role, "path": os.fspath(path), "kind": "folder" if p.is_dir() else "file",
            "sha256": identity_sha256(p)}


def step_manifest(
    step: str,
    inputs: Iterable[tuple[str, str | os.PathLike[str]]] = (),
    settings: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What one step of the DAG made an artifact from: its inputs by sha256 identity, its settings, the code
    version and the package versions. Stored in the artifact (`MANIFEST_KEY`) or beside it (`write_sidecar`).

    Why: `quagmire provenance` walks these records back to the raw data when Snakemake's own records are gone
    (a results folder copied to another machine), and re-hashes the inputs to find any that changed since.
    `model` names the checkpoint an evaluation artifact (samples, grades, metrics) is about, by path and sha256
    identity, also where the model is not a direct input (grades are made from samples). Where it is (an input
    with role "model"), it is named from that input's record: a checkpoint is hashed once per manifest.
    """
    records = [input_record(role, path) for role, path in inputs]
    if model is None:
        model = next(({"path": r["path"], "sha256": r["sha256"]} for r in records if r["role"] == "model"), None)
    record = {
        "step": step,
        "inputs": records,
        "settings": dict(settings or {}),
        "code": code_version(),
        "packages": package_versions(),
    }
    if model is not None:
        record["model"] = dict(model)
    return record


def write_sidecar(artifact: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """Write `<artifact>.manifest.json`: the manifest of an artifact whose bytes must not carry it (a table, a
    figure), with the artifact's own sha256 so a later change to it is caught. Call once the artifact is in place."""
    from quagmire.io import write_json

    path = Path(f"{os.fspath(artifact)}{SIDECAR_SUFFIX}")
    write_json(path, {**dict(manifest), "output": file_record(artifact)})
    return path


def lineage(
    kind: str,
    parent: str | os.PathLike[str] | None,
    data: Iterable[str | os.PathLike[str]],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The lineage record of a model folder: its kind, parent (with the parent's own lineage), data, settings."""
    parent_record: dict[str, Any] | None = None
    if parent is not None:
        parent_path = Path(parent)
        parent_lineage = parent_path / "lineage.json"
        parent_record = {
            "path": str(parent_path),
            "sha256": identity_sha256(parent_path),
            "lineage": json.loads(parent_lineage.read_text()) if parent_lineage.exists() else None,
        }
    return {
        "kind": kind,
        "parent": parent_record,
        "data": [file_record(p) for p in data],
        "settings": dict(settings),
        "packages": package_versions(),
        "code": code_version(),
    }


def folder_identity(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Per file of a folder (a model checkpoint): its sha256, or for a file over HASH_CONTENT_UP_TO its size and mtime.

    Why not hash everything: the shards of an 8B model are 16 GB, minutes of hashing at every start; a rebuilt
    parent rewrites its shards, which changes their mtime. Small files (config, tokenizer, lineage, tiny models)
    are hashed, so a changed config or a retrained small model is always caught.
    """
    identity = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        stat = path.stat()
        if stat.st_size <= HASH_CONTENT_UP_TO:
            identity[rel] = sha256_file(path)
        else:
            identity[rel] = f"size={stat.st_size},mtime_ns={stat.st_mtime_ns}"
    return identity


def fingerprint(settings: Mapping[str, Any], files: Iterable[str | os.PathLike[str]] = (),
                folders: Iterable[str | os.PathLike[str]] = ()) -> str:
    """A short hash of what a resumable job's partial progress was computed from: settings, files by content,
    folders (model checkpoints) by `folder_identity`."""
    record = {
        "settings": dict(settings),
        "files": [sha256_file(path) for path in files],
        "folders": [folder_identity(folder) for folder in folders],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_commit(revision: str | None) -> bool:
    """True for a full commit hash (40 hex digits), the only revision that cannot move."""
    return bool(revision) and _COMMIT.fullmatch(revision) is not None


def require_pinned(revision: str | None, what: str) -> str:
    """`revision` if it is a commit (40 hex digits); else a clear error.

    Why: a branch like `main` moves, so a study read from it could change under finished results.
    """
    if not is_commit(revision):
        raise QuagmireError(
            f"{what}: a hub revision must be pinned to a commit (40 hex digits) in the config (got {revision!r})"
        )
    return revision
