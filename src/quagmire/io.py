"""Atomic file and folder writes, so a killed job never leaves a file that looks finished.

Every artifact is written to a temporary sibling and renamed into place only when complete:
Snakemake (and a human) then sees either the whole file or none of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PARTIAL_STAMP = "fingerprint.json"  # in a partial_dir: which run its progress belongs to


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a shared results folder needs the umask's mode
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; move it onto `path` only if the block succeeds.

    A previous complete `path` is replaced only after the new one is fully written.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def partial_dir(out: str | os.PathLike[str]) -> Path:
    """`<out>.partial`: where a resumable job keeps its progress (checkpoints, finished sampling calls) until
    `out` is complete. It is never a declared output, so Snakemake neither takes it for a result nor deletes it
    when the job fails; the job removes it once `out` is in place."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def claim_partial(folder: str | os.PathLike[str], record: Mapping[str, Any], what: str) -> None:
    """Make `folder` (a `partial_dir`) the progress folder of the run that `record` describes, keeping what an
    earlier attempt at the same run left there and discarding anything left by another run.

    `record` carries a "sha256" of everything the progress depends on (inputs, settings, parent model) and may
    carry the parts it was computed from, which the warning then names when they differ. Progress from another
    run is never resumed: it would mix two experiments in one result. A folder without any file holds no
    progress and goes without a warning.
    """
    folder = Path(folder)
    stamp = folder / PARTIAL_STAMP
    if folder.exists():
        try:
            previous = read_json(stamp)
        except (OSError, ValueError):
            previous = None
        if not (isinstance(previous, dict) and previous.get("sha256") == record["sha256"]):
            if any(p.is_file() for p in folder.rglob("*")):
                changed = (
                    [k for k in record if k != "sha256" and previous.get(k) != record[k]]
                    if isinstance(previous, dict)
                    else ["no readable fingerprint"]
                )
                log.warning("discarding %s in %s: it was for other inputs or settings (changed: %s); starting fresh",
                            what, folder, ", ".join(changed) or "unknown")
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(stamp, dict(record))


def _umask() -> int:
    """The process umask (reading it requires setting it; restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by `write_json`."""
    return json.loads(Path(path).read_text())


def write_parquet(path: str | os.PathLike[str], frame: Any, metadata: dict[str, Any] | None = None) -> None:
    """Write a pandas DataFrame to Parquet atomically; `metadata` is stored as JSON in the file's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged[b"quagmire"] = json.dumps(metadata, sort_keys=True, default=_json_default).encode()
        table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the `metadata` dict that `write_parquet` stored, or {} if none."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(b"quagmire")
    return json.loads(raw) if raw else {}


def _json_default(obj: Any) -> Any:
    """Let numpy scalars and paths pass through json.dumps."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
