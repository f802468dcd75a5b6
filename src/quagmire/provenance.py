"""Provenance: which data and which parent model went into each artifact, by path and sha256.

Why: a user auditing a figure must be able to walk back from any checkpoint to the exact data files that
trained it. Each model folder carries a `lineage.json` that embeds its parent's lineage, so the chain
base -> SFT -> GRPO is readable from the final checkpoint alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from quagmire.errors import QuagmireError

_COMMIT = re.compile(r"[0-9a-f]{40}")
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
            "lineage": json.loads(parent_lineage.read_text()) if parent_lineage.exists() else None,
        }
    return {
        "kind": kind,
        "parent": parent_record,
        "data": [file_record(p) for p in data],
        "settings": dict(settings),
        "packages": package_versions(),
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
