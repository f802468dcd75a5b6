"""Running the workflow through real Snakemake from tests: one command helper, dry-run job counts, config variants.

Shared by the DAG tests (local runs) and the Slurm test (the same smoke study through `--profile slurm`).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

def snakemake(
    workdir: Path, configfile: Path, *extra: str, check: bool = True
) -> subprocess.CompletedProcess:
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        *extra,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def planned_jobs(workdir: Path, configfile: Path) -> Counter:
    """Jobs per rule that a dry run would execute (empty when nothing is to be done)."""
    result = snakemake(workdir, configfile, "-n")
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return Counter()
    table = text.split("Job stats:", 1)[1]
    counts = Counter()
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    counts.pop("total", None)
    return counts


def variant(base: Path, tmp: Path, name: str, change: dict) -> Path:
    """A copy of the smoke config with one nested change."""
    config = yaml.safe_load(base.read_text())
    node = config
    *parents, leaf = change["key"]
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = change["value"]
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
