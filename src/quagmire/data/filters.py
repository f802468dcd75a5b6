"""Audited filters over a normalized training frame (see `quagmire.data.sources`), and the held-out split.

Why every step is audited: a filtered set is only trustworthy if a reader can see, row by row, what was removed
and why (a benchmark problem left in SFT data inflates exactly the scores the study compares; a filter that
silently drops half the data changes the study). Each step therefore writes one audit row per row it sees:
`problem_id, source_row, step, kept, reason, detail`, and the summary counts rows in, kept and dropped by reason.

The steps, in order (each one sees only the rows the previous one kept):
1. `dedup`: identical prompt+response (an RL set has the empty response, so: identical prompt) -> reason
   `duplicate_exact`; then the same under `dedup_key` normalization -> `duplicate_normalized`. The first
   occurrence is kept; `detail` names the problem_id it duplicates.
2. `gold_parses`: math-verify must parse the gold answer (as grading reads it: boxed). Parsing runs in
   `quagmire.verify_pool.GradingPool` workers with a hard timeout, so a gold that makes sympy hang costs seconds,
   not the run. Reasons `gold_missing`, `gold_unparseable`, `gold_timeout`.
3. `decontaminate`: the prompt against every evaluation benchmark's prompts. Reason `contaminated:<benchmark>`,
   `detail` the benchmark problem_id and how it matched. Rule (see `NgramIndex`): the same `dedup_key`, or at
   least `threshold` of the benchmark problem's distinct word `n`-grams appear in the training prompt.
4. `length`: response length in tokens of the study's tokenizer within [min_tokens, max_tokens]; reasons
   `too_short`, `too_long`. An RL set has no response, so the step is skipped for it.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quagmire.config import section_schema, settings_for
from quagmire.data.sources import KIND_RL, KIND_SFT, KINDS, SCHEMA
from quagmire.data.text import canonical, clean_text, dedup_key, grams, key_of_canonical, words_of_canonical
from quagmire.errors import QuagmireError
from quagmire.io import write_json, write_parquet
from quagmire.provenance import code_version, file_record, package_versions
from quagmire.verify_pool import GOLD_INVALID, GOLD_TIMEOUT, TIMEOUT, GradingPool

STEPS = ("dedup", "gold_parses", "decontaminate", "length")
AUDIT_COLUMNS = ("problem_id", "source_row", "step", "kept", "reason", "detail")
TOKENIZE_BATCH = 1024  # responses per tokenizer call: bounds the memory of the id lists

Drop = tuple[str, str | None]  # (reason, detail) for one dropped row; None in a step's list keeps the row

# --------------------------------------------------------------------------- settings


FILTERS_SECTION = "data.filters"  # the config section these settings are; its schema holds every default


def resolve_filters(settings: Mapping[str, Any] | None, where: str = "filter settings") -> dict[str, Any]:
    """The `data.filters` section as the steps use it: `settings` checked and filled by the config schema (the one
    place the defaults and rules live), in the schema's key order; `decontaminate` null becomes false (off).

    Files record these settings as key-sorted JSON, so the order only makes logs and reprs read like the schema.
    """
    resolved = settings_for(FILTERS_SECTION, settings, where)
    order = list(section_schema(FILTERS_SECTION)["properties"])
    resolved = {key: resolved[key] for key in order if key in resolved}
    if resolved["decontaminate"] is None:
        resolved["decontaminate"] = False
    return resolved


# --------------------------------------------------------------------------- step 1: dedup


def _digest(*texts: str) -> bytes:
    """A 128-bit digest of texts joined by NUL (which no kept text contains, see `clean_text`)."""
    return hashlib.blake2b("\x00".join(texts).encode("utf-8"), digest_size=16).digest()


def duplicate_drops(frame: pd.DataFrame, kind: str) -> list[Drop | None]:
    """Per row: None for the first occurrence, else (`duplicate_exact` | `duplicate_normalized`, first's id)."""
    responses = frame["response"] if kind == KIND_SFT else [""] * len(frame)
    first_exact: dict[tuple[str, str], str] = {}
    first_normalized: dict[bytes, str] = {}
    drops: list[Drop | None] = []
    for pid, prompt, response in zip(frame["problem_id"], frame["prompt"], responses, strict=True):
        exact = (prompt, response)  # references to the frame's own strings: no copy
        normalized = _digest(dedup_key(prompt), dedup_key(response))  # a digest, not a second copy of the text
        if exact in first_exact:
            drops.append(("duplicate_exact", first_exact[exact]))
        elif normalized in first_normalized:
            drops.append(("duplicate_normalized", first_normalized[normalized]))
        else:
            first_exact[exact] = first_normalized[normalized] = pid
            drops.append(None)
    return drops


# --------------------------------------------------------------------------- step 2: gold parses


def gold_drops(answers: Sequence[Any], pool: GradingPool) -> list[Drop | None]:
    """Per gold: None if math-verify parses it, else `gold_missing` / `gold_unparseable` / `gold_timeout`.

    The pool grades (gold, empty completion): the gold is parsed exactly as grading will parse it, and an empty
    completion short-circuits before `verify`. Each distinct gold is parsed once.
    """
    texts = [clean_text(answer)[0] for answer in answers]
    present = [i for i, text in enumerate(texts) if text is not None]
    verdicts = pool.grade([(texts[i], "") for i in present]) if present else []
    # The pool checks golds first: a gold that runs out of time is `gold_invalid` with reason `gold_timeout`.
    status = {
        i: TIMEOUT if verdict.reason == GOLD_TIMEOUT else verdict.status
        for i, verdict in zip(present, verdicts, strict=True)
    }
    drops: list[Drop | None] = []
    for i in range(len(texts)):
        if i not in status:
            drops.append(("gold_missing", None))
        elif status[i] == GOLD_INVALID:
            drops.append(("gold_unparseable", None))
        elif status[i] == TIMEOUT:
            drops.append(("gold_timeout", f"no parse within {pool.timeout_s:g} s"))
        else:
            drops.append(None)
    return drops


# --------------------------------------------------------------------------- step 3: decontamination


@dataclass(frozen=True)
class BenchmarkMatch:
    """The benchmark problem a training prompt matched, and how (`overlap` 1.0 for identical normalized text)."""

    benchmark: str
    problem_id: str
    overlap: float
    gram_size: int | None  # None for an identical-text match

    def describe(self) -> str:
        """The audit detail: which problem, and the evidence."""
        if self.gram_size is None:
            return f"{self.problem_id} (same normalized prompt)"
        return f"{self.problem_id} ({self.gram_size}-gram overlap {self.overlap:.2f})"


class NgramIndex:
    """Every benchmark prompt's word n-grams in one hash table, so checking a training prompt costs one lookup
    per n-gram of that prompt, whatever the number of benchmark problems (no pairwise comparison).

    A benchmark prompt with at least `n` words contributes its distinct n-grams, and matches a training prompt
    holding at least `threshold` of them. One with `min_words` to n-1 words is one n-gram of its own length: it
    matches only if it appears whole (found through its first `min_words` words, so a training prompt is scanned
    at two gram sizes, not one per short length). A shorter one (e.g. "Compute $5!$.") is matched only by an
    identical `dedup_key`, since a few common words prove nothing.
    """

    def __init__(self, benchmarks: Mapping[str, pd.DataFrame], n: int, min_words: int) -> None:
        self.n = n
        self.min_words = min_words
        self.labels: list[tuple[str, str]] = []  # (benchmark, problem_id) per indexed problem
        self.sizes: list[int] = []  # n-gram length used for each problem (0: identical text only)
        self.totals: list[int] = []  # distinct n-grams of each problem
        self.exact: dict[str, int] = {}  # dedup_key -> first problem with it
        self.grams: dict[tuple[str, ...], list[int]] = {}  # n-gram -> problems (of >= n words) holding it
        self.anchors: dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]] = {}  # short problems by first words
        self.skipped: Counter[str] = Counter()  # benchmark rows with no usable prompt, by benchmark
        for name in sorted(benchmarks):
            self._add_benchmark(name, benchmarks[name])

    def _add_benchmark(self, name: str, frame: pd.DataFrame) -> None:
        missing = [c for c in ("problem_id", "prompt") if c not in frame.columns]
        if missing:
            raise QuagmireError(f"benchmark {name}: table lacks column(s) {missing} needed for decontamination")
        for pid, prompt in zip(frame["problem_id"], frame["prompt"], strict=True):
            text = clean_text(prompt)[0]
            if text is None:
                self.skipped[name] += 1
                continue
            index = len(self.labels)
            self.labels.append((name, str(pid)))
            canon = canonical(text)
            self.exact.setdefault(key_of_canonical(canon), index)
            words = tuple(words_of_canonical(canon))
            if len(words) >= self.n:
                distinct = set(grams(words, self.n))
                for gram in distinct:
                    self.grams.setdefault(gram, []).append(index)
                self.sizes.append(self.n)
                self.totals.append(len(distinct))
            elif len(words) >= self.min_words:
                self.anchors.setdefault(words[: self.min_words], []).append((index, words))
                self.sizes.append(len(words))
                self.totals.append(1)
            else:
                self.sizes.append(0)
                self.totals.append(0)

    def __len__(self) -> int:
        return len(self.labels)

    def problems_of(self, benchmark: str) -> int:
        """How many problems of `benchmark` are indexed."""
        return sum(1 for name, _ in self.labels if name == benchmark)

    def _hits(self, words: list[str]) -> Counter[int]:
        """Distinct matched n-grams per indexed problem (a short problem: 1 when it appears whole)."""
        hits: Counter[int] = Counter()
        if self.grams and len(words) >= self.n:
            for gram in set(grams(words, self.n)):
                for index in self.grams.get(gram, ()):
                    hits[index] += 1
        if self.anchors:
            for start, gram in enumerate(grams(words, self.min_words)):
                for index, whole in self.anchors.get(gram, ()):
                    if index not in hits and tuple(words[start : start + len(whole)]) == whole:
                        hits[index] = 1
        return hits

    def match(self, prompt: str, threshold: float) -> BenchmarkMatch | None:
        """The benchmark problem `prompt` contains (identical normalized text first, else the largest n-gram
        overlap at or above `threshold`; ties to the first indexed), or None."""
        canon = canonical(prompt)
        exact = self.exact.get(key_of_canonical(canon))
        if exact is not None:
            return BenchmarkMatch(*self.labels[exact], overlap=1.0, gram_size=None)
        best: tuple[float, int] | None = None
        for index, count in self._hits(words_of_canonical(canon)).items():
            overlap = count / self.totals[index]
            if overlap >= threshold and (best is None or (overlap, -index) > (best[0], -best[1])):
                best = (overlap, index)
        if best is None:
            return None
        return BenchmarkMatch(*self.labels[best[1]], overlap=best[0], gram_size=self.sizes[best[1]])


