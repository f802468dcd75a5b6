"""Audit a number: the provenance tree of any artifact under results/, back to the raw sources.

Why: a figure is only as trustworthy as the chain of steps behind it. `quagmire provenance ARTIFACT` walks from
the artifact to its inputs, and theirs, until it reaches files no step made (the raw data, a hub download). For
each step it shows the rule, its parameters and settings, the code version (git commit, dirty or not), the package
versions, the sha256 identity of every input and output, where raw data came from (hub id and revision, or a
local file with its sha256) and the data-audit counts (rows read, kept, dropped by reason).

Two records are read, each for what it knows:
- Snakemake's own (`.snakemake/metadata/`, one JSON per output file, named by the base64 of its path): the rule,
  its input list, params, shell command, start and end time, and the sha256 of inputs up to 1 MB.
- the project's manifests, which travel with the results: a step manifest stored in the artifact (the
  `manifest` key of a JSON file or of a Parquet file's metadata) or beside it (`<artifact>.manifest.json`, for
  tables and figures), a model folder's `lineage.json`, and the data manifests of hub sources, filters and
  benchmarks. They name every input by path and sha256, the settings and the code version.
Without `.snakemake` (a results folder copied to another machine) the manifests alone give the tree.

The walk is over a DAG: a file reached twice (a benchmark read by every evaluation) is shown in full once and
referred to after. `check=True` compares the sha256 of every file on the way with every hash recorded for it when
a step read it (and a table's or figure's own hash in its sidecar): a file changed since is reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from base64 import urlsafe_b64encode
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quagmire.errors import QuagmireError
from quagmire.provenance import MANIFEST_KEY, SIDECAR_SUFFIX, identity_sha256

SNAKEMAKE_METADATA = Path(".snakemake") / "metadata"
RESULTS = "results"
_SETTINGS_TEXT = 240  # characters of a step's settings shown in the text tree (all of them in --json)


@dataclass
class FileNode:
    """One file or folder on the way: what it is now and which step made it."""

    path: str
    kind: str  # "file", "folder" or "missing"
    sha256: str | None
    bytes: int | None
    step: str | None  # the id of the step that made it; None for a raw input no step made
    recorded: list[dict[str, str]] = field(default_factory=list)  # hashes recorded for it: {"by", "sha256"}
    changed: list[str] = field(default_factory=list)  # with check: why it differs from a recorded hash


@dataclass
class Step:
    """One job of the DAG: the rule (or the manifest's step name) that made some files from others."""

    id: str
    rule: str
    record: str  # where this was read from: "snakemake+manifest", "snakemake" or "manifest"
    outputs: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    params: list[str] | None = None
    shellcmd: str | None = None
    settings: Any = None
    code: dict[str, Any] | None = None
    packages: dict[str, str] | None = None
    started: str | None = None
    finished: str | None = None
    model: dict[str, Any] | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)  # hub ids and revisions, local files with sha256
    rows: dict[str, Any] | None = None  # data-audit counts: read, kept, dropped by reason


@dataclass
class Tree:
    """The provenance of one artifact: every file and step on the way, keyed by path and step id."""

    artifact: str
    workdir: str
    snakemake_records: bool
    files: dict[str, FileNode]
    steps: dict[str, Step]
    seconds: float = 0.0

    @property
    def changed(self) -> list[FileNode]:
        return [node for node in self.files.values() if node.changed]

    def counts(self) -> dict[str, int]:
        """How big the tree is: steps, files (and folders), distinct sha256 values."""
        hashes = {n.sha256 for n in self.files.values() if n.sha256}
        return {"steps": len(self.steps), "files": len(self.files), "hashes": len(hashes),
                "raw_inputs": sum(1 for n in self.files.values() if n.step is None)}

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "workdir": self.workdir,
            "snakemake_records": self.snakemake_records,
            "counts": self.counts(),
            "seconds": round(self.seconds, 3),
            "files": {path: asdict(node) for path, node in self.files.items()},
            "steps": {sid: asdict(step) for sid, step in self.steps.items()},
        }


