# Shared helpers: config validation (before any job starts), the studies of this run, paths, and param builders.
# Rules stay thin; everything here is naming and wiring, no study logic (that is in quagmire.studies/config).
#
# One DAG for any number of studies: every path has a {study} wildcard, and every setting a rule needs is looked
# up in that study's validated config (STUDIES[wildcards.study]). A study config is a run of one study; a paper
# config (`studies:`, config/paper.yaml) runs several, plus paper-level outputs under results/<paper>/.
import json
import os
import re
import shlex
import sys
from functools import partial
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

# ==== Side effects on an environment: this is the only block in rules/ and the Snakefile that has any ==========
# (tests/test_workflow_rules.py checks that os.environ, sys.path, PATH, PYTHONPATH and shell.prefix appear nowhere
# else). Everything outside it is naming and wiring. It loads the run too, because (5) depends on the studies.
#
# (1) This Snakemake process imports quagmire from this checkout's src/: a checkout works before `pip install -e .`,
#     and a second checkout (a worktree) plans with its own code, not the one the venv's editable install names.
_SRC = Path(workflow.basedir).resolve() / "src"
sys.path.insert(0, str(_SRC))
from quagmire.errors import QuagmireError  # noqa: E402
from quagmire.studies import load_run  # noqa: E402

try:
    RUN = load_run(
        config,
        source="the merged config (config/config.yaml or --configfile, and --config)",
        search=[workflow.basedir],
        files=workflow.configfiles,
    )
except QuagmireError as _err:
    raise WorkflowError(str(_err)) from None
STUDIES = RUN.studies
PAPER = RUN.paper  # None for a single study

# (2) Every job imports quagmire from the same src/ (PYTHONPATH) and `quagmire` is `python -m quagmire`, so a
#     conda env only pins third-party packages: Snakemake copies env files into .snakemake/conda/ before creating
#     them, where no relative path back to this repository would resolve.
_job_env = (
    "set -euo pipefail; "
    f'export PYTHONPATH="{_SRC}${{PYTHONPATH:+:$PYTHONPATH}}"; '
    'quagmire() { python -m quagmire "$@"; }; '
)
# (3) Without --sdm conda, `python` is the interpreter running Snakemake (the .venv of scripts/setup.sh), whatever
#     the caller's PATH.
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    _job_env += f'export PATH="{os.path.dirname(sys.executable)}:$PATH"; '
shell.prefix(_job_env.replace("{", "{{").replace("}", "}}"))  # Snakemake formats the prefix
# (4) Jobs inherit this process's environment: no tokenizers thread pool in jobs that later fork worker
#     processes (grading, filters), where it warns and can deadlock.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# (5) When nothing is to be downloaded (every input built in the DAG or a local file), jobs run offline, so a
#     stray hub call fails at once instead of hanging on a cluster node without network.
if not any(study.reads_hub for study in STUDIES.values()):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# (6) A local run starts the warm-start server (quagmire.warm_start): each job forks from one process that has
#     imported torch, transformers and TRL once, instead of spending ~6 s importing them itself; what a job computes
#     is the same either way. Not for cluster, touch or dry runs, nor with any --sdm (another interpreter);
#     QUAGMIRE_WARM_START=0 turns it off. The server gets the environment a job gets (PYTHONPATH as in (2), the
#     thread variables Snakemake sets for a job of the first study's `threads`); a job that differs runs cold.
import quagmire.warm_start as _warm_start  # noqa: E402

_WARM_SERVER = _warm_start.Server(log_path="logs/warm_start.log")


def _start_warm_server():
    if not (
        workflow.local_exec
        and workflow.is_main_process
        and not workflow.touch
        and not workflow.deployment_settings.deployment_method  # conda, apptainer, env modules: another python
        and _warm_start.enabled()
    ):
        return
    threads = next(iter(STUDIES.values())).config["threads"]
    env = _warm_start.job_environment(os.environ, _SRC, threads)
    os.environ[_warm_start.SOCKET_ENV] = _WARM_SERVER.start(env)


onstart:
    _start_warm_server()


onsuccess:
    _WARM_SERVER.stop()


onerror:
    _WARM_SERVER.stop()


# ==== end of the side-effect block ===========================================================================

