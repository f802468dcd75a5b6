"""The Slurm profile (slurm/config.yaml) and the sbatch/srun lines the executor plugin builds from our resources.

No Slurm needed: the plugin's own command builders are called with a minimal job object that carries exactly what
a rule's `resources: **job_resources(family)` gives it (the validated study config's resources of that family) on
top of the profile's default-resources. The bug this guards against: a GPU job that also sets a `tasks` resource
gets `--ntasks-per-gpu`, so a 2-GPU training job would become two 1-GPU processes instead of one process (which
starts its own accelerate workers) holding both GPUs.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from quagmire.config import load_config

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "slurm" / "config.yaml"
LOCAL_RULES = {
    "score", "world_benchmark", "recipes_table", "tidy_table", "predictors", "findings", "rank",
    "plot", "paper_tables", "paper_figure", "paper_ranking", "predictor_cost", "loss_along_sft_table",
    "plot_loss_along_sft",
}

slurm_plugin = pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -r requirements.txt")
from snakemake_executor_plugin_slurm.submit_string import get_submit_command  # noqa: E402
from snakemake_executor_plugin_slurm.utils import set_gres_string  # noqa: E402
from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting, get_gpu_setting, get_node_setting  # noqa: E402


@pytest.fixture(scope="module")
def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


class Resources(dict):
    """A job's resources as the plugin reads them: `.get(name)` and attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def fake_job(rule: str, resources: dict, threads: int, wildcards: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        name=rule, threads=threads, resources=Resources(resources), wildcards=wildcards, is_group=lambda: False
    )


def job_for(profile: dict, family_resources: dict, rule: str, threads: int) -> SimpleNamespace:
    """Profile defaults first, then the rule's own resources (which win), as Snakemake merges them."""
    return fake_job(rule, {**profile["default-resources"], **family_resources}, threads)


def sbatch_line(job, profile: dict) -> str:
    """The plugin's sbatch command for `job`, built as its run_job builds it (without the --wrap payload)."""
    settings = SimpleNamespace(
        requeue=profile.get("slurm-requeue", False),
        no_requeue=profile.get("slurm-no-requeue", False),
        qos=None,
        reservation=None,
    )
    partition = job.resources.get("slurm_partition")
    params = {
        "run_uuid": "RUN-UUID",
        "slurm_logfile": f"logs/slurm/rule_{job.name}/%j.log",
        "comment_str": f"rule_{job.name}",
        "account": "",  # the executor's account lookup (sacctmgr) needs a cluster; the profile's default is empty
        "partition": f" -p {shlex.quote(partition)}" if partition else "",
        "workdir": "/work/study",
    }
    return get_submit_command(job, params, settings=settings) + set_gres_string(job)


def srun_line(job) -> str:
    """The job step's srun inside the allocation (the jobstep plugin's run_job, without the snakemake payload)."""
    gpu_job = bool(job.resources.get("gpu"))
    return f"srun -n1 --cpu-bind=q {get_cpu_setting(job, gpu_job)} {get_gpu_setting(job)} {get_node_setting(job)}"


def test_profile_settings(profile):
    assert profile["executor"] == "slurm"
    for key in ("jobs", "latency-wait", "retries"):
        assert isinstance(profile[key], int) and profile[key] > 0, key
    assert profile["rerun-incomplete"] is True and profile["printshellcmds"] is True
    assert profile["slurm-logdir"] and profile["slurm-keep-successful-logs"] is True  # one kept log per job
    assert profile["slurm-status-command"] in ("squeue", "sacct")
    defaults = profile["default-resources"]
    assert {"slurm_partition", "slurm_account"} <= set(defaults)
    # No task geometry anywhere: with a GPU, `tasks` becomes --ntasks-per-gpu (one process per GPU).
    assert not {"tasks", "tasks_per_gpu", "tasks_per_node", "mpi", "gres"} & set(defaults)


def test_config_resources_never_set_task_geometry():
    """The schema's resources (what job_resources() passes to every rule) cannot carry a task count."""
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    allowed = set(schema["$defs"]["resources"]["properties"])
    assert not {"tasks", "tasks_per_gpu", "tasks_per_node", "mpi"} & allowed
    assert schema["$defs"]["resources"]["additionalProperties"] is False


@pytest.mark.parametrize("gpu_model", [None, "h100"])
def test_two_gpu_job_is_one_task_with_two_gpus(profile, gpu_model, capsys):
    config = load_config(
        REPO / "config" / "smoke.yaml",
        overrides={"resources": {"train": {"gpu": 2, "cpus_per_task": 8, "slurm_partition": "gpu"}}},
    )
    resources = dict(config["resources"]["train"])  # what `resources: **job_resources("train")` gives rule sft
    if gpu_model:
        resources["gpu_model"] = gpu_model
    job = job_for(profile, resources, "sft", config["threads"])
    sbatch, srun = sbatch_line(job, profile), srun_line(job)
    with capsys.disabled():
        print(f"\n2-GPU sft job ({gpu_model or 'any model'}):\n  {sbatch}\n  {srun}")
    args = shlex.split(sbatch)
    assert (f"--gpus={gpu_model}:2" if gpu_model else "--gpus=2") in args
    assert not [a for a in args if a.startswith(("--ntasks", "--gres", "-n"))]  # no task count: one task
    assert "--cpus-per-task=8" in args and args[args.index("--mem") + 1] == str(resources["mem_mb"])
    assert args[args.index("-p") + 1] == "gpu" and args[args.index("-t") + 1] == str(resources["runtime"])
    # Inside the allocation: ONE task (-n1) that holds both GPUs.
    assert srun.split() == ["srun", "-n1", "--cpu-bind=q", "--cpus-per-task=8", "--gpus=2", "--nodes=1"]


def test_cpu_job_is_one_task_without_gpus(profile):
    config = load_config(REPO / "config" / "smoke.yaml")
    job = job_for(profile, dict(config["resources"]["grade"]), "grade", config["threads"])
    args = shlex.split(sbatch_line(job, profile))
    assert "--ntasks=1" in args and "--cpus-per-task=1" in args
    assert not [a for a in args if a.startswith(("--gpus", "--gres", "--ntasks-per-gpu"))]
    assert "-p" not in args  # empty profile partition: the cluster's default partition


def test_paper_configs_give_gpu_families_one_task(profile):
    """Every paper-scale GPU family: --gpus=N and no task geometry."""
    for path in sorted((REPO / "config").glob("paper_*.yaml")):  # the studies of config/paper.yaml
        config = load_config(path)
        for family, resources in config["resources"].items():
            args = shlex.split(sbatch_line(job_for(profile, dict(resources), family, config["threads"]), profile))
            if resources.get("gpu"):
                assert any(
                    a.startswith("--gpus=") and a.endswith(f":{resources['gpu']}") or a == f"--gpus={resources['gpu']}"
                    for a in args
                ), (path.name, family, args)
                assert not [a for a in args if a.startswith(("--ntasks", "-n"))], (path.name, family, args)
            else:
                assert "--ntasks=1" in args, (path.name, family, args)


def test_local_rules_are_marked_local():
    """The rules the profile keeps on the submitting host carry `localrule: True` (and no others are expected)."""
    import re

    marked = set()
    for smk in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=\s*rule )", smk.read_text()):
            match = re.match(r"\s*rule (\w+):", block)
            if match and re.search(r"^\s*localrule:\s*True", block, re.M):
                marked.add(match.group(1))
    assert marked == LOCAL_RULES
