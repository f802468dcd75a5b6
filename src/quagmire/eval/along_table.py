"""The loss-along-SFT table: its columns, its reader and the gather of a study's runs into one table.

Apart from `quagmire.eval.along_sft` (which measures the snapshots) because the analysis env reads these tables:
it has pandas but no torch, transformers or math-verify, and a module is judged by everything it imports
(scripts/check_envs.py), lazily or not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.io import atomic_path
from quagmire.provenance import step_manifest, write_sidecar

COLUMNS = ("run", "step", "epoch", "genloss", "accuracy", "n")


def read_along(path: str | os.PathLike[str]) -> pd.DataFrame:
    """One loss-along-SFT CSV, checked for its columns."""
    try:
        frame = pd.read_csv(path, dtype={"run": str})
    except FileNotFoundError as exc:
        raise QuagmireError(f"loss-along-SFT table not found: {path}") from exc
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise QuagmireError(f"loss-along-SFT table {path} lacks column(s) {', '.join(missing)}")
    return frame


def gather_to_file(runs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> pd.DataFrame:
    """The study's `tables/loss_along_sft.csv`: every run's CSV, in the order given, with a manifest."""
    if not runs:
        raise QuagmireError("loss along SFT: no run's table to gather")
    frame = pd.concat([read_along(path) for path in runs], ignore_index=True)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    write_sidecar(out, step_manifest("loss_along_sft_table", [(f"along:{i}", p) for i, p in enumerate(runs)]))
    return frame