from quagmire.config import (  # noqa: E402
    filter_job_settings,
    grpo_job_settings,
    recipe_table_settings,
    sft_checkpointing,
    sft_job_settings,
    subset_name,
)

R = "results/{study}"
LOGS = "logs/{study}"
POOLS = ["sft", "heldout", "rl"]
SAMPLING_KEYS = (
    "n", "temperature", "top_p", "max_new_tokens", "seed", "prompts_per_call",
    "backend", "tensor_parallel_size", "prompt_template", "instruction",
)


def one_of(names):
    """A wildcard pattern matching exactly `names` (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in sorted(set(names))) if names else "(?!)"


# Which studies each variant of a stage serves (world or hub data, embedded or hub model): the rules of both
# variants are always defined, each constrained to its studies by the {study} wildcard, so no rule is defined under
# an `if` and one DAG mixes studies of both kinds. Sampling has no variants (rules/eval.smk).
WORLD_STUDIES = one_of(RUN.where(lambda s: not s.hub_data))
HUB_DATA_STUDIES = one_of(RUN.where(lambda s: s.hub_data))
EMBEDDED_MODEL_STUDIES = one_of(RUN.where(lambda s: not s.hub_model))
HUB_MODEL_STUDIES = one_of(RUN.where(lambda s: s.hub_model))
WORLD_BENCHMARK_NAMES = one_of([b for s in STUDIES.values() for b in s.world_benchmarks])
REAL_BENCHMARK_NAMES = one_of([b for s in STUDIES.values() for b in s.real_benchmarks])
FIGURE_NAMES = one_of([f for s in STUDIES.values() for f in s.config["plots"]["figures"]])
CANDIDATE_NAMES = one_of([c for s in STUDIES.values() for c in s.candidates])
RECIPE_NAMES = one_of([r for s in STUDIES.values() for r in s.recipes])
# genloss/<name>.json has one producer: loss_along_sft for a recipe, genloss for a candidate. Within a study the
# config check keeps the names apart; across the studies of one DAG, so does this.
_SHARED_NAMES = sorted(
    {c for s in STUDIES.values() for c in s.candidates} & {r for s in STUDIES.values() for r in s.recipes}
)
if _SHARED_NAMES:
    raise WorkflowError(
        f"{_SHARED_NAMES[0]!r} is a candidate in one study and an SFT recipe in another; give one of them another "
        "name (their genloss files would share a rule pattern)"
    )
HELDOUT_SET_NAMES = one_of([h for s in STUDIES.values() for h in s.heldout_sets])


wildcard_constraints:
    study=one_of(STUDIES),
    paper=one_of([PAPER] if PAPER else []),
    recipe=r"[A-Za-z0-9_]+",
    run=r"[A-Za-z0-9_]+",
    stage=r"base|sft|rl|candidate",
    benchmark=r"[A-Za-z0-9_.-]+",
    strategy=r"random|shortest|longest|mix",
    n=r"\d+",


def as_json(obj):
    """Params are JSON strings: what a job runs with is visible in the shell command and its log."""
    return json.dumps(obj, sort_keys=True)


def study_config(wildcards):
    return STUDIES[wildcards.study].config


def per_study(value_of):
    """A setting of a rule, from each study's config by `value_of(config)`. The plain value when every study of the
    run agrees, else a function of the job's study. Plain values are cheaper to plan: Snakemake inspects and calls
    a function once per job (3,000 jobs for the paper)."""
    values = [value_of(study.config) for study in STUDIES.values()]
    if all(value == values[0] for value in values):
        return values[0]
    return lambda wildcards: value_of(study_config(wildcards))


def _at(config, keys):
    for key in keys:
        config = config[key]
    return config


def setting(*keys):
    """A params/threads/resources value: the study's config value at `keys` (e.g. setting("eval", "n"))."""
    return per_study(partial(_at, keys=keys))


def setting_json(*keys):
    return lambda wildcards: as_json(setting(*keys)(wildcards))


# ---- scheduler requests ------------------------------------------------------------------------------------
RESOURCE_KEYS = ("mem_mb", "runtime", "gpu", "gpu_model", "cpus_per_task", "slurm_partition", "slurm_extra")


