"""Joining sample shards: each (model, benchmark)'s `samples.parquet` from the shard files sampling wrote.

Why a module of its own: the join runs in the grading job (`quagmire grade --shards`, rule `grade`), whose
environment has no torch, so it must not import the sampling backends. A shard is either one benchmark's
(`quagmire sample`, rule `sample_shard`) or one model's over every benchmark (`quagmire sample-model`, rule
`sample_model_shard`, a `benchmark` column and each benchmark's own sampling metadata under `MODEL_SHARD_KEY`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.io import read_parquet_metadata, write_parquet
from quagmire.provenance import MANIFEST_KEY, step_manifest

log = logging.getLogger(__name__)

MODEL_SHARD_KEY = "per_benchmark"  # a per-model shard's metadata: each benchmark's own sampling metadata


def _benchmark_part(path: Path, meta: dict[str, Any], benchmark: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One shard file's samples and metadata for `benchmark`: the whole file when it is a per-benchmark shard,
    that benchmark's rows and metadata when it is a per-model one (`sample_model_to_file`). The benchmark is
    matched as a file: a relative path recorded by the sampling job matches the absolute one of the same file."""
    if MODEL_SHARD_KEY not in meta:
        return pd.read_parquet(path), meta
    parts = meta[MODEL_SHARD_KEY]
    names = [name for name, part in parts.items() if Path(part["benchmark"]).resolve() == benchmark.resolve()]
    if not names:
        raise QuagmireError(f"gather: shard {path} holds no samples of {benchmark} (it has: {', '.join(parts)})")
    frame = pd.read_parquet(path)
    rows = frame[frame["benchmark"] == names[0]].drop(columns="benchmark").reset_index(drop=True)
    return rows, {**parts[names[0]], MANIFEST_KEY: meta.get(MANIFEST_KEY)}


def gather_samples(shard_files: Sequence[Path], benchmark: Path, out: Path) -> dict[str, Any]:
    """Concatenate the shards of one (model, benchmark) into its `samples.parquet`, after checking they fit.

    The shards must come from the same model, benchmark and sampling settings, be exactly shards 0..k-1 of k,
    and together hold n samples of every problem of the benchmark: a gathered file is a whole evaluation or an
    error, never a silent subset.
    """
    if not shard_files:
        raise QuagmireError("gather: no shard files given")
    parts = [_benchmark_part(Path(f), read_parquet_metadata(f), Path(benchmark)) for f in shard_files]
    metas = [meta for _, meta in parts]
    first = metas[0]
    for path, meta in zip(shard_files, metas, strict=True):
        for key in ("model", "sampling", "prompt", "backend"):
            if meta.get(key) != first.get(key):
                raise QuagmireError(f"gather: shard {path} differs from {shard_files[0]} in {key!r}")
    order = sorted(range(len(metas)), key=lambda i: metas[i]["shard"]["index"])
    indices = [metas[i]["shard"]["index"] for i in order]
    of = {m["shard"]["of"] for m in metas}
    if of != {len(shard_files)} or indices != list(range(len(shard_files))):
        raise QuagmireError(f"gather: expected shards 0..{len(shard_files) - 1} of {len(shard_files)}, got "
                            f"indices {indices} of {sorted(of)}")
    samples = pd.concat([parts[i][0] for i in order], ignore_index=True)
    problems = pd.read_parquet(benchmark, columns=["problem_id"])
    n = first["sampling"]["n"]
    counts = samples.groupby("problem_id").size()
    wrong = counts[counts != n]
    missing = set(problems["problem_id"]) - set(counts.index)
    extra = set(counts.index) - set(problems["problem_id"])
    if missing or extra or len(wrong):
        raise QuagmireError(
            f"gather: shards do not cover {benchmark} with n={n} samples per problem (missing problems: "
            f"{sorted(missing)[:5]}, unknown problems: {sorted(extra)[:5]}, wrong counts: {dict(wrong.head(5))})"
        )
    meta = {k: v for k, v in first.items() if k not in ("shard", "seconds", "completions_per_s")}
    meta["benchmark"] = str(benchmark)
    meta["shards"] = [metas[i]["shard"] | {"seconds": metas[i].get("seconds")} for i in order]
    meta["seconds"] = round(sum(m.get("seconds") or 0.0 for m in metas), 2)
    meta[MANIFEST_KEY] = step_manifest(
        "gather_samples", [*(("shard", shard_files[i]) for i in order), ("benchmark", benchmark)],
        settings={"sampling": first.get("sampling")}, model=(first.get(MANIFEST_KEY) or {}).get("model"),
    )
    write_parquet(out, samples, metadata=meta)
    log.info("gathered %d shards: %d samples of %d problems", len(shard_files), len(samples), len(problems))
    return meta
