"""Kill the whole DAG: SIGKILL Snakemake's process group in SFT, in GRPO, in sampling and in analysis.

After each kill the README's recovery (`snakemake --unlock`, then the same command with `--rerun-incomplete`)
carries on, and the final tables are byte-identical to the uninterrupted smoke study's. Checkpoints are taken
every step here (`save_steps` is operational: it never reruns a job nor changes a result), and the SFT and GRPO
kills fire the moment a checkpoint is complete, so the reruns resume from it rather than start over. A smoke GRPO
checkpoint lives only tens of milliseconds before its job publishes; should a job finish unseen, the next one of
the same rule is killed mid-run instead (the outcome printed says which).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from dagrun import REPO, SNAKEMAKE, snakemake

STUDY = "smoke"
# (kill point, rules whose start arms it, a file pattern whose appearance fires it (None: fire right away),
#  the wider pattern it falls back to once a job of those rules has finished without the first one being seen)
KILL_POINTS: list[tuple[str, set[str], str | None, str | None]] = [
    ("sft", {"sft"}, "results/smoke/sft/*.partial/trainer/checkpoint-*/quagmire_complete.json",
     "results/smoke/sft/*.partial"),
    ("grpo", {"grpo"}, "results/smoke/rl/*.partial/trainer/checkpoint-*/quagmire_complete.json",
     "results/smoke/rl/*.partial"),
    ("sampling", {"sample_shard"}, "results/smoke/eval/*/*/shards/*.samples.parquet.partial/*", None),
    ("analysis", {"tidy_table", "predictors", "findings", "rank", "predictor_cost", "plot", "recipes_table"},
     None, None),
]
RULE_START = re.compile(r"^(?:local)?rule (\w+):")
RULE_END = re.compile(r"^Finished jobid: \d+ \(Rule: (\w+)\)")
POINT_TIMEOUT_S = 600.0
WATCH_S = 0.002  # a smoke GRPO step takes tens of milliseconds: a checkpoint lives only that long


class _Trigger(threading.Thread):
    """Kill the DAG's process group the moment a file pattern appears.

    A thread polls every few milliseconds, independently of Snakemake's output: a checkpoint of the smoke
    study's two-step GRPO exists for only tens of milliseconds before its job publishes and removes it."""

    def __init__(self, workdir: Path, pid: int, deadline: float) -> None:
        super().__init__(daemon=True)
        self.workdir, self.pid, self.deadline = workdir, pid, deadline
        self.pattern: str | None = None
        self.fired = threading.Event()
        self.timed_out = threading.Event()
        self.stop = threading.Event()

    def arm(self, pattern: str) -> None:
        self.pattern = pattern

    def run(self) -> None:
        while not self.stop.is_set() and not self.fired.is_set():
            pattern = self.pattern
            if pattern is not None and any(self.workdir.glob(pattern)):
                os.killpg(self.pid, signal.SIGKILL)
                self.fired.set()
                return
            if time.monotonic() > self.deadline:  # a DAG that hangs silently is stopped too
                os.killpg(self.pid, signal.SIGKILL)
                self.timed_out.set()
                return
            time.sleep(WATCH_S)


def _run_until_killed(
    workdir: Path, configfile: Path, rules: set[str], fire: str | None, fallback: str | None
) -> tuple[bool, str]:
    """Start the DAG in its own process group; SIGKILL the group once one of `rules` has started and `fire`
    exists (or, after one such job ended unseen, once `fallback` exists). Returns (killed, why): False when the
    DAG finished or the point never came."""
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(configfile),
           "--cores", "2", "--rerun-incomplete", "all"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    assert process.stdout is not None
    trigger = _Trigger(workdir, process.pid, time.monotonic() + POINT_TIMEOUT_S)
    trigger.start()
    armed_by = None
    pattern = fire
    tail: list[str] = []
    try:
        for line in process.stdout:  # ends when the group is killed or the DAG ends
            tail.append(line)
            start, end = RULE_START.match(line), RULE_END.match(line)
            if start and start.group(1) in rules and armed_by is None:
                armed_by = start.group(1)
                if fire is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    trigger.fired.set()
                    break
                trigger.arm(fire)
            elif end and end.group(1) in rules and armed_by is not None and fallback and pattern != fallback:
                pattern = fallback  # a job ended before its checkpoint was seen: kill the next one mid-run
                trigger.arm(fallback)
        process.wait()
        if trigger.timed_out.is_set():
            return False, f"no kill within {POINT_TIMEOUT_S:.0f} s"
        if trigger.fired.is_set():
            return True, f"killed in {armed_by} on {pattern}"
        return False, f"the DAG ended (exit {process.returncode}) first:\n{''.join(tail[-40:])}"
    finally:
        trigger.stop.set()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
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
    for point, rules, fire, fallback in KILL_POINTS:
        unlock = snakemake(workdir, configfile, "--unlock")  # the README's step after a hard kill
        assert unlock.returncode == 0
        killed, why = _run_until_killed(workdir, configfile, rules, fire, fallback)
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
