"""Per-rule conda envs (envs/*.yaml) against what each rule's command imports, and throwaway venvs from them.

    python scripts/check_envs.py                   # rule -> env -> subcommand -> missing packages, for the DAGs
    python scripts/check_envs.py jobs CONFIG WORKDIR   # the DAG's jobs as JSON (rule, env, command, outputs)
    python scripts/check_envs.py venv ENV_YAML DIR     # a venv with exactly the env's pip list (reused if unchanged)
    python scripts/check_envs.py resolve ENV_YAML...   # pip resolves each env's pip list (dry run; needs the index)

Rule -> env -> command comes from Snakemake itself (the DAG of a dry run through its Python API, every job forced),
never from the .smk text, so a `conda:` that is a function of wildcards or config is seen as Snakemake resolves it.
What a subcommand needs is found statically: the imports of its target (the one library function cli.COMMANDS
names for it, with its module's top level and the module's functions it calls), then every import (module-level
or inside a function) of every quagmire module those reach, transitively. That over-approximates a
lazy import on a path the rule never takes; the exceptions are explicit in GATED (vllm, deepspeed: decided by the
job's own settings). Import names map to distributions through the installed metadata of this interpreter, and
an env provides a distribution when it pins it or when a pinned distribution requires it (installed metadata).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata as md
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
# together: every rule and env (the third plans the candidate rules, which neither study config has; the embedded
# study's per-model sampling jobs, eval.sample_jobs: per_model, are the fourth's alone)
DAG_CONFIGS = ("config/smoke_paper.yaml", "config/paper_llama3_nemotron.yaml", "config/examples/candidates_hub.yaml",
               "config/config.yaml")


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------------------------- jobs of a DAG


def dag_jobs(configfile: Path, workdir: Path) -> dict[str, Any]:
    """Every job of the study's DAG (all forced, so a finished workdir lists them too), in topological order, and
    the names of all rules of the workflow: {"rules": [...], "jobs": [{rule, env, shell, input, output, log}]}.

    Runs Snakemake in-process: call it in a fresh interpreter (`jobs` subcommand) once per config.
    """
    from quagmire.plan import built_dag

    # cores=1: the threads formatted into each job's command (the venv test runs them on this machine)
    with built_dag(configfile, workdir, forceall=True, snakefile=REPO / "Snakefile", cores=1) as workflow:
        jobs = []
        for level in workflow.dag.toposorted():
            for job in sorted(level, key=lambda j: (j.rule.name, sorted(map(str, j.output)))):
                spec = job.conda_env_spec
                env = None
                if spec is not None:
                    file = getattr(spec, "file", None)
                    env = (
                        os.path.normpath(file.get_path_or_uri(secret_free=True))
                        if file is not None
                        else f"unsupported:{spec}"
                    )
                jobs.append({
                    "rule": job.rule.name,
                    "env": env,
                    "shell": job.shellcmd,
                    "input": sorted(map(str, job.input)),
                    "output": sorted(map(str, job.output)),
                    "log": sorted(map(str, job.log)),
                })
        return {"rules": sorted(rule.name for rule in workflow.rules), "jobs": jobs}


def dag_jobs_subprocess(configfile: Path, workdir: Path) -> dict[str, Any]:
    """dag_jobs in a fresh interpreter (Snakemake keeps global state; one workflow per process)."""
    return dag_jobs_parallel([(configfile, workdir)])[0]


def dag_jobs_parallel(studies: list[tuple[Path, Path]]) -> list[dict[str, Any]]:
    """dag_jobs of several (configfile, workdir), each in its own interpreter, run side by side."""
    procs = []
    for configfile, workdir in studies:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        procs.append(subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "jobs", str(configfile), str(workdir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
        ))
    out = []
    for (configfile, _), proc in zip(studies, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"DAG of {configfile} failed ({proc.returncode}):\n{stderr[-4000:]}")
        out.append(json.loads(stdout.splitlines()[-1]))
    return out


QUAGMIRE_CALL = re.compile(r"(?:^|[\s;&|(])quagmire\s+([a-z][a-z-]*)")


def quagmire_calls(shell: str | None) -> list[list[str]]:
    """The argument lists of each `quagmire SUBCOMMAND ...` in a shell command (up to a redirection or `;`)."""
    if not shell:
        return []
    lexer = shlex.shlex(shell, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    tokens = list(lexer)
    calls, i = [], 0
    while i < len(tokens):
        if tokens[i] == "quagmire" and (i == 0 or tokens[i - 1] in {";", "&&", "||", "|", "(", "&"}):
            j = i + 1
            while j < len(tokens) and not set(tokens[j]) <= set(";&|<>()"):
                j += 1
            calls.append(tokens[i + 1 : j])
            i = j
        else:
            i += 1
    if len(calls) != len(QUAGMIRE_CALL.findall(shell)):
        raise ValueError(f"cannot parse the quagmire calls of: {shell}")
    return calls


def option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# --------------------------------------------------------------------------------------- imports of a command


def cli_functions() -> dict[str, str]:
    """Subcommand -> its target ("module:function", the one library function it calls), from cli.COMMANDS."""
    sys.path.insert(0, str(SRC))
    try:
        from quagmire.cli import COMMANDS
    finally:
        sys.path.remove(str(SRC))
    return {command.name: command.target for command in COMMANDS}


def _module_file(module: str) -> Path | None:
    """The source file of a quagmire module (a package's __init__.py), or None if it is not one."""
    base = SRC.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _guards_import_error(handlers: list[ast.ExceptHandler]) -> bool:
    names = set()
    for handler in handlers:
        for node in ast.walk(handler.type) if handler.type is not None else []:
            if isinstance(node, ast.Name):
                names.add(node.id)
    return bool(names & {"ImportError", "ModuleNotFoundError"})


@dataclass(frozen=True)
class Import:
    module: str  # the full dotted name imported (for `from a import b`: a, and a.b when that is a module)
    where: str  # file:line


def _imports(tree: ast.AST, filename: str, package: str) -> Iterable[Import]:
    """Imports under `tree`, except under `if TYPE_CHECKING:` and in `try: ... except ImportError` (optional)."""

    def visit(node: ast.AST) -> Iterable[Import]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (i for child in node.orelse for i in visit(child))
            return
        if isinstance(node, ast.Try) and _guards_import_error(node.handlers):
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                yield from visit(child)
            return
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, where)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield Import(base, where)
            for alias in node.names:
                if alias.name != "*" and _module_file(f"{base}.{alias.name}") is not None:
                    yield Import(f"{base}.{alias.name}", where)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