def contamination_drops(prompts: Sequence[str], index: NgramIndex, threshold: float) -> list[Drop | None]:
    """Per prompt: None, or (`contaminated:<benchmark>`, the matched problem and evidence)."""
    drops: list[Drop | None] = []
    for prompt in prompts:
        found = index.match(prompt, threshold)
        drops.append(None if found is None else (f"contaminated:{found.benchmark}", found.describe()))
    return drops


# --------------------------------------------------------------------------- step 4: length


def token_counts(texts: Sequence[str], tokenizer: Any, batch_size: int = TOKENIZE_BATCH) -> np.ndarray:
    """Tokens per text under `tokenizer` (no special tokens), encoded in batches to bound memory."""
    counts = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        ids = tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]  # no "longer than max" notice
        counts[start : start + len(batch)] = [len(x) for x in ids]
    return counts


def length_drops(counts: Sequence[int], min_tokens: int | None, max_tokens: int | None) -> list[Drop | None]:
    """Per response: None within the bounds, else (`too_short` | `too_long`, its token count)."""
    drops: list[Drop | None] = []
    for count in counts:
        if min_tokens is not None and count < min_tokens:
            drops.append(("too_short", f"{int(count)} tokens < {min_tokens}"))
        elif max_tokens is not None and count > max_tokens:
            drops.append(("too_long", f"{int(count)} tokens > {max_tokens}"))
        else:
            drops.append(None)
    return drops