# ---- reading the records ------------------------------------------------------------------------------------


def snakemake_record_path(metadata_dir: Path, key: str) -> Path:
    """Where Snakemake's file persistence keeps the record of output `key` (its path as the rule wrote it): the
    urlsafe base64 of the path, cut into folder levels of at most NAME_MAX - 1 characters (all but the last
    prefixed with '@'), as `snakemake.persistence.file.FilePersistence._record_path` lays it out."""
    try:
        max_len = os.pathconf(metadata_dir, "PC_NAME_MAX") if os.name == "posix" else 255
    except (OSError, ValueError):
        max_len = 255
    max_len = max_len or 255
    b64 = urlsafe_b64encode(key.encode()).decode()
    parts = [b64[i : i + max_len - 1] for i in range(0, len(b64), max_len - 1)]
    return metadata_dir.joinpath(*["@" + p for p in parts[:-1]], parts[-1])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def own_records(path: Path) -> list[tuple[str, Mapping[str, Any]]]:
    """Every record an artifact carries about how it was made, as (what, record): its step manifest, a model
    folder's lineage, the data manifest beside or inside a data file."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    sidecar = _read_json(Path(f"{path}{SIDECAR_SUFFIX}"))
    if isinstance(sidecar, Mapping):
        found.append(("manifest" if "step" in sidecar else "data manifest", sidecar))
    if path.is_dir():
        lineage = _read_json(path / "lineage.json")
        if isinstance(lineage, Mapping):
            found.append(("lineage", lineage))
        return found
    if path.suffix == ".parquet" and path.is_file():
        from quagmire.io import read_parquet_metadata

        try:
            meta = read_parquet_metadata(path)
        except Exception:  # noqa: BLE001 - a damaged file is reported by the check, not here
            meta = {}
        if isinstance(meta.get(MANIFEST_KEY), Mapping):
            found.append(("manifest", meta[MANIFEST_KEY]))
        if meta and not any(what == "data manifest" for what, _ in found):
            found.append(("data manifest", meta))
        filter_manifest = _read_json(path.with_suffix(SIDECAR_SUFFIX))  # data/clean/sft.manifest.json
        if isinstance(filter_manifest, Mapping):
            found.append(("data manifest", filter_manifest))
    elif path.suffix == ".json" and path.is_file():
        data = _read_json(path)
        if isinstance(data, Mapping) and isinstance(data.get(MANIFEST_KEY), Mapping):
            found.append(("manifest", data[MANIFEST_KEY]))
    return found


def _lineage_as_manifest(lineage: Mapping[str, Any]) -> dict[str, Any]:
    """A model folder's lineage in the shape of a step manifest (its parent and data are its inputs)."""
    inputs = []
    parent = lineage.get("parent")
    if isinstance(parent, Mapping) and parent.get("path"):
        inputs.append({"role": "parent", "path": parent["path"], "sha256": parent.get("sha256")})
    for record in lineage.get("data") or []:
        inputs.append({"role": "data", **record})
    return {"step": lineage.get("kind"), "inputs": inputs, "settings": lineage.get("settings"),
            "code": lineage.get("code"), "packages": lineage.get("packages")}