def _default_resource(key):
    """The --default-resources value of `key` (the profile's slurm_partition, slurm_account, ...), if plain."""
    default = workflow.resource_settings._parsed_default_resources.get(key)
    try:
        value = default.value if default is not None else None
    except Exception:  # an expression evaluated per job: not resolvable here
        return None
    return value if isinstance(value, (int, str)) else None


def _family_resource(family, key, wildcards):
    value = study_config(wildcards)["resources"][family].get(key)
    return _default_resource(key) if value is None else value


def job_resources(family, **extra):
    """The scheduler request of a job family (data, train, rl, sample, grade, genloss, analysis), from the study's
    config, plus `extra` operational knobs. Resources, unlike params, never rerun a job, so operational knobs
    (checkpoint cadence, vLLM's memory share) travel here: they change how a job runs, never its result.

    A key no study sets is left to --default-resources (the profile); one that only some studies set falls back
    to it for the others."""
    resources = {}
    for key in RESOURCE_KEYS:
        values = [study.config["resources"][family].get(key) for study in STUDIES.values()]
        if all(value is None for value in values):
            continue
        same = all(value == values[0] for value in values)
        resources[key] = values[0] if same else partial(_family_resource, family, key)
    return {**resources, "family": family, **extra}  # family: named in `quagmire plan`, ignored by schedulers


# ---- paths -------------------------------------------------------------------------------------------------
def study_path(*parts):
    """A path function: results/<study>/<parts...> for the job's study."""
    return lambda wildcards: STUDIES[wildcards.study].path(*parts)


def model_dir(wildcards):
    """The checkpoint folder an evaluation reads: base model, SFT recipe, GRPO run, or a candidate brought in."""
    if wildcards.stage == "base":
        return f"results/{wildcards.study}/models/base"
    if wildcards.stage == "candidate":
        return f"results/{wildcards.study}/candidates/{wildcards.run}"
    return f"results/{wildcards.study}/{wildcards.stage}/{wildcards.run}"


# ---- candidates the study did not train (`candidates:`) -----------------------------------------------------
def candidate_settings(wildcards):
    """Where candidate {candidate}'s weights come from (its local folder, or hub id and revision)."""
    entry = study_config(wildcards)["candidates"][wildcards.candidate]
    return as_json({k: v for k, v in entry.items() if k in ("hub_id", "revision", "path")})


def heldout_set_entry(wildcards):
    return STUDIES[wildcards.study].heldout_sets[wildcards.heldout_set]


def heldout_set_input(wildcards):
    return local_file(heldout_set_entry(wildcards))


def heldout_set_settings(wildcards):
    return as_json(heldout_set_entry(wildcards))


def heldout_set_where(wildcards):
    """The first candidate entry that names held-out set {heldout_set}, as error messages name it."""
    study = STUDIES[wildcards.study]
    first = next(c for c in study.candidates if study.candidate_heldout(c) == wildcards.heldout_set)
    return f"candidates.{first}.heldout"


def heldout_file(study, run):
    """The held-out split a run's generalization loss is measured on: the study's, or a candidate's own set."""
    if run in study.candidates and study.candidate_heldout(run) in study.heldout_sets:
        return study.path("data", "heldout_sets", f"{study.candidate_heldout(run)}.parquet")
    return study.path("data", "heldout.parquet")


def genloss_model(wildcards):
    """The checkpoint a genloss job reads: the candidate {recipe} (a recipe's genloss comes with its loss along
    SFT)."""
    return STUDIES[wildcards.study].path("candidates", wildcards.recipe)


def genloss_heldout(wildcards):
    return heldout_file(STUDIES[wildcards.study], wildcards.recipe)


def calibration_input(wildcards):
    """The ranking's CSV of post-RL scores measured outside the DAG, if the study gives one."""
    path = study_config(wildcards)["analysis"]["rank"].get("calibration_csv")
    return [path] if path else []


def rl_parent(wildcards):
    """GRPO starts from an SFT checkpoint, or from the base model for the run named 'base'."""
    if wildcards.run == "base":
        return f"results/{wildcards.study}/models/base"
    return f"results/{wildcards.study}/sft/{wildcards.run}"


def subset_file(wildcards):
    recipe = study_config(wildcards)["sft"]["recipes"][wildcards.recipe]
    return f"results/{wildcards.study}/data/subsets/{subset_name(recipe)}.parquet"


