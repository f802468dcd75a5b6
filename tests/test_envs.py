"""Per-rule conda envs (envs/*.yaml): each rule's env provides what its command imports, pins match
requirements.txt, and (slow, CI) throwaway venvs built from the small envs' pip lists run their rules' real commands.

Rule -> env -> command comes from Snakemake's own DAG of the smoke and the paper config (scripts/check_envs.py),
which together reach every rule. What is not tested here: conda solving the files (no conda on this machine; the
envs only use conda for python=3.11 and pip), the CUDA torch wheel, and the vllm/train/sample envs as installed
environments (their imports are checked statically; vLLM needs a GPU).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_envs", REPO / "scripts" / "check_envs.py")
check_envs = importlib.util.module_from_spec(_spec)
sys.modules["check_envs"] = check_envs
_spec.loader.exec_module(check_envs)

ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
# Pins that may differ from requirements.txt, and why.
ALLOWED_DEVIATIONS = {
    ("vllm.yaml", "transformers"): "vllm 0.31.0 requires transformers < 5.18",
}
# Envs whose shared dependencies follow another stack's ranges rather than requirements.txt.
UNPINNED_CLOSURE_OK = {"vllm.yaml": "vLLM's own ranges (numpy < 2.4 via mistral-common, huggingface_hub < 2.0)"}
SMALL_ENVS = ("grade", "analysis")  # built as venvs and run by the slow test


@pytest.fixture(scope="module")
def dags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Snakemake's DAG (every job forced) of each of check_envs.DAG_CONFIGS (smoke paper, paper study, candidates
    example), from scratch workdirs."""
    names = [Path(config).stem for config in check_envs.DAG_CONFIGS]
    studies = [(REPO / config, tmp_path_factory.mktemp(f"dag-{name}"))
               for config, name in zip(check_envs.DAG_CONFIGS, names, strict=True)]
    return dict(zip(names, check_envs.dag_jobs_parallel(studies), strict=True))


def _all_jobs(dags: dict[str, dict]) -> list[dict]:
    return [job for dag in dags.values() for job in dag["jobs"]]


# ------------------------------------------------------------------------------------------- env files


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_parses_and_pins_only_exact_versions(path: Path) -> None:
    env = check_envs.read_env(path)
    assert env.problems == []
    assert env.python == "3.11" and env.channels == ["conda-forge"]
    assert env.pins, f"{path.name}: no pip pins"
    assert not any(".." in line or "/" in line for line in env.pip_lines), "no path back to the repository"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_requirements_txt(path: Path) -> None:
    required = check_envs.requirements_pins()
    env = check_envs.read_env(path)
    differ = {
        name: (version, required[name])
        for name, version in env.pins.items()
        if name in required and version != required[name] and (path.name, name) not in ALLOWED_DEVIATIONS
    }
    assert differ == {}, f"{path.name} pins (env, requirements.txt): {differ}"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_every_requirements_txt_package_it_installs(path: Path) -> None:
    """What an env pulls in that requirements.txt pins is pinned in the env too: it resolves to the tested versions."""
    if path.name in UNPINNED_CLOSURE_OK:
        pytest.skip(UNPINNED_CLOSURE_OK[path.name])
    required = check_envs.requirements_pins()
    env = check_envs.read_env(path)
    unpinned = sorted((check_envs.requirements_closure(env.pins) & set(required)) - set(env.pins))
    assert unpinned == [], f"{path.name} installs but does not pin: {unpinned}"


def test_allowed_deviations_still_deviate() -> None:
    required = check_envs.requirements_pins()
    for (file, name), why in ALLOWED_DEVIATIONS.items():
        assert check_envs.read_env(REPO / "envs" / file).pins[name] != required[name], f"stale exception: {why}"


