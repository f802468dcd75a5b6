"""Training data sources: the paper's SFT sets and RL prompt sets, read from the hub or a local file, one schema.

Every source becomes the same frame, whatever its field names:
`problem_id, prompt, response, answer, source, source_row` (+ the spec's `keep_fields`).

- `response` is the assistant's worked answer for an SFT set; for an RL set it is the empty string
  `RL_RESPONSE` (not None), so the column stays a text column in Parquet and `prompt + response` is the
  prompt alone wherever a step keys on both (dedup).
- `answer` is the gold used by grading: the field itself, or the last `\\boxed{}` of a worked solution
  (SFT outputs, MATH solutions).
- `problem_id` is `<source name>-<source_row zero-padded to 8 digits>`: none of these sets carries a row id,
  and the row position within a pinned revision (or a file) is stable, unique, and sorts in source order.
- `source` names where the rows came from (`hub_id@revision`, or the local file's name), as in benchmarks.
- `source_row` is the 0-based position in the split or file, counting rows later dropped, so ids never shift.

Why one module owns this: the sets store the problem differently (a chat-message list for Llama-Nemotron, plain
text elsewhere) and the gold differently (a boxed answer inside a long response, or its own field). A row that
cannot give a prompt, a response (SFT) and a gold is dropped and counted by reason, never guessed and never a
crash; a source with nothing usable is an error naming those reasons. What a source shares with a benchmark
(hub or local file, pinned revision, config overrides, reading rows, the manifest) is in `quagmire.data.spec`.

Hub revisions: every spec below has the placeholder revision `UNPINNED`; the config must pin each dataset to
a commit (40 hex digits) before it is loaded from the hub, and loading refuses an unpinned one (a moving
`main` would change the training data under a finished study). Field names follow the public copies; a config
may override any of them.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from quagmire.answers import extract_boxed
from quagmire.data.spec import (
    ANSWER_BOXED,
    ANSWER_TEXT,
    DataSpec,
    Record,
    as_list,
    is_missing,
    no_usable_rows,
    number_text,
    registered,
    row_counts,
    spec_from_entry,
    write_with_manifest,
)
from quagmire.data.text import clean_text
from quagmire.errors import QuagmireError

SCHEMA = ("problem_id", "prompt", "response", "answer", "source", "source_row")
ROW_ID_WIDTH = 8  # digits of the row number in a problem_id: sorts in source order up to 100M rows
RL_RESPONSE = ""  # the response of every row of an RL prompt set

KIND_SFT = "sft"  # prompt + response + gold: supervised fine-tuning data
KIND_RL = "rl"  # prompt + gold: RL prompts (the policy writes the response)
KINDS = (KIND_SFT, KIND_RL)

PROMPT_TEXT = "text"  # the prompt field is the problem text
PROMPT_MESSAGES = "messages"  # a chat list [{"role": ..., "content": ...}]; the single user turn is the prompt
PROMPT_FORMATS = (PROMPT_TEXT, PROMPT_MESSAGES)
ANSWER_KINDS = (ANSWER_TEXT, ANSWER_BOXED)
_IGNORED_ROLES = frozenset({"system"})  # a system turn (e.g. "detailed thinking on") is not part of the problem


@dataclass(frozen=True)
class SourceSpec(DataSpec):
    """A training set: the common fields of `DataSpec` plus what a source has of its own.

    `kind` is SFT (prompt + response + gold) or RL (prompt + gold). `response_field` is required for an SFT set
    and ignored for an RL set. `prompt_format` "messages" reads the prompt from a chat list. `answer_kind`
    "boxed" reads the gold from the last `\\boxed{}` of `answer_field`. Rows whose `select_field` is not one of
    `select_values` are out of scope (e.g. AceReason's code rows) and counted as `<field>_not_selected`.
    `max_rows` reads only the first rows of the split (streamed from the hub), for sets far larger than a study
    needs.
    """

    kind: str = dataclasses.field(kw_only=True)  # required, and passed by name
    prompt_field: str = "problem"
    prompt_format: str = PROMPT_TEXT
    response_field: str | None = None
    select_field: str | None = None
    select_values: tuple[str, ...] = ()
    max_rows: int | None = None

    what: ClassVar[str] = "source"
    label: ClassVar[str] = "training source"
    answer_kinds: ClassVar[tuple[str, ...]] = ANSWER_KINDS
    columns: ClassVar[frozenset[str]] = frozenset(SCHEMA)

    def __post_init__(self) -> None:
        where = self.where
        if self.kind not in KINDS:
            raise QuagmireError(f"{where}: kind must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if self.prompt_format not in PROMPT_FORMATS:
            raise QuagmireError(
                f"{where}: prompt_format must be one of {', '.join(PROMPT_FORMATS)} (got {self.prompt_format!r})"
            )
        super().__post_init__()  # answer_kind, hub or path, keep_fields
        if self.kind == KIND_SFT and not self.response_field:
            raise QuagmireError(f"{where}: an SFT source needs response_field (the assistant's response)")
        if self.select_field and not self.select_values:
            raise QuagmireError(f"{where}: select_field {self.select_field!r} needs at least one select_values entry")
        if self.max_rows is not None and (
            isinstance(self.max_rows, bool) or not isinstance(self.max_rows, int) or self.max_rows < 1
        ):
            raise QuagmireError(f"{where}: max_rows must be a positive integer or null (got {self.max_rows!r})")


SOURCES: dict[str, SourceSpec] = {
    spec.name: spec
    for spec in (
        SourceSpec(  # Llama3-8B's SFT data: the math split of the SFT config (about 20M rows; set max_rows)
            "nemotron_math",
            kind=KIND_SFT,
            hub_id="nvidia/Llama-Nemotron-Post-Training-Dataset",
            config="SFT",
            split="math",
            prompt_field="input",
            prompt_format=PROMPT_MESSAGES,
            response_field="output",
            answer_field="output",
            answer_kind=ANSWER_BOXED,
            keep_fields=("reasoning", "generator"),
        ),
        SourceSpec(  # Mistral-NeMo-12B's SFT data: the math rows of AceReason-1.1-SFT
            "acereason_sft_math",
            kind=KIND_SFT,
            hub_id="nvidia/AceReason-1.1-SFT",
            prompt_field="input",
            response_field="output",
            answer_field="output",
            answer_kind=ANSWER_BOXED,
            select_field="category",
            select_values=("math",),
        ),
        SourceSpec(  # RL prompts: MATH train (7 subjects in one config); gold from the worked solution
            "math_train",
            kind=KIND_RL,
            hub_id="DigitalLearningGmbH/MATH-lighteval",
            prompt_field="problem",
            answer_field="solution",
            answer_kind=ANSWER_BOXED,
            keep_fields=("level", "type"),
        ),
        SourceSpec(  # RL prompts: DeepScaleR-Preview (AIME/AMC/Omni-MATH/STILL problems with short answers)
            "deepscaler",
            kind=KIND_RL,
            hub_id="agentica-org/DeepScaleR-Preview-Dataset",
            prompt_field="problem",
            answer_field="answer",
            answer_kind=ANSWER_TEXT,
        ),
    )
}


def get_source(name: str, overrides: Mapping[str, Any] | None = None) -> SourceSpec:
    """The registered spec for `name`, with config `overrides` (a pinned `revision`, a local `path`, field names)."""
    return registered(SourceSpec, SOURCES, name, overrides)


def source_from_config(settings: Mapping[str, Any], kind: str, where: str) -> SourceSpec:
    """The spec of one `data.sft` / `data.rl` entry: a registered `name` with overrides, or a source of its own.

    `where` names the entry in errors (e.g. "data.rl[1]"). A registered source must be of the kind its place in
    the config asks for: an RL prompt set listed as SFT data would train on empty responses.
    """
    values = dict(settings)
    name = values.pop("name", None)
    if not name:
        raise QuagmireError(f"{where}: needs a name (one of {', '.join(sorted(SOURCES))}, or your own)")
    spec = spec_from_entry(SourceSpec, SOURCES, name, values, where, kind=kind)
    if spec.kind != kind:
        raise QuagmireError(f"{where}: source {name!r} is {spec.kind} data, listed here as {kind} data")
    return spec


# --------------------------------------------------------------------------- field normalization


def _user_turn(value: Any) -> tuple[Any, str]:
    """(content of the single user message, "") or (None, why) for a chat-message list.

    System turns are skipped; anything else (an assistant turn, two user turns, a malformed message) makes the
    row not a single-turn problem, which the study cannot use as a prompt.
    """
    if is_missing(value):
        return None, "missing"
    messages = as_list(value)
    if messages is None:
        return None, "not_messages"
    contents = []
    for message in messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            return None, "not_messages"
        if message["role"] in _IGNORED_ROLES:
            continue
        if message["role"] != "user":
            return None, "not_single_turn"
        contents.append(message.get("content"))
    if len(contents) != 1:
        return None, "not_single_turn"
    return contents[0], ""


def _prompt(row: Mapping[str, Any], spec: SourceSpec) -> tuple[str | None, str]:
    """(prompt, "") or (None, "prompt_<why>")."""
    value = row.get(spec.prompt_field)
    if spec.prompt_format == PROMPT_MESSAGES:
        value, why = _user_turn(value)
        if why:
            return None, f"prompt_{why}"
    text, why = clean_text(value)
    return (text, "") if text is not None else (None, f"prompt_{why}")


def _response(row: Mapping[str, Any], spec: SourceSpec) -> tuple[str | None, str]:
    """(response, "") or (None, "response_<why>"); an RL set's response is always `RL_RESPONSE`."""
    if spec.kind == KIND_RL:
        return RL_RESPONSE, ""
    text, why = clean_text(row.get(spec.response_field))  # type: ignore[arg-type]  # set for SFT by __post_init__
    return (text, "") if text is not None else (None, f"response_{why}")


def _answer(row: Mapping[str, Any], spec: SourceSpec) -> tuple[str | None, str]:
    """(gold answer, "") or (None, "answer_<why>"): the field as text, or the last boxed answer in it."""
    value = row.get(spec.answer_field)
    if spec.answer_kind == ANSWER_TEXT and not isinstance(value, (str, bytes)) and not is_missing(value):
        number = number_text(value)
        return (number, "") if number is not None else (None, "answer_not_text")
    text, why = clean_text(value)
    if text is None:
        return None, f"answer_{why}"
    if spec.answer_kind == ANSWER_BOXED:
        boxed = extract_boxed(text)
        if boxed is None:
            return None, "answer_no_boxed"
        if not boxed:
            return None, "answer_empty"
        return boxed, ""
    return text, ""


def _selected(row: Mapping[str, Any], spec: SourceSpec) -> str:
    """The empty string if the row is in scope, else the reason "<select_field>_not_selected"."""
    if not spec.select_field:
        return ""
    value = row.get(spec.select_field)
    return "" if isinstance(value, str) and value.strip() in spec.select_values else f"{spec.select_field}_not_selected"


def _kept_value(value: Any) -> Any:
    """A carried-along field as a Parquet-safe scalar: text, number or bool; anything else becomes None."""
    if isinstance(value, str):
        return clean_text(value)[0] if value else value
    if isinstance(value, (bool, numbers.Real)) and not is_missing(value):
        return value
    return None


def _row_texts(record: Mapping[str, Any], spec: SourceSpec) -> tuple[dict[str, str], str]:
    """({prompt, response, answer}, "") or ({}, the first reason the row cannot be used)."""
    reason = _selected(record, spec)
    if reason:
        return {}, reason
    texts = {}
    for column, read in (("prompt", _prompt), ("response", _response), ("answer", _answer)):
        text, reason = read(record, spec)
        if text is None:
            return {}, reason
        texts[column] = text
    return texts, ""


def normalize_records(records: Iterable[Record], spec: SourceSpec, origin: str) -> tuple[pd.DataFrame, Counter]:
    """The normalized frame of `records` (one per source row, or a read-failure reason) and drops by reason.

    The one normalization both the hub path and the local path go through.
    """
    dropped: Counter[str] = Counter()
    fields_seen: set[str] = set()
    rows = []
    for index, record in enumerate(records):
        if isinstance(record, str):
            dropped[record] += 1
            continue
        fields_seen.update(record)
        texts, reason = _row_texts(record, spec)
        if reason:
            dropped[reason] += 1
            continue
        out = {"problem_id": f"{spec.name}-{index:0{ROW_ID_WIDTH}d}", **texts, "source": origin, "source_row": index}
        for field in spec.keep_fields:
            out[field] = _kept_value(record.get(field))
        rows.append(out)
    frame = pd.DataFrame(rows, columns=[*SCHEMA, *spec.keep_fields])
    if frame.empty:
        needed = [f for f in (spec.prompt_field, spec.response_field, spec.answer_field, spec.select_field) if f]
        absent = sorted({f for f in needed if f not in fields_seen}) if fields_seen else []
        hint = ""
        if absent:
            hint = f"; field(s) {absent} appear in no row (fields seen: {sorted(fields_seen)}): set them in the config"
        raise no_usable_rows(spec, origin, dropped, hint)
    frame["source_row"] = frame["source_row"].astype("int64")
    return frame, dropped


# --------------------------------------------------------------------------- loading and writing


def load_source(
    spec_or_name: SourceSpec | str, path: str | os.PathLike[str] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The normalized frame of one training source and its manifest (origin, fields, rows read/kept/dropped).

    `path` (or the spec's own `path`) reads a local JSONL/Parquet file; otherwise the pinned hub split.
    """
    spec = get_source(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    local = spec.local_file(path)
    origin = spec.origin(local)
    frame, dropped = normalize_records(spec.read_records(local, spec.max_rows), spec, origin)
    manifest = {
        "name": spec.name,
        "kind": spec.kind,
        "source": spec.origin_record(local),
        "fields": {
            "prompt": spec.prompt_field,
            "prompt_format": spec.prompt_format,
            "response": spec.response_field if spec.kind == KIND_SFT else None,
            "answer": spec.answer_field,
            "answer_kind": spec.answer_kind,
            "select": {spec.select_field: list(spec.select_values)} if spec.select_field else None,
            "keep": list(spec.keep_fields),
        },
        "max_rows": spec.max_rows,
        "rows": row_counts(len(frame), dropped),
    }
    return frame, manifest


write_source = write_with_manifest  # the frame, with its manifest in the metadata and beside it


def source_to_file(kind: str, settings: Mapping[str, Any], where: str, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the training source named by its `data.sft` / `data.rl` config entry (`where` names that entry in error
    messages) and write it in the shared schema with its manifest: the `quagmire source` step of the DAG."""
    import logging

    spec = source_from_config(settings, kind, where)
    try:
        frame, manifest = load_source(spec)
    except QuagmireError as error:  # name the config entry the user edits, as a bad setting does
        raise QuagmireError(f"{where}: {error}") from error
    write_source(frame, manifest, out)
    logging.getLogger(__name__).info("source %s: %s", spec.name, manifest["rows"])
    return manifest