def benchmark_files(wildcards):
    """Every benchmark file of the study, in its sorted benchmark order."""
    study = STUDIES[wildcards.study]
    return [study.path("data", "benchmarks", f"{b}.parquet") for b in study.benchmarks]


def benchmark_pairs(key):
    """A params function: NAME=PATH for each benchmark, from the input named `key` (listed in benchmark order)."""

    def pairs(wildcards, input):
        names = STUDIES[wildcards.study].benchmarks
        return " ".join(f"{b}={p}" for b, p in zip(names, input[key], strict=True))

    return pairs


def rl_raw_files(wildcards):
    study = STUDIES[wildcards.study]
    return [study.path("data", "raw", f"rl-{name}.parquet") for name in study.rl_sources]


def sft_raw_file(wildcards):
    study = STUDIES[wildcards.study]
    return study.path("data", "raw", f"sft-{study.sft_source}.parquet")


def source_where(wildcards):
    """The config entry a raw source file comes from, as error messages name it."""
    if wildcards.kind == "sft":
        return "data.sft"
    return f"data.rl[{STUDIES[wildcards.study].rl_sources.index(wildcards.name)}]"


def source_entry(wildcards):
    """The data.sft or data.rl entry that the raw file {kind}-{name} is read from."""
    data = study_config(wildcards)["data"]
    if wildcards.kind == "sft":
        return data["sft"]
    return data["rl"][STUDIES[wildcards.study].rl_sources.index(wildcards.name)]


def local_file(entry):
    """The local file a config entry reads (an input: a changed file reruns its chain); nothing for the hub."""
    return [entry["path"]] if entry.get("path") else []


def source_input(wildcards):
    return local_file(source_entry(wildcards))


def source_settings(wildcards):
    return as_json(source_entry(wildcards))


def benchmark_entry(wildcards):
    return study_config(wildcards)["eval"]["benchmarks"][wildcards.benchmark]


def benchmark_source(wildcards):
    return local_file(benchmark_entry(wildcards))


def benchmark_settings(wildcards):
    return as_json(benchmark_entry(wildcards))


def shard_files(wildcards):
    """The sample shards a grade job joins: 0..k-1 of the study's eval.shards (one file when k = 1), written by
    `sample_shard` (per benchmark) or `sample_model_shard` (per model: eval.sample_jobs)."""
    study = STUDIES[wildcards.study]
    k = study.shards
    folder = f"results/{wildcards.study}/eval/{wildcards.stage}/{wildcards.run}"
    if study.sample_per_model:
        return [f"{folder}/model_shards/{i}-of-{k}.samples.parquet" for i in range(k)]
    return [f"{folder}/shards/{wildcards.benchmark}.{i}-of-{k}.samples.parquet" for i in range(k)]


def grade_files(wildcards):
    study = STUDIES[wildcards.study]
    return [study.path("eval", wildcards.stage, wildcards.run, f"{b}.grades.parquet") for b in study.benchmarks]


# ---- params: exactly what each job consumes ----------------------------------------------------------------
def world_settings(wildcards):
    config = study_config(wildcards)
    return as_json({"world": config["world"], "seed": config["seed"]})


def sampling_settings(wildcards):
    """A function, not a string: a prompt template's braces ("{prompt}") must not be read as wildcards."""
    return as_json({k: study_config(wildcards)["eval"][k] for k in SAMPLING_KEYS})


def sft_settings(wildcards):
    return as_json(sft_job_settings(study_config(wildcards), wildcards.recipe))


def sft_save(key):
    """An SFT job's checkpoint cadence (operational: a resource, not a param)."""
    return lambda wildcards: sft_checkpointing(study_config(wildcards), wildcards.recipe)[key]


def grpo_settings(wildcards):
    return as_json(grpo_job_settings(study_config(wildcards)))


def filter_settings(wildcards):
    return as_json(filter_job_settings(study_config(wildcards)))


def recipes_settings(wildcards):
    """Per recipe, what the recipes table lists (subset, size, epochs, lr, comparison labels)."""
    return as_json(recipe_table_settings(study_config(wildcards)))


def base_model_settings(wildcards):
    model = study_config(wildcards)["base_model"]
    return as_json({k: v for k, v in model.items() if k in ("hub_id", "revision", "path")})


