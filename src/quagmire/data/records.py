"""Reading the rows of a data file, and applying config overrides to a registered spec: shared by the benchmark
registry (`benchmarks`) and the training-data registry (`sources`).

Why rows are read one by one: a training dump may be far larger than memory allows as one frame, and one bad
line (not UTF-8, not JSON, not an object) must cost one dropped row with its reason, never the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from quagmire.errors import QuagmireError

PARQUET_BATCH = 4096  # rows per Arrow batch when reading a local Parquet file

# A reader yields one item per row: the record, or the reason it could not be read as one.
Record = dict[str, Any] | str
Spec = TypeVar("Spec")


def read_jsonl(path: Path, limit: int | None = None) -> Iterator[Record]:
    """Records of a JSONL file, line by line; bytes are decoded per line, strictly.

    A line that is not UTF-8, not JSON or not a JSON object is one row: the reason string
    ("invalid_utf8", "invalid_json", "not_an_object") instead of a record.
    """
    count = 0
    with path.open("rb") as handle:
        for raw in handle:
            if limit is not None and count >= limit:
                return
            if not raw.strip():
                continue
            count += 1
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield "invalid_utf8"
                continue
            except json.JSONDecodeError:
                yield "invalid_json"
                continue
            yield obj if isinstance(obj, dict) else "not_an_object"


def read_parquet_rows(path: Path, limit: int | None = None) -> Iterator[Record]:
    """Records of a Parquet file, batch by batch; nested columns (chat lists) come back as Python lists."""
    import pyarrow.parquet as pq

    count = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH):
        for row in batch.to_pylist():
            if limit is not None and count >= limit:
                return
            count += 1
            yield row


def local_records(path: Path, what: str, limit: int | None = None) -> Iterator[Record]:
    """Records of a local JSONL or Parquet file; a missing or unreadable file is an error naming `what` and it."""
    if not path.is_file():
        raise QuagmireError(f"{what}: file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        reader = read_parquet_rows(path, limit)
    elif suffix in (".jsonl", ".json"):
        reader = read_jsonl(path, limit)
    else:
        raise QuagmireError(f"{what}: expected a .jsonl or .parquet file (got {path})")
    try:
        yield from reader
    except OSError as error:
        raise QuagmireError(f"{what}: cannot read {path}: {error}") from error
    except Exception as error:  # pyarrow raises its own types for a corrupt file
        if type(error).__module__.startswith("pyarrow"):
            raise QuagmireError(f"{what}: cannot read Parquet file {path}: {error}") from error
        raise


def is_missing(value: Any) -> bool:
    """None or a NaN float (pandas and Arrow fill absent keys with either)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def with_overrides(spec: Spec, overrides: Mapping[str, Any] | None, what: str) -> Spec:
    """`spec` (a frozen dataclass) with config `overrides`; a key that is not one of its fields is an error."""
    if not overrides:
        return spec
    allowed = {f.name for f in dataclasses.fields(spec)} - {"name"}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise QuagmireError(f"{what}: unknown setting(s) {unknown}; allowed: {sorted(allowed)}")
    return dataclasses.replace(spec, **spec_values(overrides))  # type: ignore[type-var]


def spec_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Config values as spec fields: YAML lists become tuples, the type of the specs' sequence fields (frozen
    dataclasses must stay hashable)."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}


def origin_record(spec: Any, path: Path | None) -> dict[str, Any]:
    """Where a spec's rows came from, exactly enough to fetch the same bytes again: the local file's size and
    sha256, or the hub dataset, config, pinned revision and split."""
    from quagmire.provenance import sha256_file

    if path is not None:
        return {"kind": "local", "path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return {"kind": "hub", "dataset": spec.hub_id, "config": spec.config, "revision": spec.revision,
            "split": spec.split}


def write_with_manifest(frame: Any, manifest: Mapping[str, Any], out_parquet: str | os.PathLike[str]) -> None:
    """Write the frame (manifest stored in its Parquet metadata) and `<out>.manifest.json`, each atomically."""
    from quagmire.io import write_json, write_parquet

    write_parquet(out_parquet, frame, metadata=dict(manifest))
    write_json(f"{os.fspath(out_parquet)}.manifest.json", dict(manifest))
