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


def fingerprint(settings: Mapping[str, Any], files: Iterable[str | os.PathLike[str]] = (),
                folders: Iterable[str | os.PathLike[str]] = ()) -> str:
    """A short hash of what a resumable job's partial progress was computed from.

    Files are hashed by content. Folders (model checkpoints, gigabytes at paper scale) are hashed by each file's
    name, size and modification time: a retrained model is a new folder with new mtimes, and hashing 16 GB of
    weights on every restart would cost more than the work it saves.
    """
    digest = hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    for path in files:
        digest.update(sha256_file(path).encode())
    for folder in folders:
        for item in sorted(Path(folder).rglob("*")):
            if item.is_file():
                stat = item.stat()
                digest.update(f"{item.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


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
