"""The smoke study through a real single-node Slurm (scripts/slurm_local.sh) and the Slurm profile (slurm/config.yaml).

Needs root and the Debian packages slurmctld slurmd slurm-client munge; skipped (with the reason) without them or
when Slurm cannot start, except under CI=true, where it fails instead (.ci/run installs the packages).

The run uses `--profile slurm` as a user would, plus a second, test-only profile (written below) that overrides
what cannot hold on this machine: the local partition's name, no account, short latency wait and status polls,
and a jobs limit for 2 cores. A `sbatch` shim in front of the real one logs every submission.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from dagrun import planned_jobs, snakemake, variant

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm_local.sh"
STATE = "/tmp/quagmire-slurm-test"  # fixed: a run killed before its teardown is cleaned up by the next start
PARTITION = "local"
LOCAL_RULES = {
    "score", "world_benchmark", "recipes_table", "tidy_table", "predictors", "findings", "rank",
    "plot", "all", "predictor_cost", "loss_along_sft_table", "plot_loss_along_sft",
}
# the family given fake GPUs (CPU torch ignores them) and its rules
GPU_FAMILY, GPU_RULES, GPUS = "genloss", {"genloss", "loss_along_sft"}, 2
TEST_PROFILE = f"""\
# Test-only overrides of slurm/config.yaml for the local Slurm of scripts/slurm_local.sh.
default-resources:
  slurm_partition: {PARTITION}
  slurm_account: ""
latency-wait: 5
jobs: 6
slurm-init-seconds-before-status-checks: 2
"""


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so the Slurm test must run, but {reason}")
    pytest.skip(reason)


def slurm_script(command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QUAGMIRE_SLURM_DIR": STATE, "QUAGMIRE_SLURM_PARTITION": PARTITION}
    env["QUAGMIRE_SLURM_GPUS"] = str(GPUS)
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, env=env, timeout=180)


@pytest.fixture(scope="session")
def local_slurm():
    """A running single-node Slurm for the session; always stopped afterwards."""
    missing = [
        b for b in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo") if not shutil.which(b)
    ]
    if missing:
        unavailable(
            f"Slurm is not installed (no {', '.join(missing)}): apt-get install slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        unavailable("starting munged, slurmctld and slurmd needs root")
    started = time.monotonic()
    result = slurm_script("start")
    seconds = time.monotonic() - started
    try:
        if result.returncode != 0:
            unavailable(f"scripts/slurm_local.sh start failed:\n{result.stderr[-3000:]}")
        print(f"\nslurm_local.sh start: {seconds:.1f} s")
        yield
    finally:
        slurm_script("stop")


def sbatch_shim(folder: Path, calls: Path) -> Path:
    """A `sbatch` that writes its argv (NUL-separated) to a new file in `calls`, then runs the real one."""
    real = shutil.which("sbatch")
    folder.mkdir()
    calls.mkdir()
    shim = folder / "sbatch"
    shim.write_text(
        "#!/bin/bash\n"
        f'printf "%s\\0" "$@" > "$(mktemp {shlex.quote(str(calls))}/call.XXXXXXXX)"\n'
        f'exec {shlex.quote(real)} "$@"\n'
    )
    shim.chmod(0o755)
    return folder


def submitted_rule(args: list[str]) -> str:
    """The rule of a submission, from the plugin's `--comment rule_<rule>[_wildcards_...]`."""
    comment = args[args.index("--comment") + 1]
    return comment.removeprefix("rule_").split("_wildcards_")[0]


def test_smoke_study_through_slurm(local_slurm, smoke_study, tmp_path, monkeypatch):
    local_workdir, local_config = smoke_study
    workdir = tmp_path / "slurm-run"
    workdir.mkdir()
    # Same study (name `smoke`, so the tables can match byte for byte); one family asks for 2 fake GPUs.
    configfile = variant(local_config, workdir, "smoke", {"key": ["resources", GPU_FAMILY, "gpu"], "value": GPUS})
    test_profile = tmp_path / "profile"
    test_profile.mkdir()
    (test_profile / "config.yaml").write_text(TEST_PROFILE)
    sbatch_calls = tmp_path / "sbatch-calls"
    monkeypatch.setenv("PATH", f"{sbatch_shim(tmp_path / 'bin', sbatch_calls)}:{os.environ['PATH']}")

    planned = planned_jobs(workdir, configfile)
    remote = Counter({rule: n for rule, n in planned.items() if rule not in LOCAL_RULES})
    assert remote and set(planned) & LOCAL_RULES

    started = time.monotonic()
    snakemake(workdir, configfile, "--profile", str(REPO / "slurm"), "--profile", str(test_profile), "all")
    print(f"\nsmoke study through Slurm: {time.monotonic() - started:.0f} s, {remote.total()} sbatch jobs")

    calls = [path.read_text().split("\0")[:-1] for path in sorted(sbatch_calls.iterdir())]
    submitted = Counter(submitted_rule(args) for args in calls)
    assert submitted == remote  # every non-local job went through sbatch, once; no local rule did
    assert not set(submitted) & LOCAL_RULES
    for args in calls:
        assert args[args.index("-p") + 1] == PARTITION
        assert not [a for a in args if a.startswith("--ntasks-per-gpu")]
        if submitted_rule(args) in GPU_RULES:
            assert f"--gpus={GPUS}" in args and not [a for a in args if a.startswith("--ntasks")], args
        else:
            assert "--ntasks=1" in args and not [a for a in args if a.startswith("--gpus")], args
    # Each job really ran as a Slurm job: the profile keeps one Slurm log per job.
    assert len(list((workdir / "logs" / "slurm").rglob("*.log"))) == len(calls)

    tables = sorted(p.name for p in (local_workdir / "results" / "smoke" / "tables").glob("*.csv"))
    assert tables
    for name in tables:
        local = (local_workdir / "results" / "smoke" / "tables" / name).read_bytes()
        assert (workdir / "results" / "smoke" / "tables" / name).read_bytes() == local, name