# Attribute calls that import a package without an import statement (pandas' parquet engine).
IMPLICIT = {"read_parquet": "pyarrow", "to_parquet": "pyarrow"}


def _implicit(tree: ast.AST, filename: str) -> Iterable[Import]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in IMPLICIT:
            yield Import(IMPLICIT[node.attr], f"{filename}:{node.lineno} (.{node.attr})")


@functools.cache
def _module_imports(module: str) -> tuple[Import, ...]:
    """Every import in a quagmire module (module-level and in functions) and its implicit ones."""
    path = _module_file(module)
    rel = str(path.relative_to(SRC))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    return (*_imports(tree, rel, package), *_implicit(tree, rel))


def _function_nodes(module: str, function: str) -> list[ast.AST]:
    """What importing `module` and calling `function` runs of the module's own code: its statements other than
    function definitions (class bodies included), the function, and the module's functions it names, transitively.
    """
    tree = ast.parse(_module_file(module).read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    if function not in functions:
        raise LookupError(f"{module} has no function {function!r}")
    nodes = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    todo, done = [function], set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        nodes.append(functions[name])
        todo += [n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name) and n.id in functions]
    return nodes


def command_imports(target: str) -> dict[str, list[str]]:
    """Third-party top-level import name -> where, for a subcommand's target "module:function" and what it reaches.

    cli.py counts with its module-level statements (its imports of a target are lazy); the target's module with its
    module-level statements, the target and the module's functions that it calls; every other quagmire module
    reached, whole. The target module's other functions' lazy imports do not run.
    """
    module, _, function = target.partition(":")
    path = _module_file(module)
    rel = str(path.relative_to(SRC))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    cli = ast.parse((SRC / "quagmire" / "cli.py").read_text())
    found = [imp for node in cli.body if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
             for imp in _imports(node, "quagmire/cli.py", "quagmire")]
    found += _module_imports("quagmire.__main__")
    found.append(Import(package, rel))  # importing the target's module runs its packages' __init__ first
    for node in _function_nodes(module, function):
        found += [*_imports(node, rel, package), *_implicit(node, rel)]
    seen = {"quagmire.cli", "quagmire.__main__"}
    third: dict[str, list[str]] = {}
    while found:
        imp = found.pop()
        top = imp.module.split(".")[0]
        if top != "quagmire":
            if top and top not in sys.stdlib_module_names:
                third.setdefault(top, []).append(imp.where)
            continue
        parts = imp.module.split(".")
        for n in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            name = ".".join(parts[:n])
            if name in seen or _module_file(name) is None:
                continue
            seen.add(name)
            found += _module_imports(name)  # a module another one imports counts whole (the target's too)
    return {name: sorted(set(where)) for name, where in sorted(third.items())}


