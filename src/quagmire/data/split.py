"""The held-out split: SFT problems set aside to measure generalization loss, disjoint from the SFT pool.

Disjoint by problem_id and by normalized prompt (`quagmire.data.text.dedup_key`), so the held-out loss is
measured on problems SFT never saw, even when a source lists one problem twice with different responses.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
import pandas as pd

from quagmire.data.text import dedup_key
from quagmire.errors import QuagmireError
from quagmire.io import write_parquet
from quagmire.provenance import code_version, file_record

log = logging.getLogger(__name__)


def _prompt_groups(frame: pd.DataFrame) -> list[list[int]]:
    """Row positions grouped so that rows sharing a problem_id or a `dedup_key` prompt are in one group
    (union-find over both keys), groups in order of their first row."""
    parent = list(range(len(frame)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[tuple[str, str], int] = {}
    for position, (pid, prompt) in enumerate(zip(frame["problem_id"], frame["prompt"], strict=True)):
        for key in (("id", str(pid)), ("prompt", dedup_key(str(prompt)))):
            other = first_seen.setdefault(key, position)
            a, b = root(position), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for position in range(len(frame)):
        groups.setdefault(root(position), []).append(position)
    return list(groups.values())


def split_heldout(frame: pd.DataFrame, size: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pool, heldout): a seeded draw of `size` held-out rows, disjoint from the pool by problem_id and by
    normalized prompt, so the held-out loss is measured on problems SFT never saw.

    Whole prompt groups (a prompt with several responses) go to one side; groups are taken in seeded order while
    they fit, so the held-out split has exactly `size` rows unless the group sizes make that impossible (then
    fewer, never more). Both frames keep the input's row order.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size < len(frame):
        raise QuagmireError(
            f"held-out size must be an integer in [1, {len(frame) - 1}] for {len(frame)} rows (got {size!r})"
        )
    groups = _prompt_groups(frame)
    random.Random(seed).shuffle(groups)
    chosen: list[int] = []
    for group in groups:
        if len(chosen) + len(group) <= size:
            chosen.extend(group)
            if len(chosen) == size:
                break
    is_heldout = np.zeros(len(frame), dtype=bool)
    is_heldout[chosen] = True
    return frame[~is_heldout].reset_index(drop=True), frame[is_heldout].reset_index(drop=True)


def split_files(
    clean: str | os.PathLike[str], size: int, seed: int,
    pool_out: str | os.PathLike[str], heldout_out: str | os.PathLike[str],
) -> dict[str, Any]:
    """Split the clean SFT file into the SFT pool and the held-out split (`split_heldout`), with their records."""
    frame = pd.read_parquet(clean)
    pool, heldout = split_heldout(frame, size, seed)
    record = {"from": file_record(clean), "seed": seed, "heldout_size": len(heldout), "pool_size": len(pool),
              "code": code_version()}
    write_parquet(pool_out, pool, metadata={"split": "pool", **record})
    write_parquet(heldout_out, heldout, metadata={"split": "heldout", **record})
    log.info("held-out split: %d rows; SFT pool: %d rows", record["heldout_size"], record["pool_size"])
    return record