def test_an_editable_or_path_line_is_a_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"channels": ["conda-forge"], "dependencies": [
        "python=3.11", "pip", {"pip": ["numpy==2.4.6", "-e ..", "pandas>=2"]}]}))
    problems = check_envs.read_env(bad).problems
    assert len(problems) == 2 and "'-e ..'" in problems[0] and "'pandas>=2'" in problems[1]


# ------------------------------------------------------------------------------ imports of each command


def test_command_imports_follow_function_level_and_transitive_imports() -> None:
    functions = check_envs.cli_functions()
    assert functions["grade"] == "quagmire.eval.grading:grade_to_file"
    assert functions["base-model"] == "quagmire.train.base_model:fetch_base"
    filt = check_envs.command_imports(functions["filter"])
    assert "transformers" in filt and "datasets" in filt  # length filter's tokenizer; hub sources (lazy imports)
    assert any("quagmire/hf.py" in where for where in filt["transformers"])
    grade = check_envs.command_imports(functions["grade"])
    assert {"math_verify", "pandas", "pyarrow"} <= set(grade) and "torch" not in grade
    recipes = check_envs.command_imports(functions["recipes"])
    assert "torch" not in recipes and "matplotlib" not in recipes  # other subcommands' imports do not count
    assert "vllm" in check_envs.command_imports(functions["sample"])
    assert "scipy" in check_envs.command_imports(functions["predictors"])  # reached through the target's module
    sft = check_envs.command_imports(functions["sft"])  # run_sft, not run_grpo, of quagmire.train.launch
    assert "trl" in sft and "math_verify" not in sft
    assert "math_verify" in check_envs.command_imports(functions["grpo"])


def test_quagmire_calls_are_read_from_the_shell_command() -> None:
    shell = "quagmire grade --samples 'a b.parquet' --out x > log 2>&1; quagmire score --grades a=b --out y"
    assert check_envs.quagmire_calls(shell) == [
        ["grade", "--samples", "a b.parquet", "--out", "x"], ["score", "--grades", "a=b", "--out", "y"]]
    assert check_envs.quagmire_calls("touch x") == [] and check_envs.quagmire_calls(None) == []


def test_gated_imports_follow_the_job_settings() -> None:
    imports = {"pandas": ["x"], "vllm": ["sample.py"]}
    assert "vllm" not in check_envs.job_needs(["--settings", '{"backend": "hf"}'], imports)
    assert "vllm" in check_envs.job_needs(["--settings", '{"backend": "vllm"}'], imports)
    assert "vllm" in check_envs.job_needs(["--settings", '{"use_vllm": true}'], {})  # TRL imports it
    assert "deepspeed" in check_envs.job_needs(["--gpus", "8", "--sharding", "zero3"], {})
    assert "deepspeed" not in check_envs.job_needs(["--gpus", "8", "--sharding", "fsdp"], {})


# ------------------------------------------------------------------------------------ the DAGs' jobs


@pytest.mark.slow  # plans two whole DAGs (the fixture), ~4 s
def test_the_two_dags_reach_every_rule_and_env(dags: dict[str, dict]) -> None:
    rules = set().union(*(dag["rules"] for dag in dags.values()))
    reached = {job["rule"] for job in _all_jobs(dags)}
    assert rules - reached == set(), "rules reached by neither config: add a config to DAG_CONFIGS"
    used = {Path(job["env"]).resolve() for job in _all_jobs(dags) if job["env"]}
    assert used == {p.resolve() for p in ENV_FILES}, "an env file no rule uses, or an env outside envs/"


@pytest.mark.slow  # walks every rule's imports, ~4 s
def test_every_rule_env_provides_what_its_command_imports(dags: dict[str, dict]) -> None:
    findings = check_envs.check_jobs(_all_jobs(dags))
    report = "\n".join(f"rule {f.rule} ({f.env}, quagmire {f.command}): {f.problem}" for f in findings)
    assert findings == [], report


