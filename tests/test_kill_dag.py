"""Kill the whole DAG: SIGKILL Snakemake's process group in SFT, in GRPO, in sampling and in analysis.

After each kill the README's recovery (`snakemake --unlock`, then the same command with `--rerun-incomplete`)
carries on, and the final tables are byte-identical to the uninterrupted smoke study's. Checkpoints are taken
every step here (`save_steps` is operational: it never reruns a job nor changes a result), so the SFT and GRPO
kills land after a checkpoint and the reruns resume from it rather than start over.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from dagrun import REPO, SNAKEMAKE, snakemake

STUDY = "smoke"
# (kill point, rules whose start arms it, a file pattern whose appearance fires it; None: fire right away)
KILL_POINTS: list[tuple[str, set[str], str | None]] = [
    ("sft", {"sft"}, "results/smoke/sft/*.partial/trainer/checkpoint-*/trainer_state.json"),
    ("grpo", {"grpo"}, "results/smoke/rl/*.partial/trainer/checkpoint-*/trainer_state.json"),
    ("sampling", {"sample_shard"}, "results/smoke/eval/*/*/shards/*.samples.parquet.partial/*"),
    ("analysis", {"tidy_table", "predictors", "findings", "rank", "predictor_cost", "plot", "recipes_table"}, None),
]
RULE_START = re.compile(r"^(?:local)?rule (\w+):")
POINT_TIMEOUT_S = 600.0


def _run_until_killed(workdir: Path, configfile: Path, rules: set[str], fire: str | None) -> tuple[bool, str]:
    """Start the DAG in its own process group; SIGKILL the group once one of `rules` has started and `fire`
    exists. Returns (killed, why): False when the DAG finished or the point never came."""
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(configfile),
           "--cores", "2", "--rerun-incomplete", "all"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    armed_by = None
    tail: list[str] = []
    deadline = time.monotonic() + POINT_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=0.2):
                line = process.stdout.readline()
                if not line and process.poll() is not None:
                    return False, f"the DAG ended (exit {process.returncode}) first:\n{''.join(tail[-40:])}"
                tail.append(line)
                match = RULE_START.match(line)
                if match and match.group(1) in rules and armed_by is None:
                    armed_by = match.group(1)
            elif process.poll() is not None:
                return False, f"the DAG ended (exit {process.returncode}) first:\n{''.join(tail[-40:])}"
            if armed_by is not None and (fire is None or any(workdir.glob(fire))):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return True, f"killed in {armed_by}"
        return False, f"no {sorted(rules)} job within {POINT_TIMEOUT_S:.0f} s"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        selector.close()
        process.stdout.close()


def _nothing_half_written_looks_finished(workdir: Path) -> None:
    """Every table that exists is complete: a CSV with a header line and a final newline."""
    for table in (workdir / "results" / STUDY / "tables").glob("*.csv"):
        text = table.read_text()
        assert text.endswith("\n") and "\n" in text.rstrip("\n"), table


@pytest.mark.slow  # the smoke DAG once, interrupted four times (about 4 minutes)
def test_a_dag_killed_in_sft_grpo_sampling_and_analysis_ends_with_identical_tables(smoke_study, tmp_path):
    reference_dir, reference_config = smoke_study
    workdir = tmp_path / "killed"
    workdir.mkdir()
    config = yaml.safe_load(reference_config.read_text())
    config["sft"].setdefault("defaults", {})["save_steps"] = 1  # smoke SFT runs 4-8 steps, GRPO 2
    config["rl"]["save_steps"] = 1
    configfile = workdir / "smoke.yaml"
    configfile.write_text(yaml.safe_dump(config))

    outcomes = []
    for point, rules, fire in KILL_POINTS:
        unlock = snakemake(workdir, configfile, "--unlock")  # the README's step after a hard kill
        assert unlock.returncode == 0
        killed, why = _run_until_killed(workdir, configfile, rules, fire)
        outcomes.append((point, why))
        assert killed, f"kill point {point}: {why}"
        _nothing_half_written_looks_finished(workdir)
    snakemake(workdir, configfile, "--unlock")
    snakemake(workdir, configfile, "--rerun-incomplete", "all")
    print("kill points:", outcomes)

    reference = reference_dir / "results" / STUDY / "tables"
    names = sorted(p.name for p in reference.glob("*.csv"))
    assert names
    for name in names:
        assert (workdir / "results" / STUDY / "tables" / name).read_bytes() == (reference / name).read_bytes(), name
    assert not list((workdir / "results").rglob("*.partial")), "a finished DAG leaves no scratch folder"