# ------------------------------------------------------------------- gated imports: decided by a job's settings


def _settings(args: list[str]) -> dict[str, Any]:
    text = option(args, "--settings")
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}


def _uses_vllm(args: list[str]) -> bool:
    settings = _settings(args)
    return settings.get("backend") == "vllm" or bool(settings.get("use_vllm"))


def _uses_deepspeed(args: list[str]) -> bool:
    return option(args, "--sharding") == "zero3" and int(option(args, "--gpus") or 0) > 1


# Import name -> whether a job needs it, from the job's arguments. Needed: required even when no quagmire module
# imports it (TRL imports vllm for use_vllm; accelerate loads deepspeed for zero3). Not needed: a lazy import on
# the path the job does not take (eval/sampling.py imports vllm only for eval.backend vllm).
GATED: dict[str, Callable[[list[str]], bool]] = {"vllm": _uses_vllm, "deepspeed": _uses_deepspeed}


def job_needs(args: list[str], imports: dict[str, list[str]]) -> dict[str, list[str]]:
    """The import names a job with these quagmire arguments needs (gated names decided by its settings)."""
    needs = {name: where for name, where in imports.items() if name not in GATED}
    for name, needed in GATED.items():
        if needed(args):
            needs[name] = imports.get(name, ["(gated by the job's settings)"])
    return needs


# ------------------------------------------------------------------------------------------ import -> dists

# Distributions of import names that the checking interpreter does not have installed (GPU-only packages).
NOT_INSTALLED = {"vllm": "vllm", "deepspeed": "deepspeed"}


def distributions_of(name: str, mapping: dict[str, list[str]] | None = None) -> set[str]:
    mapping = md.packages_distributions() if mapping is None else mapping
    if name in mapping:
        return {normalize(d) for d in mapping[name]}
    if name in NOT_INSTALLED:
        return {normalize(NOT_INSTALLED[name])}
    raise LookupError(f"import {name!r}: no installed distribution provides it; add it to NOT_INSTALLED")


def requirements_closure(dists: Iterable[str]) -> set[str]:
    """The distributions and everything they require (installed metadata here, no extras), normalized."""
    from packaging.requirements import Requirement

    todo, done = [normalize(d) for d in dists], set()
    while todo:
        dist = todo.pop()
        if dist in done:
            continue
        done.add(dist)
        try:
            requires = md.requires(dist) or []
        except md.PackageNotFoundError:
            continue  # not installed here (vllm): counts as itself only
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(normalize(req.name))
    return done