def _without(env_file: Path, *names: str) -> check_envs.Env:
    env = check_envs.read_env(env_file)
    drop = {check_envs.normalize(n) for n in names}
    env.pins = {k: v for k, v in env.pins.items() if k not in drop}
    return env


def test_a_missing_package_is_reported(dags: dict[str, dict]) -> None:
    """The check can fail: grade.yaml without math-verify (and what brings it) fails the grade rule. Only it:
    scoring reads the statuses from quagmire.statuses, not from the grading pool."""
    jobs = [job for job in _all_jobs(dags) if job["rule"] in {"grade", "score", "plot"}]
    grade_env = next(job["env"] for job in jobs if job["rule"] == "grade")
    envs = {grade_env: _without(Path(grade_env), "math-verify", "latex2sympy2_extended")}
    findings = check_envs.check_jobs(jobs, envs)
    assert {(f.rule, f.command) for f in findings} == {("grade", "grade")}
    assert all(f.problem.startswith("needs math_verify: math-verify") for f in findings)
    analysis_env = next(job["env"] for job in jobs if job["rule"] == "plot")
    findings = check_envs.check_jobs(jobs, {analysis_env: _without(Path(analysis_env), "matplotlib")})
    assert [f.problem.split(":")[0] for f in findings if f.rule == "plot"] == ["needs matplotlib"]


def test_a_vllm_job_in_an_env_without_vllm_is_reported(dags: dict[str, dict]) -> None:
    shard = next(job for job in dags["paper_llama3_nemotron"]["jobs"] if job["rule"] == "sample_shard")
    assert Path(shard["env"]).name == "vllm.yaml"
    moved = {**shard, "env": str(REPO / "envs" / "sample.yaml")}
    findings = check_envs.check_jobs([moved])
    assert [f.problem.split(":")[0] for f in findings] == ["needs vllm"]


def test_jobs_without_env_or_without_quagmire_are_reported() -> None:
    jobs = [
        {"rule": "x", "env": None, "shell": "quagmire grade --out y", "output": [], "input": [], "log": []},
        {"rule": "y", "env": str(REPO / "envs" / "grade.yaml"), "shell": "cp a b", "output": [], "input": [],
         "log": []},
    ]
    problems = [f.problem for f in check_envs.check_jobs(jobs)]
    assert problems == ["runs quagmire but has no conda env", "has an env but runs no quagmire command"]


# ------------------------------------------------- slow: venvs from the small envs run their real commands


def _venv_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("QUAGMIRE_ENV_VENVS")
    if root:
        return Path(root)
    if os.environ.get("CI") == "true":
        return tmp_path_factory.mktemp("env-venvs")
    pytest.skip("set QUAGMIRE_ENV_VENVS=<folder> to build venvs from envs/grade.yaml and envs/analysis.yaml "
                "(pip, about a minute with a warm cache) and run their rules' commands in them; CI=true always does")