# --------------------------------------------------------------------------- running the steps


def _audit_step(step: str, frame: pd.DataFrame, drops: Sequence[Drop | None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows kept, audit rows) for one step's verdicts over `frame`."""
    kept = np.array([d is None for d in drops], dtype=bool)
    audit = pd.DataFrame(
        {
            "problem_id": frame["problem_id"].to_numpy(),
            "source_row": frame["source_row"].to_numpy(),
            "step": step,
            "kept": kept,
            "reason": pd.Series([None if d is None else d[0] for d in drops], dtype=object),
            "detail": pd.Series([None if d is None else d[1] for d in drops], dtype=object),
        },
        columns=list(AUDIT_COLUMNS),
    )
    return frame[kept].reset_index(drop=True), audit


def _step_counts(step: str, audit: pd.DataFrame) -> dict[str, Any]:
    """In, kept and dropped-by-reason counts of one step's audit."""
    reasons = Counter(audit.loc[~audit["kept"], "reason"])
    return {"step": step, "in": len(audit), "kept": int(audit["kept"].sum()), "dropped": dict(sorted(reasons.items()))}


def _check_frame(frame: pd.DataFrame, kind: str) -> None:
    """Fail on a frame that is not a normalized source frame."""
    if kind not in KINDS:
        raise QuagmireError(f"filters: kind must be one of {', '.join(KINDS)} (got {kind!r})")
    missing = [c for c in SCHEMA if c not in frame.columns]
    if missing:
        raise QuagmireError(f"filters: input table lacks column(s) {missing} (write it with quagmire.data.sources)")
    duplicated = frame["problem_id"][frame["problem_id"].duplicated()]
    if len(duplicated):
        raise QuagmireError(f"filters: problem_id {duplicated.iloc[0]!r} appears more than once in the input")


def _plan(
    settings: Mapping[str, Any], benchmarks: Mapping[str, pd.DataFrame], tokenizer: Any, kind: str
) -> tuple[list[str], dict[str, str]]:
    """The steps to run, and why each other step is skipped."""
    skipped = {}
    if not settings["dedup"]:
        skipped["dedup"] = "disabled in settings"
    if not settings["gold_parses"]:
        skipped["gold_parses"] = "disabled in settings"
    if not settings["decontaminate"]:
        skipped["decontaminate"] = "disabled in settings"
    elif not benchmarks:
        raise QuagmireError(
            "filters: decontamination is on but no benchmark tables were given; pass every evaluation "
            "benchmark, or set filters.decontaminate to false"
        )
    if kind == KIND_RL:
        skipped["length"] = "an RL set has no response"
    elif settings["min_tokens"] is None and settings["max_tokens"] is None:
        skipped["length"] = "no token bounds in settings"
    elif tokenizer is None:
        raise QuagmireError("filters: the length step needs the study's tokenizer (or null min/max_tokens)")
    return [step for step in STEPS if step not in skipped], skipped


def _step_drops(
    step: str,
    frame: pd.DataFrame,
    settings: Mapping[str, Any],
    kind: str,
    *,
    index: NgramIndex | None,
    tokenizer: Any,
    pool: GradingPool | None,
) -> list[Drop | None]:
    """One step's verdict per row of `frame`."""
    if step == "dedup":
        return duplicate_drops(frame, kind)
    if step == "gold_parses":
        if frame.empty:
            return []
        if pool is not None:
            return gold_drops(list(frame["answer"]), pool)
        with GradingPool(workers=settings["gold_workers"], timeout_s=settings["gold_timeout_s"]) as own_pool:
            return gold_drops(list(frame["answer"]), own_pool)
    if step == "decontaminate":
        assert index is not None, "the index is built whenever the step is planned"
        return contamination_drops(list(frame["prompt"]), index, settings["decontaminate"]["threshold"])
    counts = token_counts(list(frame["response"]), tokenizer)
    return length_drops(counts, settings["min_tokens"], settings["max_tokens"])


def run_filters(
    frame: pd.DataFrame,
    steps_settings: Mapping[str, Any] | None,
    benchmarks: Mapping[str, pd.DataFrame],
    tokenizer: Any,
    *,
    kind: str = KIND_SFT,
    pool: GradingPool | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(clean frame, audit frame, summary) after the enabled steps, in the order of `STEPS`.

    `benchmarks` maps a benchmark name to its table (`problem_id`, `prompt`). `kind` is the source's kind
    (`quagmire.data.sources.SourceSpec.kind`). An open grading `pool` may be passed; otherwise one with
    `gold_workers` / `gold_timeout_s` is started for the gold step and closed after it.
    """
    settings = resolve_filters(steps_settings)
    _check_frame(frame, kind)
    steps, skipped = _plan(settings, benchmarks, tokenizer, kind)
    index = None
    if "decontaminate" in steps:
        index = NgramIndex(
            benchmarks, n=settings["decontaminate"]["n"], min_words=settings["decontaminate"]["min_words"]
        )
    current = frame.reset_index(drop=True)
    audits: list[pd.DataFrame] = []
    counts: list[dict[str, Any]] = []
    for step in steps:
        drops = _step_drops(step, current, settings, kind, index=index, tokenizer=tokenizer, pool=pool)
        current, audit = _audit_step(step, current, drops)
        audits.append(audit)
        counts.append(_step_counts(step, audit))
        if current.empty:
            detail = "; ".join(f"{c['step']}: {c['in']} in, dropped {c['dropped']}" for c in counts)
            raise QuagmireError(f"filters: no rows left after step {step} ({detail}); check the input and settings")
    audit_frame = pd.concat(audits, ignore_index=True) if audits else pd.DataFrame(columns=list(AUDIT_COLUMNS))
    summary = {
        "kind": kind,
        "settings": settings,
        "rows_in": len(frame),
        "rows_out": len(current),
        "steps": counts,
        "skipped": skipped,
        "benchmarks": {name: index.problems_of(name) for name in sorted(benchmarks)} if index is not None else {},
    }
    return current, audit_frame, summary


def write_filtered(
    out_parquet: str | os.PathLike[str],
    audit_parquet: str | os.PathLike[str],
    manifest_json: str | os.PathLike[str],
    clean: pd.DataFrame,
    audit: pd.DataFrame,
    summary: Mapping[str, Any],
    *,
    inputs: Sequence[str | os.PathLike[str]] = (),
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the clean frame, the audit and a manifest (each atomically); return the manifest.

    The manifest holds the source record (name, origin with its revision or file sha256, as `load_source`
    wrote it), path/size/sha256 of every input (raw source, benchmark tables) and output, the resolved
    settings, counts per step, and the package versions that shape the result (math-verify parses the golds).
    """
    write_parquet(out_parquet, clean, metadata={"source": dict(source or {}), "filters": dict(summary)})
    write_parquet(audit_parquet, audit)
    manifest = {
        "source": dict(source) if source is not None else None,
        "inputs": [file_record(path) for path in inputs],
        "outputs": {"clean": file_record(out_parquet), "audit": file_record(audit_parquet)},
        **dict(summary),
        "packages": package_versions(),
        "code": code_version(),
    }
    write_json(manifest_json, manifest)
    return manifest


# --------------------------------------------------------------------------- file-level steps (the CLI's)


def filter_files(
    raw: Sequence[str | os.PathLike[str]],
    benchmarks: Mapping[str, str | os.PathLike[str]],
    tokenizer_dir: str | os.PathLike[str],
    settings: Mapping[str, Any] | None,
    out_parquet: str | os.PathLike[str],
    audit_parquet: str | os.PathLike[str],
    manifest_json: str | os.PathLike[str],
) -> dict[str, Any]:
    """Filter one or more raw source files (as `write_source` wrote them) of one kind into a clean file.

    Several RL prompt sets are concatenated first, so dedup and decontamination see all of them at once.
    """
    from quagmire.hf import load_tokenizer
    from quagmire.io import read_parquet_metadata

    if not raw:
        raise QuagmireError("filter: no raw source file given")
    metas = [read_parquet_metadata(path) for path in raw]
    kinds = {meta.get("kind") for meta in metas}
    if len(kinds) != 1 or not kinds <= set(KINDS):
        raise QuagmireError(
            f"filter: the raw files must be of one kind ({', '.join(KINDS)}); got {sorted(map(str, kinds))}"
        )
    frame = pd.concat([pd.read_parquet(path) for path in raw], ignore_index=True)
    tables = {name: pd.read_parquet(path, columns=["problem_id", "prompt"]) for name, path in benchmarks.items()}
    clean, audit, summary = run_filters(frame, settings, tables, load_tokenizer(tokenizer_dir), kind=kinds.pop())
    source = metas[0] if len(metas) == 1 else {"sources": metas}
    return write_filtered(
        out_parquet, audit_parquet, manifest_json, clean, audit, summary,
        inputs=[*raw, *benchmarks.values()], source=source,
    )


def filter_to_file(
    raw: Sequence[str | os.PathLike[str]],
    benchmarks: Mapping[str, str | os.PathLike[str]],
    tokenizer: str | os.PathLike[str],
    settings: Mapping[str, Any],
    workers: int | None,
    out: str | os.PathLike[str],
    audit: str | os.PathLike[str],
    manifest: str | os.PathLike[str],
) -> dict[str, Any]:
    """`filter_files` with the job's thread count as the gold check's workers: the `quagmire filter` step of the DAG.

    `workers` (when given) overrides `settings["gold_workers"]`: it is operational, how fast the check runs, and
    the rule passes the job's threads, which Snakemake may scale down to the cores it has.
    """
    import logging

    settings = dict(settings)
    if workers is not None:
        settings["gold_workers"] = workers
    written = filter_files(raw, benchmarks, tokenizer, settings, out, audit, manifest)
    for step in written["steps"]:
        logging.getLogger(__name__).info("filter %s", step)
    return written
