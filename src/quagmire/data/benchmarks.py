"""Evaluation benchmarks: where each one comes from, how its gold answer is read, one normalized row schema.

Every benchmark becomes the same frame, whatever the source's field names: `problem_id, prompt, answer,
source, source_row` (+ `gold_solution` where the source has a worked solution, + the spec's `keep_fields`).
Why one module owns this: each published copy of a benchmark stores its gold differently (GSM8K after `####`,
Minerva-Math only inside `\\boxed{}`, OlympiadBench as a list, AMC as a float), and a wrong gold silently
scores correct answers as wrong. A row that cannot give a problem and a gold is dropped and counted in the
manifest, never guessed and never a crash. What a benchmark shares with a training source (hub or local file,
pinned revision, config overrides, reading rows, the manifest) is in `quagmire.data.spec`.

Hub revisions: the `revision` of every spec below is the placeholder `UNPINNED`. A benchmark must be pinned
to a dataset commit (40 hex digits) in the config before it is loaded from the hub, and loading refuses an
unpinned one: a moving `main` would change the test set under a finished study. The hub ids and field names
below follow the public copies; check them against the commit you pin.
"""

from __future__ import annotations

import ast
import math
import numbers
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from quagmire.answers import extract_boxed
from quagmire.data.spec import (
    ANSWER_BOXED,
    ANSWER_TEXT,
    UNPINNED,  # noqa: F401  (re-exported: the registry's placeholder revision)
    DataSpec,
    Record,
    is_missing,
    no_usable_rows,
    number_text,
    plain,
    registered,
    row_counts,
    spec_from_entry,
    write_with_manifest,
)
from quagmire.errors import QuagmireError

ID_WIDTH = 5  # digits a numeric id is zero-padded to, so ids sort in source order
SCHEMA = ("problem_id", "prompt", "answer", "source", "source_row")
SOLUTION_COLUMN = "gold_solution"

# How the gold answer is read from `answer_field`: ANSWER_TEXT and ANSWER_BOXED (`spec`), and two of its own.
ANSWER_HASHES = "hashes"  # the text after the last `####`, thousands commas removed (GSM8K)
ANSWER_LIST = "list"  # a list of answers, or its Python text form; joined with ", ", `$` delimiters removed
ANSWER_KINDS = (ANSWER_TEXT, ANSWER_BOXED, ANSWER_HASHES, ANSWER_LIST)

_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9]+")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_SEPARATOR = re.compile(r"\s*,?\s*")


@dataclass(frozen=True)
class BenchmarkSpec(DataSpec):
    """A benchmark: the common fields of `DataSpec` plus what a benchmark has of its own.

    `id_field` None numbers problems by row. `solution_field` is carried as `gold_solution`; `context_field`
    (OlympiadBench) is put before the problem. `keep_fields` are carried into the frame when the source has them
    (e.g. MATH-500's subject and level). `optional` benchmarks are not part of the headline average.
    """

    split: str = "test"
    problem_field: str = "problem"
    id_field: str | None = None
    solution_field: str | None = None
    context_field: str | None = None
    optional: bool = False

    what: ClassVar[str] = "benchmark"
    label: ClassVar[str] = "benchmark"
    answer_kinds: ClassVar[tuple[str, ...]] = ANSWER_KINDS
    columns: ClassVar[frozenset[str]] = frozenset({*SCHEMA, SOLUTION_COLUMN})


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "math500",
            hub_id="HuggingFaceH4/MATH-500",
            solution_field="solution",
            keep_fields=("subject", "level", "unique_id"),
        ),
        BenchmarkSpec(
            "aime24", hub_id="HuggingFaceH4/aime_2024", split="train", id_field="id", solution_field="solution"
        ),
        BenchmarkSpec("aime25", hub_id="yentinglin/aime_2025", split="train"),
        BenchmarkSpec(
            "aime",  # AIME 1983-2024: optional, overlaps aime24
            hub_id="di-zhang-fdu/AIME_1983_2024",
            split="train",
            problem_field="Question",
            answer_field="Answer",
            id_field="ID",
            keep_fields=("Year", "Problem Number"),
            optional=True,
        ),
        BenchmarkSpec("amc23", hub_id="math-ai/amc23", id_field="id", keep_fields=("url",)),
        BenchmarkSpec(
            "minerva_math",
            hub_id="math-ai/minervamath",
            answer_field="solution",
            answer_kind=ANSWER_BOXED,
            id_field="idx",
            solution_field="solution",
            keep_fields=("type",),
        ),
        BenchmarkSpec(
            "olympiadbench",
            hub_id="Hothan/OlympiadBench",
            config="OE_TO_maths_en_COMP",
            split="train",
            problem_field="question",
            answer_field="final_answer",
            answer_kind=ANSWER_LIST,
            id_field="id",
            solution_field="solution",
            context_field="context",
            keep_fields=("subfield", "answer_type", "unit", "is_multiple_answer"),
        ),
        BenchmarkSpec(
            "gsm8k",
            hub_id="openai/gsm8k",
            config="main",
            problem_field="question",
            answer_kind=ANSWER_HASHES,
            solution_field="answer",
        ),
    )
}