def pretrain_settings(wildcards):
    config = study_config(wildcards)
    model = {k: v for k, v in config["base_model"].items() if k not in ("source", "pretrain")}
    return as_json({"model": model, "pretrain": config["base_model"]["pretrain"], "seed": config["seed"]})


def predictor_settings(wildcards):
    """Only the analysis keys the predictors read, and the study's seed: a key added for another table (the
    ranking's, the predictor cost table's) must not rerun them."""
    config = study_config(wildcards)
    return as_json({**{k: config["analysis"][k] for k in ("k_large", "n_splits")}, "seed": config["seed"]})


def plot_settings(wildcards):
    return as_json({k: v for k, v in study_config(wildcards)["plots"].items() if k != "figures"})


def metrics_files(wildcards):
    study = STUDIES[wildcards.study]
    return [study.path("eval", stage, run, "metrics.json") for stage, run in study.evaluated_models]


def metrics_pairs(wildcards):
    study = STUDIES[wildcards.study]
    return " ".join(
        f"{stage}:{run}={study.path('eval', stage, run, 'metrics.json')}" for stage, run in study.evaluated_models
    )


def genloss_files(wildcards):
    study = STUDIES[wildcards.study]
    return [study.path("genloss", f"{run}.json") for run in study.recipes + study.candidates]


def genloss_pairs(wildcards):
    """RUN=PATH per recipe; candidate:RUN:SET=PATH per candidate (SET: the held-out set its loss is on)."""
    study = STUDIES[wildcards.study]
    pairs = [f"{recipe}={study.path('genloss', f'{recipe}.json')}" for recipe in study.recipes]
    pairs += [f"candidate:{c}:{study.candidate_heldout(c)}={study.path('genloss', f'{c}.json')}"
              for c in study.candidates]
    return " ".join(pairs)


def along_files(wildcards):
    """Every recipe's loss-along-SFT CSV, in recipe order."""
    study = STUDIES[wildcards.study]
    return [study.path("along_sft", f"{recipe}.csv") for recipe in study.recipes]


def along_benchmark_files(wildcards):
    """The benchmarks a loss-along-SFT job samples: all of the study's, none when along_sft.n is 0."""
    return benchmark_files(wildcards) if study_config(wildcards)["along_sft"]["n"] else []


def along_benchmark_pairs(wildcards, input):
    study = STUDIES[wildcards.study]
    names = study.benchmarks if input.benchmarks else []
    return " ".join(f"{b}={p}" for b, p in zip(names, input.benchmarks, strict=True))


def along_settings(wildcards):
    """What a loss-along-SFT job consumes: along_sft.n, .problems and .prompts_per_call, the genloss settings, the
    eval sampling keys it uses (not eval.n, .prompts_per_call, .backend or the shard count) and the grading timeout."""
    config = study_config(wildcards)
    keys = ("temperature", "top_p", "max_new_tokens", "seed", "prompt_template", "instruction")
    return as_json({
        "n": config["along_sft"]["n"],
        "problems": config["along_sft"]["problems"],
        "genloss": config["genloss"],
        "sampling": {
            **{k: config["eval"][k] for k in keys}, "prompts_per_call": config["along_sft"]["prompts_per_call"]
        },
        "grading_timeout_s": config["eval"]["grading_timeout_s"],
    })


def sft_grade_files(wildcards):
    """Every post-SFT grades file of the study: recipe by recipe, each in benchmark order."""
    study = STUDIES[wildcards.study]
    return [study.path("eval", "sft", r, f"{b}.grades.parquet") for r in study.recipes for b in study.benchmarks]


def sft_grade_pairs(wildcards):
    """RUN/BENCHMARK=PATH for each post-SFT grades file (as `quagmire predictor-cost --grades` reads them)."""
    study = STUDIES[wildcards.study]
    return " ".join(
        f"{r}/{b}={study.path('eval', 'sft', r, f'{b}.grades.parquet')}" for r in study.recipes for b in study.benchmarks
    )


def recipe_rl_dirs(wildcards):
    """The GRPO run folder of every SFT recipe (each holds its train_stats.json); GRPO from the base is not one."""
    study = STUDIES[wildcards.study]
    return [study.path("rl", r) for r in study.recipes]


