"""What a study will cost before anything is submitted: jobs per rule, each job's request, GPU- and CPU-hours.

The DAG is the real one: the repository's Snakefile is loaded through Snakemake's Python API with the study's
config and working directory, and the jobs a dry run would execute are read from it (nothing is executed, no
output is needed, Snakemake's printed output is never parsed). Each job's request is its *evaluated*
`job.resources` and `job.threads`, so resources given as callables, or differing per study, count per job.

The hours are upper bounds: `runtime` is the limit a job asks the scheduler for (Slurm `--time`), not how long it
will take. Local rules (`localrule: True`, and rules without a command such as `all`) run on the submitting host
and never reach the scheduler, so they are listed but not counted in the hours.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quagmire import REPO
from quagmire.errors import QuagmireError

SNAKEFILE = REPO / "Snakefile"
UNLIMITED_CORES = 1 << 30  # Snakemake caps a job's threads at --cores: planning must not scale them down


@dataclass(frozen=True)
class PlanRow:
    """Jobs of one rule that ask for the same thing (a rule whose resources differ per job has several rows)."""

    rule: str
    family: str  # the job's `family` resource (rules/common.smk), else the resources.<family> its request equals
    local: bool  # runs on the submitting host, not as a cluster job
    jobs: int
    gpu: int  # per job
    runtime_min: int | None  # per job; None: the rule asks for no runtime
    cpus: int  # per job: cpus_per_task, else threads
    mem_mb: int | None  # per job

    @property
    def gpu_hours(self) -> float:
        """Upper bound over these jobs on the cluster (0 for local jobs)."""
        return 0.0 if self.local else self.jobs * self.gpu * (self.runtime_min or 0) / 60

    @property
    def cpu_hours(self) -> float:
        return 0.0 if self.local else self.jobs * self.cpus * (self.runtime_min or 0) / 60


@dataclass
class Plan:
    """The jobs a run of `targets` would execute in `workdir`, grouped by rule and request."""

    configfile: str
    workdir: str
    targets: list[str]
    all_jobs: bool  # every job counted, as if no output existed
    rows: list[PlanRow]
    done: int  # jobs of the DAG whose outputs exist and are up to date: not counted
    notes: list[str] = field(default_factory=list)

    @property
    def jobs(self) -> int:
        return sum(r.jobs for r in self.rows)

    @property
    def gpu_hours(self) -> float:
        return sum(r.gpu_hours for r in self.rows)

    @property
    def cpu_hours(self) -> float:
        return sum(r.cpu_hours for r in self.rows)

    def jobs_per_rule(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for row in self.rows:
            counts[row.rule] += row.jobs
        return dict(counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "configfile": self.configfile,
            "workdir": self.workdir,
            "targets": self.targets,
            "all_jobs": self.all_jobs,
            "jobs": self.jobs,
            "done_not_counted": self.done,
            "gpu_hours": self.gpu_hours,
            "cpu_hours": self.cpu_hours,
            "rows": [{**asdict(r), "gpu_hours": r.gpu_hours, "cpu_hours": r.cpu_hours} for r in self.rows],
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- reading a job's request


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def gpus_of(resources: Mapping[str, Any]) -> int:
    """GPUs per job: `gpu` (the project's key), else `gpus`, else a Slurm gres such as `gpu:8` or `gpu:a100:8`."""
    for key in ("gpu", "gpus"):
        count = _int(resources.get(key))
        if count is not None:
            return count
    gres = resources.get("gres")
    if isinstance(gres, str):
        match = re.search(r"gpu(?::[^:,]+)?:(\d+)", gres)
        if match:
            return int(match.group(1))
        if re.search(r"\bgpu\b", gres):
            return 1
    return 0


def families(config: Any) -> dict[str, list[dict[str, Any]]]:
    """Every `resources:` section of the config (one per study when studies carry their own): name -> requests."""
    found: dict[str, list[dict[str, Any]]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "resources" and isinstance(value, Mapping):
                    for name, request in value.items():
                        if isinstance(request, Mapping):
                            found.setdefault(str(name), []).append(dict(request))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return found


def family_of(resources: Mapping[str, Any], known: Mapping[str, list[dict[str, Any]]]) -> str:
    """The family whose every setting the job's evaluated request carries unchanged ('' if none, 'a|b' if tied)."""
    names = sorted(
        name
        for name, requests in known.items()
        if any(request and all(resources.get(k) == v for k, v in request.items()) for request in requests)
    )
    return "|".join(names)


# --------------------------------------------------------------------------- the DAG


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def built_dag(
    configfile: str | Path,
    workdir: str | Path,
    *,
    targets: Sequence[str] = (),
    forceall: bool = False,
    snakefile: str | Path | None = None,
    cores: int = UNLIMITED_CORES,
) -> Iterator[Any]:
    """The Snakemake workflow of `configfile` with its DAG built as a dry run builds it: no lock, nothing run or
    created. For tools that read jobs without running them (`quagmire plan`, scripts/check_envs.py).

    Uses two private calls (`_prepare_dag`, `_build_dag`): the API has no public "build but don't run", and these
    are what Snakemake's own non-executing commands (--summary, --printdag) call. Snakemake changes into
    `workdir`; the caller's working directory is restored.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    cwd = os.getcwd()
    try:
        quiet = OutputSettings(quiet={Quietness.ALL}, log_level_override=logging.WARNING)
        with SnakemakeApi(quiet) as api:
            workflow_api = api.workflow(
                resource_settings=ResourceSettings(cores=cores),
                config_settings=ConfigSettings(configfiles=[Path(configfile).resolve()]),
                snakefile=Path(snakefile or SNAKEFILE).resolve(),
                workdir=Path(workdir).resolve(),
            )
            # force_incomplete: outputs left by a killed job count as to run, as a real run would redo them
            workflow_api.dag(DAGSettings(targets=frozenset(targets), forceall=forceall, force_incomplete=True))
            workflow = workflow_api._workflow  # loads the Snakefile (the API has no public getter for it)
            workflow._prepare_dag(forceall=forceall, ignore_incomplete=False, lock_warn_only=True, nolock=True)
            workflow._build_dag()
            yield workflow
    finally:
        os.chdir(cwd)


def plan_workflow(
    configfile: str | Path,
    targets: Sequence[str] = (),
    workdir: str | Path | None = None,
    all_jobs: bool = False,
    snakefile: str | Path | None = None,
) -> Plan:
    """Build the DAG of `targets` (default: the Snakefile's default target) and read every job it would run.

    `workdir` (default: the current directory) decides which jobs are already done, as for `snakemake -n`;
    `all_jobs` counts every job as if no output existed (`--forceall`). Config and DAG errors become a
    QuagmireError with Snakemake's message on one line.
    """
    from snakemake.exceptions import RuleException
    from snakemake_interface_common.exceptions import WorkflowError

    configfile = Path(configfile)
    if not configfile.is_file():
        raise QuagmireError(f"no such config file: {configfile}")
    snakefile = Path(snakefile) if snakefile else SNAKEFILE
    if not snakefile.is_file():
        raise QuagmireError(f"no Snakefile at {snakefile} (pass --snakefile)")
    workdir = Path(workdir) if workdir else Path.cwd()
    if not workdir.is_dir():
        raise QuagmireError(f"no such working directory: {workdir}")

    # The DAG is tens of thousands of small objects built at once: Python's cyclic GC rescans them again and again
    # while they are created (measured on 3,018 jobs: 11.2-11.9 s with it, 7.4-8.3 s without), and they are all
    # freed as a whole when the plan is done, so collection is paused while building.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with built_dag(configfile, workdir, targets=targets, forceall=all_jobs, snakefile=snakefile) as workflow:
            dag = workflow.dag
            needrun = list(dag.needrun_jobs())
            done = len(dag.jobs) - len(needrun)
            known = families(workflow.config)
            localrules = set(getattr(workflow, "_localrules", ()))
            rows = _rows(needrun, known, localrules)
    except QuagmireError:
        raise
    except (WorkflowError, RuleException) as exc:
        raise QuagmireError(_one_line(exc)) from exc
    finally:
        if gc_was_enabled:
            gc.enable()

    notes = []
    if any(r.runtime_min is None and not r.local for r in rows):
        missing = sorted({r.rule for r in rows if r.runtime_min is None and not r.local})
        notes.append(f"no runtime requested by {', '.join(missing)}: not counted in the hours")
    return Plan(
        configfile=str(configfile),
        workdir=str(workdir),
        targets=list(targets),
        all_jobs=all_jobs,
        rows=rows,
        done=done,
        notes=notes,
    )


def _rows(jobs: Iterable[Any], known: Mapping[str, list[dict[str, Any]]], localrules: set[str]) -> list[PlanRow]:
    counts: Counter[tuple] = Counter()
    for job in jobs:
        rule = job.rule
        resources = dict(job.resources.items())
        local = rule.group is None and (rule.name in localrules or rule.norun or rule.is_template_engine)
        cpus = _int(resources.get("cpus_per_task")) or int(job.threads)
        key = (
            rule.name,
            "" if rule.norun else str(resources.get("family") or family_of(resources, known)),
            local,
            gpus_of(resources),
            _int(resources.get("runtime")),
            cpus,
            _int(resources.get("mem_mb")),
        )
        counts[key] += 1
    rows = [
        PlanRow(rule=r, family=f, local=loc, jobs=n, gpu=g, runtime_min=t, cpus=c, mem_mb=m)
        for (r, f, loc, g, t, c, m), n in counts.items()
    ]
    # the expensive part first: GPU-hours, then CPU-hours, then job count
    return sorted(rows, key=lambda r: (r.local, -r.gpu_hours, -r.cpu_hours, -r.jobs, r.rule))


# --------------------------------------------------------------------------- report


def _runtime(minutes: int | None) -> str:
    if minutes is None:
        return "-"
    return f"{minutes // 60}h{minutes % 60:02d}"


def _mem(mem_mb: int | None) -> str:
    if mem_mb is None:
        return "-"
    return f"{mem_mb / 1000:g} GB"


def format_plan(plan: Plan) -> str:
    """The plan as a table: one row per (rule, request), the totals, and what the numbers mean."""
    what = " ".join(plan.targets) if plan.targets else "the default target (all)"
    head = f"plan for {what} with --configfile {plan.configfile}, in {plan.workdir}:"
    if plan.all_jobs:
        head += " every job counted, as if no output existed (--all-jobs)"
    elif plan.done:
        total = plan.done + plan.jobs
        head += f" {plan.done} of {total} jobs are already done and not counted (--all-jobs counts them)"
    else:
        head += " no job is done yet"
    header = ("rule", "family", "runs on", "jobs", "gpu/job", "runtime/job", "cpus/job", "mem/job", "GPU-h", "CPU-h")
    table = [
        (
            r.rule,
            r.family or "-",
            "local" if r.local else "cluster",
            str(r.jobs),
            str(r.gpu),
            _runtime(r.runtime_min),
            str(r.cpus),
            _mem(r.mem_mb),
            "-" if r.local else f"{r.gpu_hours:,.1f}",
            "-" if r.local else f"{r.cpu_hours:,.1f}",
        )
        for r in plan.rows
    ]
    cluster = [r for r in plan.rows if not r.local]
    total = (
        "total",
        "",
        f"{sum(r.jobs for r in cluster)} cluster",
        str(plan.jobs),
        "",
        "",
        "",
        "",
        f"{plan.gpu_hours:,.1f}",
        f"{plan.cpu_hours:,.1f}",
    )
    widths = [max(len(row[i]) for row in [header, *table, total]) for i in range(len(header))]
    left = {0, 1, 2}

    def line(cells: Sequence[str]) -> str:
        cols = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in cols).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [head, "", line(header), rule, *(line(row) for row in table), rule, line(total), ""]
    lines.append(
        f"upper bound: {plan.gpu_hours:,.1f} GPU-hours, {plan.cpu_hours:,.1f} CPU-hours\n"
        "  (sum over cluster jobs of gpus, or cpus, x requested runtime: runtime is a limit, not a forecast)"
    )
    local = sorted({r.rule for r in plan.rows if r.local})
    if local:
        lines.append(f"local rules run on the submitting host and are not counted: {', '.join(local)}.")
    lines.extend(plan.notes)
    return "\n".join(lines)


def print_plan(
    config: str | Path,
    targets: Sequence[str] = (),
    directory: str | Path | None = None,
    all_jobs: bool = False,
    snakefile: str | Path | None = None,
    as_json: bool = False,
) -> Plan:
    """Plan the workflow (`plan_workflow`) and print it as a table, or as JSON: `quagmire plan`, for a user before
    submitting."""
    import json

    plan = plan_workflow(config, targets, directory, all_jobs, snakefile)
    print(json.dumps(plan.to_dict(), indent=2) if as_json else format_plan(plan))
    return plan
