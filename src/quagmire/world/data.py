"""The embedded world's data: its SFT pool, held-out SFT split, RL prompts and benchmarks, drawn disjoint.

One row schema for every pool, whatever its source (the embedded world now, hub datasets later):
`problem_id, prompt, response, answer, source, source_row` plus, for the embedded world, `family, level,
difficulty, style`. Benchmarks use `problem_id, prompt, answer, source, source_row, family, level`.

Why pools are drawn together: a problem must never appear in two pools (a held-out or benchmark problem seen
in SFT or RL would inflate exactly the scores the study compares). One shared `taken` set enforces it, and the
audit records the check.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.io import read_parquet_metadata, write_json, write_parquet
from quagmire.provenance import MANIFEST_KEY, step_manifest
from quagmire.world.problems import Problem, choose_style, solution, unique_problems

log = logging.getLogger(__name__)

POOLS = ("sft", "heldout", "rl")
SOURCE = "embedded-world"


def _mix(spec: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Expand {'add:2': 3, 'mul:2': 1} into the cycle [add2, add2, add2, mul2] that `unique_problems` walks."""
    cycle = []
    for kind, weight in sorted(spec["mix"].items()):
        family, level = kind.split(":")
        cycle += [(family, int(level))] * weight
    return cycle


def _problem_row(problem: Problem, pool: str, index: int) -> dict[str, Any]:
    return {
        "problem_id": f"{pool}-{index:06d}",
        "prompt": problem.question,
        "answer": str(problem.answer),
        "source": SOURCE,
        "source_row": problem.key,
        "family": problem.family,
        "level": problem.level,
    }


def build_world(world: Mapping[str, Any], seed: int) -> dict[str, pd.DataFrame]:
    """Draw every pool and benchmark of the embedded world, disjoint by construction.

    Benchmarks are drawn first so that their size never depends on how large the training pools are.
    Returns frames keyed 'sft', 'heldout', 'rl' and 'benchmark:<name>'.
    """
    rng = random.Random(seed)
    style_rng = random.Random(f"{seed}:styles")  # how problems are written never changes which are drawn
    taken: set[str] = set()
    frames: dict[str, pd.DataFrame] = {}
    try:
        for name, spec in sorted(world["benchmarks"].items()):  # key order in a file must not change the draw
            problems = unique_problems(rng, _mix(spec), spec["size"], taken)
            frames[f"benchmark:{name}"] = pd.DataFrame(
                [_problem_row(p, name, i) for i, p in enumerate(problems)]
            )
        for pool in POOLS:
            spec = world["pools"][pool]
            rows = []
            for i, problem in enumerate(unique_problems(rng, _mix(spec), spec["size"], taken)):
                row = _problem_row(problem, pool, i)
                if pool != "rl":
                    row["difficulty"] = problem.difficulty()
                    row["style"] = choose_style(problem, world["styles"], style_rng)
                    row["response"] = solution(problem, row["style"], style_rng)
                rows.append(row)
            frames[pool] = pd.DataFrame(rows)
    except ValueError as exc:  # the problem space is too small for the requested sizes
        raise QuagmireError(f"world config: {exc}") from exc
    return frames


def disjointness_audit(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Counts per pool and the number of problems shared between any two pools (must be 0)."""
    keys = {name: set(frame["source_row"]) for name, frame in frames.items()}
    names = sorted(keys)
    overlaps = {f"{a}|{b}": len(keys[a] & keys[b]) for i, a in enumerate(names) for b in names[i + 1 :]}
    return {
        "rows": {name: int(len(frame)) for name, frame in frames.items()},
        "overlaps": overlaps,
        "disjoint": all(v == 0 for v in overlaps.values()),
    }


WORLD_BENCHMARKS_FILE = "world_benchmarks.parquet"  # every world benchmark of a study, split by `benchmark`


def write_world(
    frames: Mapping[str, pd.DataFrame], outdir: Path, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Write pools to `outdir/<pool>.parquet`, every benchmark to `outdir/world_benchmarks.parquet` (column
    `benchmark`), plus the audit.

    The benchmarks share one file because one job draws them all (disjoint from the pools); the
    `world_benchmark` rule then writes each one's `benchmarks/<name>.parquet` (`write_world_benchmark`).
    """
    audit = disjointness_audit(frames)
    if not audit["disjoint"]:
        raise QuagmireError(f"pools overlap: {audit['overlaps']}")
    metadata = {"source": SOURCE, "settings": dict(settings), MANIFEST_KEY: step_manifest("world", settings=settings)}
    benchmarks = []
    for name, frame in frames.items():
        if name.startswith("benchmark:"):
            benchmarks.append(frame.assign(benchmark=name.split(":", 1)[1]))
        else:
            write_parquet(outdir / f"{name}.parquet", frame, metadata=metadata)
    combined = pd.concat(benchmarks, ignore_index=True) if benchmarks else pd.DataFrame({"benchmark": []})
    write_parquet(outdir / WORLD_BENCHMARKS_FILE, combined, metadata=metadata)
    write_json(outdir / "audit.json", {**audit, "settings": dict(settings), MANIFEST_KEY: metadata[MANIFEST_KEY]})
    return audit


def write_world_benchmark(world_benchmarks: Path, name: str, out: Path) -> int:
    """Write one benchmark of `world_benchmarks.parquet` as `out` (its own columns and metadata); return its size."""
    frame = pd.read_parquet(world_benchmarks)
    if "benchmark" not in frame.columns:
        raise QuagmireError(f"{world_benchmarks}: no `benchmark` column (not written by `quagmire world`)")
    rows = frame[frame["benchmark"] == name]
    if rows.empty:
        known = ", ".join(sorted(set(frame["benchmark"]))) or "none"
        raise QuagmireError(f"{world_benchmarks}: no world benchmark {name!r} (it has: {known})")
    frame = rows.drop(columns="benchmark").reset_index(drop=True)
    metadata = read_parquet_metadata(world_benchmarks)
    metadata[MANIFEST_KEY] = step_manifest("world_benchmark", [("world_benchmarks", world_benchmarks)],
                                           settings={"name": name})
    write_parquet(out, frame, metadata=metadata)
    log.info("world benchmark %s: %d problems", name, len(rows))
    return len(rows)


def world_to_file(settings: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Build the world from `settings` ({"world": ..., "seed": ...}) and write its pools, benchmarks and audit
    to `out_dir`: the `quagmire world` step of the DAG."""
    audit = write_world(build_world(settings["world"], settings["seed"]), Path(out_dir), settings)
    log.info("world written: %s", audit["rows"])
    return audit