def _hub_study(smoke_workdir: Path, folder: Path) -> Path:
    """A hub-data study on local files in the sources' formats (filter_sft, filter_rl and benchmark jobs)."""
    world = smoke_workdir / "results" / "smoke" / "data"
    sft, rl = pd.read_parquet(world / "sft.parquet"), pd.read_parquet(world / "rl.parquet")
    bench = pd.read_parquet(world / "benchmarks" / "addsub2.parquet")
    files = {"nemotron": folder / "nemotron.jsonl", "dsr": folder / "dsr.jsonl", "gsm8k": folder / "gsm8k.jsonl"}
    files["nemotron"].write_text("".join(
        json.dumps({"input": [{"role": "user", "content": p}], "output": r, "reasoning": "off"}) + "\n"
        for p, r in zip(sft["prompt"], sft["response"], strict=True)))
    files["dsr"].write_text("".join(json.dumps({"problem": p, "answer": a, "solution": ""}) + "\n"
                                    for p, a in zip(rl["prompt"], rl["answer"], strict=True)))
    files["gsm8k"].write_text("".join(json.dumps({"question": p, "answer": f"Add.\n#### {a}"}) + "\n"
                                      for p, a in zip(bench["prompt"], bench["answer"], strict=True)))
    config = {
        "study": "envhub",
        "data": {"source": "hub", "sft": {"name": "nemotron_math", "path": str(files["nemotron"])},
                 "rl": [{"name": "deepscaler", "path": str(files["dsr"])}], "heldout_size": 16,
                 "filters": {"max_tokens": 200}},
        "base_model": {"source": "hub", "path": str(smoke_workdir / "results" / "smoke" / "models" / "base")},
        "sft": {"recipes": {"random_n48_ep1": {"subset": "random", "n": 48, "epochs": 1, "dataset_level": True}}},
        "eval": {"benchmarks": {"gsm8k": {"path": str(files["gsm8k"])}}},
    }
    path = folder / "envhub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_small_envs_as_venvs_run_their_rules_commands(
    smoke_study: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Venvs with exactly the pip lists of grade.yaml and analysis.yaml (nothing else; quagmire via PYTHONPATH) run
    the real shell commands of their rules, as Snakemake formats them: grade, score, the tables and every figure
    from a copy of the finished smoke study, and benchmark, filter_sft, filter_rl of a hub-data study."""
    from dagrun import snakemake

    root = _venv_root(tmp_path_factory)
    started = time.monotonic()
    pythons = {name: check_envs.venv(REPO / "envs" / f"{name}.yaml", root) for name in SMALL_ENVS}
    built = time.monotonic() - started

    smoke_workdir, configfile = smoke_study
    work = tmp_path_factory.mktemp("envrun")
    shutil.copytree(smoke_workdir / "results", work / "results")
    selected = []
    smoke_jobs = check_envs.dag_jobs_subprocess(configfile, work)["jobs"]
    first = {"grade", "score"}  # many alike jobs: run one each; every analysis job runs
    for job in smoke_jobs:
        env = Path(job["env"]).stem if job["env"] else None
        if env == "analysis" or (job["rule"] in first and env == "grade"):
            first.discard(job["rule"])
            selected.append((work, job))

    hub_folder = tmp_path_factory.mktemp("envhub")
    hub_config = _hub_study(smoke_workdir, hub_folder)
    hub_work = hub_folder / "run"
    hub_jobs = [job for job in check_envs.dag_jobs_subprocess(hub_config, hub_work)["jobs"]
                if job["rule"] in {"benchmark", "filter_sft", "filter_rl"}]
    inputs = sorted({i for job in hub_jobs for i in job["input"] if not Path(i).is_absolute()})
    snakemake(hub_work, hub_config, *inputs)  # raw sources, tokenizer, benchmark: made by the main venv
    selected += [(hub_work, job) for job in hub_jobs]

    ran = {}
    for workdir, job in selected:
        env = Path(job["env"]).stem
        assert env in SMALL_ENVS, f"rule {job['rule']} moved to {job['env']}"
        result = check_envs.run_job(job, pythons[env], workdir)
        logs = "\n".join((workdir / log).read_text()[-2000:] for log in job["log"] if (workdir / log).exists())
        assert result.returncode == 0, f"rule {job['rule']} in the {env} venv:\n{result.stderr[-2000:]}\n{logs}"
        for out in job["output"]:
            assert (workdir / out).exists(), f"rule {job['rule']}: no {out}"
        ran[job["rule"]] = env
    assert set(ran) == {"grade", "score", "recipes_table", "tidy_table", "predictors", "findings", "rank", "plot",
                        "benchmark", "filter_sft", "filter_rl", "predictor_cost", "loss_along_sft_table",
                        "plot_loss_along_sft"}, ran
    assert len(pd.read_csv(work / "results" / "smoke" / "tables" / "predictors.csv")) > 0
    print(f"venvs ready in {built:.0f} s; {len(selected)} jobs ran in {time.monotonic() - started - built:.0f} s")
