"""The base of the data stage's two registries, training sources (`sources`) and evaluation benchmarks
(`benchmarks`): what a spec of a data set is, how a config entry becomes one, how its rows are read, and how
the normalized frame is written with its manifest.

Why one base: a source and a benchmark are the same kind of thing, a named data set at a pinned hub revision
or in a local file, with a mapping of its field names. Both must accept config overrides and name the entry in
errors, refuse a moving revision, read rows one way, read a numeric gold one way, and record where their rows
came from one way, or the two halves of a study could disagree on what a data set is. What differs (an SFT
response or an RL prompt, a benchmark's id and worked solution, the gold answer kinds each knows) stays in the
subclasses.

Why rows are read one by one: a training dump may be far larger than memory allows as one frame, and one bad
line (not UTF-8, not JSON, not an object) must cost one dropped row with its reason, never the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from quagmire.answers import number_text  # noqa: F401  (re-exported: the one plain-number writer)
from quagmire.errors import QuagmireError
from quagmire.provenance import require_pinned

UNPINNED = "main"  # placeholder revision of every registered spec; a config must replace it with a dataset commit

# How the gold answer is read from `answer_field` (the kinds both registries know; benchmarks add their own).
ANSWER_TEXT = "text"  # the field itself (a string or a number)
ANSWER_BOXED = "boxed"  # the last \boxed{} of the field (a worked solution)

PARQUET_BATCH = 4096  # rows per Arrow batch when reading a local Parquet file
HUB_BATCH = 1024  # rows per Arrow batch when reading a hub split

# A reader yields one item per row: the record, or the reason it could not be read as one.
Record = dict[str, Any] | str
Spec = TypeVar("Spec", bound="DataSpec")


@dataclass(frozen=True)
class DataSpec:
    """Where one data set comes from (a hub dataset at a pinned revision, or a local file) and its fields.

    `path`, when set, wins over the hub (JSONL or Parquet). `keep_fields` are carried into the normalized frame
    beside its own columns. Subclasses set the class attributes that name them in errors, the answer kinds they
    read and the columns of their frame.
    """

    name: str
    hub_id: str | None = None
    revision: str = UNPINNED
    config: str | None = None
    split: str = "train"
    answer_field: str = "answer"
    answer_kind: str = ANSWER_TEXT
    keep_fields: tuple[str, ...] = ()
    path: str | None = None

    what: ClassVar[str] = "data set"  # names one spec in errors: "<what> <name>: ..."
    label: ClassVar[str] = "data set"  # names the registry in errors: "unknown <label> 'x'"
    answer_kinds: ClassVar[tuple[str, ...]] = (ANSWER_TEXT, ANSWER_BOXED)
    columns: ClassVar[frozenset[str]] = frozenset()  # the frame's own columns, which keep_fields may not reuse

    def __post_init__(self) -> None:
        if self.answer_kind not in self.answer_kinds:
            raise QuagmireError(
                f"{self.where}: answer_kind must be one of {', '.join(self.answer_kinds)} (got {self.answer_kind!r})"
            )
        if self.hub_id is None and self.path is None:
            raise QuagmireError(f"{self.where}: give either a hub dataset id or a local path")
        clash = set(self.keep_fields) & self.columns
        if clash:
            raise QuagmireError(f"{self.where}: keep_fields may not reuse column names {sorted(clash)}")

    @property
    def where(self) -> str:
        """How errors about this spec begin, e.g. "source deepscaler"."""
        return f"{self.what} {self.name}"

    def local_file(self, path: str | os.PathLike[str] | None = None) -> Path | None:
        """The local file to read: `path` if given, else the spec's own; None means the pinned hub split."""
        if path is not None:
            return Path(path)
        return Path(self.path) if self.path else None

    def origin(self, local: Path | None) -> str:
        """The `source` column of the frame: the local file's name, or `hub_id@revision`."""
        return local.name if local is not None else f"{self.hub_id}@{self.revision}"

    def check_pinned(self) -> None:
        """Refuse a hub load whose revision is not a commit: a branch like `main` moves under a finished study."""
        require_pinned(self.revision, f"{self.where}: hub dataset {self.hub_id} (or give a local path)")

    def read_records(self, local: Path | None, limit: int | None = None) -> Iterator[Record]:
        """Records of the local file, or of the pinned hub split (checked now, before any import or network).

        `limit` reads only the first rows (a hub split is then streamed). Either way a row is a plain Python
        dict (lists, not arrays; None, not NaN), so the one normalization sees the same values from either.
        """
        if local is not None:
            return local_records(local, self.where, limit)
        self.check_pinned()
        return hub_records(self, limit)

    def origin_record(self, local: Path | None) -> dict[str, Any]:
        """Where the rows came from, exactly enough to fetch the same bytes again: the local file's size and
        sha256, or the hub dataset, config, pinned revision and split."""
        from quagmire.provenance import sha256_file

        if local is not None:
            return {"kind": "local", "path": str(local), "bytes": local.stat().st_size, "sha256": sha256_file(local)}
        return {"kind": "hub", "dataset": self.hub_id, "config": self.config, "revision": self.revision,
                "split": self.split}