def recipe_rl_pairs(wildcards):
    study = STUDIES[wildcards.study]
    return " ".join(f"{r}={study.path('rl', r)}" for r in study.recipes)


def predictor_cost_settings(wildcards):
    """What the predictor cost table reads: the analysis section (less the ranking's own settings), the seed, and
    the GRPO batch (its RL cost)."""
    config = study_config(wildcards)
    rl = {k: config["rl"][k] for k in ("prompts_per_step", "group_size", "format_reward")}
    analysis = {k: v for k, v in config["analysis"].items() if k != "rank"}
    return as_json({**analysis, "seed": config["seed"], **rl})


# ---- envs --------------------------------------------------------------------------------------------------
# vLLM pins its own transformers: sampling with eval.backend vllm and GRPO with rl.use_vllm run in envs/vllm.yaml.
SAMPLE_ENV = per_study(lambda c: "../envs/vllm.yaml" if c["eval"]["backend"] == "vllm" else "../envs/sample.yaml")
GRPO_ENV = per_study(lambda c: "../envs/vllm.yaml" if c["rl"]["use_vllm"] else "../envs/train.yaml")


# ---- paper level -------------------------------------------------------------------------------------------
def paper_resources():
    """Paper-level jobs are small local ones: they ask for what the first study's analysis jobs ask for."""
    first = next(iter(STUDIES.values()))
    request = {k: v for k, v in first.config["resources"]["analysis"].items() if k in ("mem_mb", "runtime")}
    return {**request, "family": "analysis"}


def paper_plot_settings(wildcards):
    """A function like plot_settings: a JSON string given as a plain param would be read for wildcards."""
    return as_json({k: v for k, v in RUN.plots.items() if k != "figures"})


def paper_study_files(name):
    """Each study's `tables/<name>`, in the paper config's order (the order of the paper tables' rows)."""
    return [study.path("tables", name) for study in STUDIES.values()]


def paper_study_pairs(wildcards, input):
    return " ".join(f"{name}={path}" for name, path in zip(STUDIES, input.predictors, strict=True))


def paper_quality_pairs(wildcards, input):
    return " ".join(f"{name}={path}" for name, path in zip(STUDIES, input.quality, strict=True))


def paper_labels(wildcards):
    """NAME=LABEL for each study with a `label`, quoted for the shell (labels have spaces)."""
    return " ".join(
        shlex.quote(f"{name}={study.config['label']}") for name, study in STUDIES.items() if "label" in study.config
    )


# ---- snakemake --report ------------------------------------------------------------------------------------
# Outputs a reader wants are wrapped in Snakemake's report() flag: a caption (report/*.rst), a category and labels,
# looked up in quagmire.report. A flag changes no job: the same jobs run and every output keeps its path and bytes.
import quagmire.report as report_layout  # noqa: E402


def study_title(wildcards):
    """A study's subcategory in the report: its label (as the paper tables name it), else its name."""
    return STUDIES[wildcards.study].config.get("label", wildcards.study)


def in_report(path, output, subcategory=study_title, **extra):
    """`path` flagged for the report as one `output` of quagmire.report.OUTPUTS (caption, category, labels).

    Its file label is the path under the study's (or paper's) folder, wildcards filled in per job. `extra` goes
    to report() as is: `patterns` picks files of a directory output, and needs a wildcard of its own to match
    anything (Snakemake globs it), e.g. "train_{record}.json" for train_stats.json."""
    entry = report_layout.OUTPUTS[output]
    file = str(path).split("/", 2)[2]  # results/<study or paper>/<file>
    if extra.get("patterns"):
        file = f"{file}/{extra['patterns'][0]}"
    return report(
        path,
        caption=f"../report/{entry.caption}",  # relative to rules/, where every rule is defined
        category=entry.category,
        subcategory=subcategory,
        labels=report_layout.labels(output, file),
        **extra,
    )


def figure_in_report(path):
    """A `plot` job's figure flagged for the report: category and caption section by its {figure} wildcard."""
    return report(
        path,
        caption=f"../report/{report_layout.FIGURE_CAPTION}",
        category=report_layout.figure_category,
        subcategory=study_title,
        labels=report_layout.figure_labels,
    )