# --------------------------------------------------------------------------------------------- env files

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([A-Za-z0-9.+!_-]+)$")


@dataclass
class Env:
    path: Path
    python: str | None
    channels: list[str]
    pins: dict[str, str]  # normalized name -> version
    pip_lines: list[str]
    problems: list[str] = field(default_factory=list)


def read_env(path: Path) -> Env:
    data = yaml.safe_load(Path(path).read_text())
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("dependencies"), list):
        return Env(Path(path), None, [], {}, [], [f"{path}: not a conda env file (no dependencies list)"])
    python, pip_lines = None, []
    for dep in data["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            pip_lines += [str(line) for line in dep["pip"]]
        elif isinstance(dep, str) and re.match(r"^python[=<> ]", dep):
            python = dep.split("=", 1)[1].strip("=")
    pins = {}
    for line in pip_lines:
        match = PIN.match(line.strip())
        if not match:
            problems.append(f"{path}: pip entry {line!r} is not an exact pin NAME==VERSION (no paths, no -e)")
            continue
        name = normalize(match.group(1))
        if name in pins:
            problems.append(f"{path}: {name} pinned twice")
        pins[name] = match.group(3)
    return Env(Path(path), python, list(data.get("channels") or []), pins, pip_lines, problems)


def requirements_pins(path: Path = REPO / "requirements.txt") -> dict[str, str]:
    pins = {}
    for line in Path(path).read_text().splitlines():
        match = PIN.match(line.split("#", 1)[0].strip())
        if match:
            pins[normalize(match.group(1))] = match.group(3)
    return pins


def missing(env: Env, needs: dict[str, list[str]], mapping: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Import name -> why, for each needed import that the env's pins (with their requirements) do not provide."""
    provided = requirements_closure(env.pins)
    out = {}
    for name, where in needs.items():
        dists = distributions_of(name, mapping)
        if not dists & provided:
            out[name] = f"{'/'.join(sorted(dists))} (imported at {', '.join(where[:3])})"
    return out


# ------------------------------------------------------------------------------------------- the whole check


@dataclass
class Finding:
    rule: str
    env: str | None
    command: str | None
    problem: str


def check_jobs(jobs: list[dict[str, Any]], envs: dict[str, Env] | None = None) -> list[Finding]:
    """Problems of the jobs' envs: a quagmire job without an env, an env job without a quagmire command, or a
    needed import the env does not provide. `envs` maps env paths to parsed envs (read from disk otherwise)."""
    envs = {} if envs is None else envs
    functions = cli_functions()
    mapping = md.packages_distributions()
    imports_of: dict[str, dict[str, list[str]]] = {}
    findings, seen = [], set()
    for job in jobs:
        calls = quagmire_calls(job["shell"])
        if not calls:
            if job["env"]:
                findings.append(Finding(job["rule"], job["env"], None, "has an env but runs no quagmire command"))
            continue
        if not job["env"]:
            findings.append(Finding(job["rule"], None, calls[0][0], "runs quagmire but has no conda env"))
            continue
        env = envs.get(job["env"]) or envs.setdefault(job["env"], read_env(Path(job["env"])))
        for args in calls:
            command = args[0]
            if command not in functions:
                findings.append(Finding(job["rule"], job["env"], command, "unknown quagmire subcommand"))
                continue
            if command not in imports_of:
                imports_of[command] = command_imports(functions[command])
            imports = imports_of[command]
            needs = job_needs(args[1:], imports)
            key = (job["rule"], job["env"], command, tuple(sorted(needs)))
            if key in seen:
                continue
            seen.add(key)
            for name, why in missing(env, needs, mapping).items():
                findings.append(Finding(job["rule"], job["env"], command, f"needs {name}: {why}"))
    return findings


def rule_table(jobs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(rule, env file name, subcommands) per rule and env, for reports."""
    rows = set()
    for job in jobs:
        commands = " ".join(sorted({c[0] for c in quagmire_calls(job["shell"])})) or "-"
        rows.add((job["rule"], Path(job["env"]).name if job["env"] else "-", commands))
    return sorted(rows)


# ------------------------------------------------------------------------------------------ throwaway venvs


def venv(env_file: Path, root: Path, python: str | None = None) -> Path:
    """A venv under `root` with exactly the env's pip list installed (reused when that list is unchanged).

    Returns its python. The venv does not see this interpreter's packages; jobs get quagmire via PYTHONPATH.
    """
    env = read_env(env_file)
    if env.problems:
        raise ValueError("; ".join(env.problems))
    stamp = hashlib.sha256("\n".join(env.pip_lines).encode()).hexdigest()[:16]
    folder = Path(root) / Path(env_file).stem
    bin_python = folder / "bin" / "python"
    marker = folder / f".installed-{stamp}"
    if marker.exists():
        return bin_python
    python = python or _base_python()
    subprocess.run([python, "-m", "venv", "--clear", str(folder)], check=True)
    subprocess.run(
        [str(bin_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *env.pip_lines],
        check=True,
    )
    marker.touch()
    return bin_python


def resolve(env_file: Path) -> subprocess.CompletedProcess:
    """pip's resolver on exactly the env's pip list, for this platform and Python (nothing is installed)."""
    env = read_env(env_file)
    if env.problems:
        raise ValueError("; ".join(env.problems))
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--disable-pip-version-check",
         *env.pip_lines],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
    )


def _base_python() -> str:
    """A Python 3.11 outside any venv (the env files pin python=3.11)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base) if base.exists() else sys.executable


def job_prefix(python: Path) -> str:
    """What rules/common.smk puts before every job's command, with the venv's interpreter first on PATH."""
    return (
        "set -euo pipefail; "
        f'export PATH={shlex.quote(str(Path(python).parent))}:"$PATH"; '
        f"export PYTHONPATH={shlex.quote(str(SRC))}; "
        'quagmire() { python -m quagmire "$@"; }; '
    )


def run_job(job: dict[str, Any], python: Path, workdir: Path) -> subprocess.CompletedProcess:
    """The job's real shell command in `workdir` with the venv's python, after removing its outputs."""
    import shutil

    for out in job["output"]:
        path = Path(workdir) / out
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for log in job["log"]:
        (Path(workdir) / log).parent.mkdir(parents=True, exist_ok=True)
    for out in job["output"]:
        (Path(workdir) / out).parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg")
    return subprocess.run(
        ["bash", "-c", job_prefix(python) + job["shell"]],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
    )


# --------------------------------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    if argv[:1] == ["jobs"]:
        print(json.dumps(dag_jobs(Path(argv[1]).resolve(), Path(argv[2]).resolve())))
        return 0
    if argv[:1] == ["venv"]:
        print(venv(Path(argv[1]), Path(argv[2])))
        return 0
    if argv[:1] == ["resolve"]:
        failed = 0
        for env_file in argv[1:]:
            result = resolve(Path(env_file))
            errors = [line for line in result.stdout.splitlines() if re.search(r"ERROR|conflict|depends on", line)]
            verdict = "resolves" if result.returncode == 0 else "DOES NOT RESOLVE"
            print(f"{env_file}: {verdict}", *errors[-12:], sep="\n")
            failed += result.returncode != 0
        return 1 if failed else 0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        studies = [(REPO / config, Path(tmp) / Path(config).stem) for config in DAG_CONFIGS]
        jobs = [job for dag in dag_jobs_parallel(studies) for job in dag["jobs"]]
    for rule, env, commands in rule_table(jobs):
        print(f"{rule:16} {env:14} {commands}")
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        for problem in read_env(env_file).problems:
            print(f"PROBLEM {problem}")
    findings = check_jobs(jobs)
    for f in findings:
        print(f"MISSING rule {f.rule} ({Path(f.env).name if f.env else '-'}, quagmire {f.command}): {f.problem}")
    print(f"{len(findings)} problem(s) in {len(jobs)} jobs")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