# --------------------------------------------------------------------------- registry and config entries


def registered(
    spec_type: type[Spec], registry: Mapping[str, Spec], name: str, overrides: Mapping[str, Any] | None = None
) -> Spec:
    """The registered spec `name` with config `overrides` (a pinned `revision`, a local `path`, field names)."""
    if name not in registry:
        raise QuagmireError(f"unknown {spec_type.label} {name!r}; known: {', '.join(sorted(registry))}")
    return with_overrides(registry[name], overrides, registry[name].where)


def spec_from_entry(
    spec_type: type[Spec],
    registry: Mapping[str, Spec],
    name: str,
    settings: Mapping[str, Any],
    where: str,
    *,
    base: str | None = None,
    how: str = "",
    **fixed: Any,
) -> Spec:
    """The spec `name` of one config entry: the registered spec `base` (default: `name`) with the entry's settings
    as overrides, or, for a name not registered, a spec of its own, which must say where its rows are.

    `where` names the entry (e.g. "data.rl[1]", "eval.benchmarks.aime24"); every error starts with it, since the
    entry is what the user edits. `how` is the registry's own way to pick a base, told in the error for a name
    it does not know; `fixed` are settings the entry's place in the config decides (a source's kind).
    """
    base = name if base is None else base
    try:
        if base in registry:
            spec = registered(spec_type, registry, base, settings)
            return spec if spec.name == name else dataclasses.replace(spec, name=name)
        if "hub_id" not in settings and "path" not in settings:
            raise QuagmireError(
                f"{base!r} is not a registered {spec_type.label} ({', '.join(sorted(registry))}); give {how}a "
                "`hub_id` or `path` with its field mapping"
            )
        return spec_type(name=name, **fixed, **spec_values(settings))
    except QuagmireError as error:
        raise QuagmireError(f"{where}: {error}") from error


def with_overrides(spec: Spec, overrides: Mapping[str, Any] | None, where: str) -> Spec:
    """`spec` with config `overrides`; a key that is not one of its fields is an error starting with `where`."""
    if not overrides:
        return spec
    allowed = {f.name for f in dataclasses.fields(spec)} - {"name"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise QuagmireError(f"{where}: unknown setting(s) {unknown}; allowed: {sorted(allowed)}")
    return dataclasses.replace(spec, **spec_values(overrides))


def spec_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Config values as spec fields: YAML lists become tuples, the type of the specs' sequence fields (frozen
    dataclasses must stay hashable)."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}


# --------------------------------------------------------------------------- reading records


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
        narrow = _narrow_float_columns(batch.schema)
        rows = batch.to_pylist()
        for name, dtype in narrow.items():  # Arrow widens float32 cells to Python floats: 0.3 would read 0.30000001…
            for row in rows:
                if row.get(name) is not None:
                    row[name] = dtype(row[name])  # exact: a float32 survives the round trip through float64
        for row in rows:
            if limit is not None and count >= limit:
                return
            count += 1
            yield row