def get_benchmark(name: str, overrides: Mapping[str, Any] | None = None) -> BenchmarkSpec:
    """The registered spec for `name`, with config `overrides` (e.g. a pinned `revision`, a local `path`)."""
    return registered(BenchmarkSpec, BENCHMARKS, name, overrides)


def spec_from_config(name: str, settings: Mapping[str, Any]) -> BenchmarkSpec:
    """The spec of the study benchmark `name` from its `eval.benchmarks` entry.

    `registry` (default: `name`) picks a registered benchmark and the other keys override it, so a study may
    evaluate two copies of one benchmark (a pinned hub revision and a local file) under two names. A name that
    is not registered needs its own `hub_id` or `path` and field mapping.
    """
    values = dict(settings)
    base = values.pop("registry", name)
    if "registry" in settings and base not in BENCHMARKS:
        raise QuagmireError(
            f"eval.benchmarks.{name}.registry: unknown benchmark {base!r}; known: {', '.join(sorted(BENCHMARKS))}"
        )
    return spec_from_entry(
        BenchmarkSpec, BENCHMARKS, name, values, f"eval.benchmarks.{name}", base=base,
        how="`registry: <one of those>`, or ",
    )


# --------------------------------------------------------------------------- field normalization


def _scalar_text(value: Any) -> str | None:
    """A string or number as answer text (27.0 -> "27"); None for any other type or a non-finite number."""
    return value.strip() if isinstance(value, str) else number_text(value)


def _strip_dollars(text: str) -> str:
    """`$5$` -> `5`, `$69$,$84$` -> `69, 84`; text with `$` anywhere else is left as is."""
    parts = _UNESCAPED_DOLLAR.split(text.strip())
    if len(parts) < 3 or len(parts) % 2 == 0 or parts[0].strip() or parts[-1].strip():
        return text.strip()
    if not all(_SEPARATOR.fullmatch(sep) for sep in parts[2:-1:2]):
        return text.strip()
    return ", ".join(p.strip() for p in parts[1::2] if p.strip())


def _as_items(value: Any) -> list[Any] | None:
    """A list-valued answer as a Python list: a list, a tuple, a numpy array, or its text form "['$5$']"."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [text]
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    value = plain(value)
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _gold_answer(value: Any, kind: str) -> tuple[str | None, str]:
    """(answer, "") or (None, why it was dropped) for one row's answer field."""
    if is_missing(value):
        return None, "answer_missing"
    if kind == ANSWER_TEXT:
        text = _scalar_text(value)
    elif kind == ANSWER_LIST:
        items = _as_items(value)
        if items is None:
            return None, "answer_unparsable"
        texts = [_scalar_text(item) for item in items]
        if any(t is None for t in texts):
            return None, "answer_not_text"
        text = ", ".join(s for s in (_strip_dollars(t) for t in texts if t is not None) if s)
    else:
        if not isinstance(value, str):
            return None, "answer_not_text"
        if kind == ANSWER_BOXED:
            text = extract_boxed(value)
        else:
            text = value.rsplit("####", 1)[1].strip().replace(",", "") if "####" in value else None
        if text is None:
            return None, "answer_unparsable"
    if text is None:
        return None, "answer_not_text"
    return (text, "") if text else (None, "answer_empty")


def _problem_text(row: Mapping[str, Any], spec: BenchmarkSpec) -> tuple[str | None, str]:
    """(prompt, "") or (None, why); an OlympiadBench-style context is put before the question."""
    value = row.get(spec.problem_field)
    if is_missing(value):
        return None, "problem_missing"
    if not isinstance(value, str):
        return None, "problem_not_text"
    text = value.strip()
    if not text:
        return None, "problem_empty"
    context = row.get(spec.context_field) if spec.context_field else None
    if isinstance(context, str) and context.strip():
        text = f"{context.strip()}\n\n{text}"
    return text, ""


def _id_key(value: Any) -> str | None:
    """A source id as a problem_id suffix: numbers zero-padded, text reduced to letters, digits and `-`."""
    if is_missing(value) or isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        if not math.isfinite(float(value)) or not float(value).is_integer():
            return None
        value = int(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):0{ID_WIDTH}d}" if int(value) >= 0 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return f"{int(text):0{ID_WIDTH}d}"
        return _NOT_ID_CHARS.sub("-", text).strip("-") or None
    return None


