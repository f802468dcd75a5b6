"""SFT subsets of the pool: the paper's instance-level axis (random, shortest, longest, mix N by response length).

Length is counted in tokens of the study's tokenizer, the unit the trainer and the length filter use.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from quagmire.errors import QuagmireError
from quagmire.hf import load_tokenizer
from quagmire.io import write_parquet
from quagmire.provenance import MANIFEST_KEY, file_record, step_manifest

log = logging.getLogger(__name__)

SUBSET_STRATEGIES = ("random", "shortest", "longest", "mix")


def response_lengths(frame: pd.DataFrame, tokenizer) -> pd.Series:
    """Response length in tokens of the study's tokenizer (what length-based subsets sort by)."""
    ids = tokenizer(list(frame["response"]), add_special_tokens=False)["input_ids"]
    return pd.Series([len(x) for x in ids], index=frame.index, name="response_tokens")


def select_subset(pool: pd.DataFrame, lengths: pd.Series, strategy: str, n: int, seed: int) -> pd.DataFrame:
    """The paper's instance-level subsets: random N, shortest N, longest N, mix (longest N/2 + shortest N/2).

    Ties in length are broken by a seeded shuffle, so 'shortest' is not biased towards early pool rows.
    """
    if strategy not in SUBSET_STRATEGIES:
        raise QuagmireError(f"unknown subset strategy {strategy!r} (known: {', '.join(SUBSET_STRATEGIES)})")
    if n > len(pool):
        raise QuagmireError(f"subset of {n} requested from a pool of {len(pool)} rows")
    shuffled = pool.assign(response_tokens=lengths).sample(frac=1.0, random_state=seed)
    by_length = shuffled.sort_values("response_tokens", kind="stable")
    if strategy == "random":
        chosen = shuffled.head(n)
    elif strategy == "shortest":
        chosen = by_length.head(n)
    elif strategy == "longest":
        chosen = by_length.tail(n)
    else:
        chosen = pd.concat([by_length.tail(n - n // 2), by_length.head(n // 2)])
    return chosen.sample(frac=1.0, random_state=seed + 1).reset_index(drop=True)


def subset_to_file(
    pool_path: str | os.PathLike[str], tokenizer_dir: str | os.PathLike[str], strategy: str, n: int, seed: int,
    out: str | os.PathLike[str],
) -> pd.DataFrame:
    """Select one subset of the pool file and write it, with its strategy, size, seed and pool on record."""
    pool = pd.read_parquet(pool_path)
    lengths = response_lengths(pool, load_tokenizer(tokenizer_dir))
    subset = select_subset(pool, lengths, strategy, n, seed)
    mean_tokens = float(subset["response_tokens"].mean())
    write_parquet(
        out,
        subset,
        metadata={"strategy": strategy, "n": n, "seed": seed, "pool": file_record(pool_path),
                  "mean_response_tokens": mean_tokens,
                  MANIFEST_KEY: step_manifest("subset", [("pool", pool_path), ("tokenizer", tokenizer_dir)],
                                              settings={"strategy": strategy, "n": n, "seed": seed})},
    )
    log.info("subset %s-%d: mean response length %.1f tokens", strategy, n, mean_tokens)
    return subset