def _rows(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """Rows read, kept and dropped by reason, from a source/benchmark manifest or a filter summary."""
    if isinstance(record.get("rows"), Mapping):
        return dict(record["rows"])
    filters = record.get("filters") if isinstance(record.get("filters"), Mapping) else record
    if "rows_in" in filters and "rows_out" in filters:
        dropped = {s["step"]: s.get("dropped") for s in filters.get("steps") or [] if isinstance(s, Mapping)}
        return {"read": filters["rows_in"], "kept": filters["rows_out"], "dropped": dropped}
    if "pool_size" in record and "heldout_size" in record:
        return {"pool": record["pool_size"], "heldout": record["heldout_size"]}
    return None


def _sources(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Hub ids with revisions, or local files with sha256, named by a data manifest or a base model's lineage."""
    source = record.get("source")
    if isinstance(source, Mapping) and source.get("kind") in ("hub", "local"):
        return [{k: v for k, v in source.items() if k != "files"}]
    if isinstance(source, Mapping) and isinstance(source.get("source"), Mapping):  # a filter's source record
        return _sources(source)
    return []


def _when(seconds: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else None


class _Walker:
    def __init__(self, workdir: Path, check: bool):
        self.workdir = workdir
        self.check = check
        metadata = workdir / SNAKEMAKE_METADATA
        self.metadata_dir = metadata if metadata.is_dir() else None
        self.files: dict[str, FileNode] = {}
        self.steps: dict[str, Step] = {}

    def key(self, path: str | os.PathLike[str]) -> str:
        """A path as the rules write it: relative to the working directory where it lies inside it."""
        p = Path(os.path.normpath(path))
        if p.is_absolute():
            try:
                return p.relative_to(self.workdir).as_posix()
            except ValueError:
                return p.as_posix()
        return p.as_posix()

    def resolve(self, key: str) -> Path:
        p = Path(key)
        return p if p.is_absolute() else self.workdir / p

    def snakemake_record(self, key: str) -> Mapping[str, Any] | None:
        if self.metadata_dir is None:
            return None
        record = _read_json(snakemake_record_path(self.metadata_dir, key))
        return record if isinstance(record, Mapping) and not record.get("incomplete") else None

    def node(self, key: str) -> FileNode:
        path = self.resolve(key)
        if path.is_dir():
            return FileNode(key, "folder", identity_sha256(path), None, None)
        if path.is_file():
            return FileNode(key, "file", identity_sha256(path), path.stat().st_size, None)
        return FileNode(key, "missing", None, None, None)

    def walk(self, root: str) -> None:
        queue = [root]
        while queue:
            key = queue.pop(0)
            if key in self.files:
                continue
            node = self.files[key] = self.node(key)
            step = self.step_of(key)
            if step is None:
                continue
            node.step = step.id
            if step.id in self.steps:
                self.steps[step.id].outputs.append(key)
                continue
            step.outputs.append(key)
            self.steps[step.id] = step
            queue.extend(step.inputs)
        self.attach_recorded_hashes()

    def step_of(self, key: str) -> Step | None:
        """The step that made `key`, from Snakemake's record and the artifact's own manifests (None: a raw input)."""
        smk = self.snakemake_record(key)
        records = own_records(self.resolve(key))
        manifest: Mapping[str, Any] | None = None
        rows, sources = None, []
        for what, record in records:
            if what == "manifest" and manifest is None:
                manifest = record
            elif what == "lineage" and manifest is None:
                manifest = _lineage_as_manifest(record)
                sources += _sources(record)
            elif what == "data manifest":
                rows = rows or _rows(record)
                sources += [s for s in _sources(record) if s not in sources]
        if smk is None and manifest is None and rows is None and not sources:
            return None
        inputs: list[str] = []
        for entry in (manifest or {}).get("inputs") or []:
            if isinstance(entry, Mapping) and entry.get("path"):
                inputs.append(self.key(entry["path"]))
        if smk is not None:
            inputs = sorted({*inputs, *(self.key(p) for p in smk.get("input") or [])})
        rule = (smk or {}).get("rule") or (manifest or {}).get("step") or "unknown"
        if smk is not None and smk.get("job_hash") is not None:
            sid = f"{rule}#{smk['job_hash']}"
        else:
            basis = json.dumps({"rule": rule, "inputs": inputs, "settings": (manifest or {}).get("settings"),
                                "key": None if manifest else key}, sort_keys=True, default=str)
            sid = f"{rule}#{hashlib.sha256(basis.encode()).hexdigest()[:12]}"
        origin = "+".join(w for w, present in (("snakemake", smk), ("manifest", manifest or rows)) if present)
        return Step(
            id=sid, rule=rule, record=origin, inputs=inputs,
            params=list(smk["params"]) if smk and smk.get("params") is not None else None,
            shellcmd=(smk or {}).get("shellcmd"),
            settings=(manifest or {}).get("settings"),
            code=(manifest or {}).get("code"),
            packages=(manifest or {}).get("packages"),
            started=_when((smk or {}).get("starttime")),
            finished=_when((smk or {}).get("endtime")),
            model=(manifest or {}).get("model"),
            sources=sources,
            rows=rows,
        )

    def recorded_hashes(self) -> Iterator[tuple[str, str, str]]:
        """(file key, sha256, by whom) for every hash recorded of a file when a step read or wrote it."""
        for key, node in self.files.items():
            if node.step is None:
                continue
            step = self.steps[node.step]
            path = self.resolve(key)
            for what, record in own_records(path):
                if what == "manifest":
                    output = record.get("output")
                    if isinstance(output, Mapping) and output.get("sha256"):
                        yield key, output["sha256"], f"{step.rule} (its own record)"
                    entries = record.get("inputs") or []
                elif what == "lineage":
                    entries = _lineage_as_manifest(record)["inputs"]
                else:
                    entries = record.get("inputs") or []
                    source = record.get("source")
                    if isinstance(source, Mapping) and source.get("kind") == "local" and source.get("sha256"):
                        entries = [*entries, source]
                    if isinstance(record.get("from"), Mapping):
                        entries = [*entries, record["from"]]
                for entry in entries:
                    if isinstance(entry, Mapping) and entry.get("path") and entry.get("sha256"):
                        yield self.key(entry["path"]), entry["sha256"], f"{step.rule} -> {key}"
            smk = self.snakemake_record(key)
            for infile, checksum in ((smk or {}).get("input_checksums") or {}).items():
                if isinstance(checksum, str) and checksum.startswith("sha256:"):
                    yield self.key(infile), checksum.split(":", 1)[1], f"{step.rule} -> {key} (snakemake)"

    def attach_recorded_hashes(self) -> None:
        for key, sha, by in self.recorded_hashes():
            node = self.files.get(key)
            if node is None or {"by": by, "sha256": sha} in node.recorded:
                continue
            node.recorded.append({"by": by, "sha256": sha})
            if self.check and node.sha256 != sha:
                now = node.sha256 or "missing"
                node.changed.append(f"recorded {sha[:12]} by {by}, now {now[:12]}")


def infer_workdir(artifact: Path) -> Path:
    """The folder the rules ran in: the parent of the `results` folder the artifact lies under (or the current
    folder). Paths in the records are relative to it."""
    for parent in artifact.parents:
        if parent.name == RESULTS:
            return parent.parent
    return Path.cwd()


def build_tree(artifact: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None,
               check: bool = False) -> Tree:
    """The provenance tree of `artifact`: every step and file it was made from, back to the raw inputs."""
    start = time.perf_counter()
    path = Path(artifact).absolute()
    if not path.exists():
        raise QuagmireError(f"no such artifact {artifact}")
    workdir = Path(directory).absolute() if directory is not None else infer_workdir(path)
    walker = _Walker(workdir, check)
    root = walker.key(path)
    walker.walk(root)
    tree = Tree(root, str(workdir), walker.metadata_dir is not None, walker.files, walker.steps)
    tree.seconds = time.perf_counter() - start
    return tree


# ---- rendering ----------------------------------------------------------------------------------------------


def _short(value: Any, limit: int = _SETTINGS_TEXT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code_text(code: Mapping[str, Any] | None) -> str:
    if not code:
        return "code: not recorded"
    dirty = code.get("dirty")
    state = "dirty" if dirty is True else "clean" if dirty is False else f"dirty {dirty}"
    return f"code: {code.get('commit')} ({state})"


def _step_lines(step: Step, packages_shown: dict[str, Any]) -> list[str]:
    when = f"  finished {step.finished}" if step.finished else ""
    lines = [f"<- {step.rule}  [{step.record}]{when}", _code_text(step.code)]
    if step.settings:
        lines.append(f"settings: {_short(step.settings)}")
    elif step.params:
        lines.append(f"params: {_short(step.params)}")
    if step.model:
        lines.append(f"model: {step.model.get('path')} sha256 {step.model.get('sha256')}")
    for source in step.sources:
        lines.append(f"source: {_short(source)}")
    if step.rows:
        lines.append(f"rows: {_short(step.rows)}")
    if step.packages and step.packages != packages_shown.get("last"):  # repeated only where they change
        lines.append("packages: " + ", ".join(f"{k} {v}" for k, v in sorted(step.packages.items())))
        packages_shown["last"] = step.packages
    return lines


def render_text(tree: Tree) -> str:
    """The tree, indented: each file with its sha256, under it the step that made it and that step's inputs. A
    file or step reached again is named with "(see above)"; package versions are shown where they change."""
    out: list[str] = []
    shown_files: set[str] = set()
    shown_steps: set[str] = set()
    packages_shown: dict[str, Any] = {}

    def file_line(node: FileNode) -> str:
        size = f", {node.bytes} bytes" if node.bytes is not None else ""
        flag = "  CHANGED: " + "; ".join(node.changed) if node.changed else ""
        what = "missing" if node.kind == "missing" else f"sha256 {node.sha256}"
        return f"{node.path}  [{node.kind}{size}] {what}{flag}"

    def visit(key: str, depth: int) -> None:
        node = tree.files[key]
        pad = "  " * depth
        if key in shown_files:
            out.append(f"{pad}{key}  (see above)")
            return
        shown_files.add(key)
        out.append(pad + file_line(node))
        if node.step is None:
            out.append(f"{pad}  <- raw input (no step made it)")
            return
        step = tree.steps[node.step]
        if step.id in shown_steps:
            out.append(f"{pad}  <- {step.rule} (see above, with {', '.join(o for o in step.outputs if o != key)})")
            return
        shown_steps.add(step.id)
        out.extend(f"{pad}  {line}" for line in _step_lines(step, packages_shown))
        for child in step.inputs:
            visit(child, depth + 2)

    visit(tree.artifact, 0)
    counts = tree.counts()
    out.append(f"{counts['steps']} steps, {counts['files']} files, {counts['hashes']} distinct sha256, "
               f"{counts['raw_inputs']} raw inputs; records: "
               f"{'snakemake + manifests' if tree.snakemake_records else 'manifests only (no .snakemake)'}")
    return "\n".join(out) + "\n"


def print_provenance(artifact: str, directory: str | None = None, as_json: bool = False,
                     check: bool = False) -> None:
    """Print the provenance tree of `artifact` (text or JSON); with `check`, print a CHANGED line per file whose
    sha256 differs from one recorded when it was used, and fail if there is any: the `quagmire provenance`
    command."""
    tree = build_tree(artifact, directory=directory, check=check)
    if as_json:
        print(json.dumps(tree.to_json(), indent=2, sort_keys=True, default=str))
    else:
        print(render_text(tree), end="")
    if check:
        stream = sys.stderr if as_json else sys.stdout  # --json keeps stdout one JSON document
        for node in tree.changed:
            print(f"CHANGED {node.path}: {'; '.join(node.changed)}", file=stream)
        if tree.changed:
            raise QuagmireError(f"{len(tree.changed)} file(s) changed since they were used: "
                                f"{', '.join(n.path for n in tree.changed)}")
        checked = sum(1 for n in tree.files.values() if n.recorded)
        print(f"check: {checked} of {len(tree.files)} files have a recorded sha256, and all match", file=stream)