def _solution_text(value: Any) -> str | None:
    """A worked solution as text: a string, or the first non-empty string of a list (OlympiadBench)."""
    items = plain(value)
    if isinstance(items, (list, tuple)):
        items = next((s for s in items if isinstance(s, str) and s.strip()), None)
    return items if isinstance(items, str) and items.strip() else None


# --------------------------------------------------------------------------- loading


def _check_columns(records: list[dict[str, Any]], spec: BenchmarkSpec, origin: str) -> None:
    """A field the spec names but no row has is a wrong mapping, not a malformed row: say so."""
    present = set().union(*(r.keys() for r in records)) if records else set()
    needed = [f for f in (spec.problem_field, spec.answer_field, spec.id_field) if f]
    missing = [f for f in needed if f not in present]
    if records and missing:
        raise QuagmireError(
            f"benchmark {spec.name}: {origin} has no field(s) {missing}; its fields are {sorted(present)} "
            f"(set problem_field / answer_field / id_field in the config)"
        )


def normalize_rows(records: list[Record], spec: BenchmarkSpec, source: str) -> tuple[pd.DataFrame, Counter]:
    """The normalized frame of `records` and the count of dropped rows by reason.

    A record that could not be read is its reason (`spec.Record`); it keeps its row number, so an unreadable
    line never shifts the ids of the problems after it.
    """
    _check_columns([row for row in records if isinstance(row, dict)], spec, source)
    dropped: Counter[str] = Counter()
    rows = []
    for index, row in enumerate(records):
        if isinstance(row, str):
            dropped[row] += 1
            continue
        prompt, why = _problem_text(row, spec)
        answer, why_answer = _gold_answer(row.get(spec.answer_field), spec.answer_kind)
        key = _id_key(row.get(spec.id_field)) if spec.id_field else f"{index:0{ID_WIDTH}d}"
        reason = why or why_answer or ("" if key else "id_missing")
        if reason:
            dropped[reason] += 1
            continue
        out = {"problem_id": f"{spec.name}-{key}", "prompt": prompt, "answer": answer}
        out.update(source=source, source_row=index)
        if spec.solution_field:
            out[SOLUTION_COLUMN] = _solution_text(row.get(spec.solution_field))
        for field in spec.keep_fields:
            out[field] = plain(row.get(field))
        rows.append(out)
    columns = [*SCHEMA, *([SOLUTION_COLUMN] if spec.solution_field else [])]
    frame = pd.DataFrame(rows, columns=columns + [f for f in spec.keep_fields if any(f in r for r in rows)])
    duplicated = frame["problem_id"][frame["problem_id"].duplicated()].unique().tolist()
    if duplicated:
        raise QuagmireError(
            f"benchmark {spec.name}: problem ids are not unique in {source} (e.g. {duplicated[:5]}); "
            f"set id_field to a unique column, or to null to number problems by row"
        )
    return frame, dropped


def load_benchmark(
    spec_or_name: BenchmarkSpec | str, path: str | os.PathLike[str] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The normalized frame of one benchmark and its manifest (source, row counts read / kept / dropped).

    `path` (or the spec's own `path`) reads a local JSONL/Parquet file; otherwise the pinned hub dataset.
    """
    spec = get_benchmark(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    local = spec.local_file(path)
    origin = spec.origin(local)
    records = list(spec.read_records(local))  # all at once: ids are checked for uniqueness across the file
    frame, dropped = normalize_rows(records, spec, origin)
    if frame.empty:
        raise no_usable_rows(spec, origin, dropped)
    manifest = {
        "benchmark": spec.name,
        "source": spec.origin_record(local),
        "fields": {
            "problem": spec.problem_field,
            "answer": spec.answer_field,
            "answer_kind": spec.answer_kind,
            "id": spec.id_field,
            "solution": spec.solution_field,
            "context": spec.context_field,
        },
        "rows": row_counts(len(frame), dropped),
    }
    return frame, manifest


write_benchmark = write_with_manifest  # the frame, with its manifest in the metadata and beside it


def benchmark_to_file(name: str, settings: Mapping[str, Any], out: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and normalize the benchmark `name` as its `eval.benchmarks` config entry says and write it with its
    manifest: the `quagmire benchmark` step of the DAG."""
    import logging

    spec = spec_from_config(name, settings)
    try:
        frame, manifest = load_benchmark(spec)
    except QuagmireError as error:  # name the config entry the user edits, as a bad setting does
        raise QuagmireError(f"eval.benchmarks.{name}: {error}") from error
    write_benchmark(frame, manifest, out)
    logging.getLogger(__name__).info("benchmark %s: %d problems (%s)", name, len(frame), manifest["rows"])
    return manifest