def _narrow_float_columns(schema: Any) -> dict[str, Any]:
    """Top-level float16/float32 columns of an Arrow schema -> the numpy type that keeps their digits."""
    import numpy as np
    import pyarrow as pa

    types = {pa.float16(): np.float16, pa.float32(): np.float32}
    return {field.name: types[field.type] for field in schema if field.type in types}


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


def hub_records(spec: DataSpec, limit: int | None = None) -> Iterator[Record]:
    """Records of the spec's hub split at its pinned revision; streamed when only `limit` rows are wanted."""
    spec.check_pinned()
    import datasets

    try:
        if limit is None:
            dataset = datasets.load_dataset(spec.hub_id, name=spec.config, split=spec.split, revision=spec.revision)
        else:
            dataset = datasets.load_dataset(
                spec.hub_id, name=spec.config, split=spec.split, revision=spec.revision, streaming=True
            ).take(limit)
        narrow = _narrow_float_features(getattr(dataset, "features", None))
        for batch in dataset.iter(batch_size=HUB_BATCH):  # a stream can fail midway, hence inside the try
            columns = list(batch)
            n_rows = len(batch[columns[0]]) if columns else 0
            for i in range(n_rows):
                row = {column: batch[column][i] for column in columns}
                for name, dtype in narrow.items():  # as in `read_parquet_rows`: keep a float32 gold's digits
                    if row.get(name) is not None:
                        row[name] = dtype(row[name])
                yield row
    except Exception as error:  # the hub raises many types; the user needs the one line
        raise QuagmireError(f"{spec.where}: cannot load {spec.origin(None)} split {spec.split}: {error}") from error


def _narrow_float_features(features: Any) -> dict[str, Any]:
    """Top-level float16/float32 features of a hub data set -> the numpy type that keeps their digits."""
    import numpy as np

    types = {"float16": np.float16, "float32": np.float32}
    return {
        name: types[feature.dtype]
        for name, feature in (features or {}).items()
        if getattr(feature, "dtype", None) in types
    }


# --------------------------------------------------------------------------- cell values and answer text


def is_missing(value: Any) -> bool:
    """None or a NaN float (pandas and Arrow fill absent keys with either)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def plain(value: Any) -> Any:
    """A numpy array or scalar (pandas cells) as its Python value; anything else as is.

    Except float16/float32 values, which stay numpy scalars (an array becomes a list of them): as Python floats
    they would widen to float64 and a gold `0.3` would be written `0.30000001192092896` (`number_text`).
    """
    dtype = getattr(value, "dtype", None)
    if dtype is not None and dtype.kind == "f" and dtype.itemsize < 8:
        return list(value) if getattr(value, "ndim", 0) else value
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, (str, bytes)) else value


def as_list(value: Any) -> list[Any] | None:
    """A list-like cell (list, tuple, numpy array) as a list; None for anything else."""
    value = plain(value)
    return list(value) if isinstance(value, (list, tuple)) else None


# --------------------------------------------------------------------------- manifest and writing


def row_counts(kept: int, dropped: Mapping[str, int]) -> dict[str, Any]:
    """The manifest's `rows`: read (every row, kept or dropped), kept, and dropped by reason."""
    return {"read": kept + sum(dropped.values()), "kept": kept, "dropped": dict(sorted(dropped.items()))}


def no_usable_rows(spec: DataSpec, origin: str, dropped: Mapping[str, int], hint: str = "") -> QuagmireError:
    """The error for a data set of which no row could be used, with the reasons its rows were dropped."""
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())) or "the source is empty"
    return QuagmireError(f"{spec.where}: no usable rows in {origin} (read {sum(dropped.values())}; {detail}){hint}")


def write_with_manifest(frame: Any, manifest: Mapping[str, Any], out_parquet: str | os.PathLike[str]) -> None:
    """Write the frame (manifest stored in its Parquet metadata) and `<out>.manifest.json`, each atomically."""
    from quagmire.io import write_json, write_parquet
    from quagmire.provenance import code_version

    manifest = {**dict(manifest), "code": code_version()}
    write_parquet(out_parquet, frame, metadata=manifest)
    write_json(f"{os.fspath(out_parquet)}.manifest.json", manifest)
