# Shared helpers: config validation (before any job starts), paths, and param builders.
# Rules stay thin; everything here is naming and wiring, no study logic.
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # a checkout works even before `pip install -e .`
from quagmire.config import recipe_settings, subset_name, validate_config  # noqa: E402
from quagmire.errors import QuagmireError  # noqa: E402

try:
    _resolved = validate_config(config, source="the merged config (config/config.yaml and --configfile/--config)")
except QuagmireError as _err:
    raise WorkflowError(str(_err)) from None
config.clear()
config.update(_resolved)
validate(config, Path(workflow.basedir) / "config" / "schema.yaml", set_default=True)

# ---- The environment of every job: the one block with side effects on how jobs run -------------------------
# Every job imports quagmire from this checkout's src/ (PYTHONPATH) and `quagmire` is `python -m quagmire`, so a
# conda env only pins third-party packages: Snakemake copies env files into .snakemake/conda/ before creating
# them, where no relative path back to this repository would resolve. Without --use-conda, `python` is the
# interpreter running Snakemake (the .venv of scripts/setup.sh), whatever the caller's PATH.
_job_env = (
    "set -euo pipefail; "
    f'export PYTHONPATH="{Path(workflow.basedir).resolve() / "src"}${{PYTHONPATH:+:$PYTHONPATH}}"; '
    'quagmire() { python -m quagmire "$@"; }; '
)
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    _job_env += f'export PATH="{os.path.dirname(sys.executable)}:$PATH"; '
shell.prefix(_job_env.replace("{", "{{").replace("}", "}}"))  # Snakemake formats the prefix
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Nothing to download (every input is built in the DAG or a local file): jobs run offline, so a stray hub call fails
# at once instead of hanging on a cluster node without network.
_hub_inputs = [config["base_model"], *config["eval"]["benchmarks"].values()]
if config["data"]["source"] == "hub":
    _hub_inputs += [config["data"]["sft"], *config["data"]["rl"]]
if not any(entry.get("source", "hub") == "hub" and "path" not in entry for entry in _hub_inputs):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

STUDY = config["study"]
R = f"results/{STUDY}"
LOGS = f"logs/{STUDY}"
# Sorted: reordering keys in a config file must not change any job's params (and so rerun it).
RECIPES = sorted(config["sft"]["recipes"])
RL_RUNS = RECIPES + (["base"] if config["rl"]["from_base"] else [])
HUB_DATA = config["data"]["source"] == "hub"
WORLD_BENCHMARKS = [] if HUB_DATA else sorted(config["world"]["benchmarks"])
REAL_BENCHMARKS = sorted(config["eval"]["benchmarks"])  # registry benchmarks: local files or pinned hub datasets
BENCHMARKS = sorted(WORLD_BENCHMARKS + REAL_BENCHMARKS)
SHARDS = config["eval"]["shards"]
SFT_SOURCE = config["data"]["sft"]["name"] if HUB_DATA else None
RL_SOURCES = [entry["name"] for entry in config["data"]["rl"]] if HUB_DATA else []
POOLS = ["sft", "heldout", "rl"]
FIGURES = config["plots"]["figures"]
SAMPLING_KEYS = (
    "n", "temperature", "top_p", "max_new_tokens", "seed", "prompts_per_call",
    "backend", "tensor_parallel_size", "prompt_template", "instruction",
)


wildcard_constraints:
    recipe=r"[A-Za-z0-9_]+",
    run=r"[A-Za-z0-9_]+",
    stage=r"base|sft|rl",
    benchmark=r"[A-Za-z0-9_.-]+",
    strategy=r"random|shortest|longest|mix",
    n=r"\d+",


def as_json(obj):
    """Params are JSON strings: what a job runs with is visible in the shell command and its log."""
    return json.dumps(obj, sort_keys=True)


def model_dir(wildcards):
    """The checkpoint folder an evaluation reads: base model, SFT recipe, or GRPO run."""
    if wildcards.stage == "base":
        return f"{R}/models/base"
    return f"{R}/{wildcards.stage}/{wildcards.run}"


def rl_parent(wildcards):
    """GRPO starts from an SFT checkpoint, or from the base model for the run named 'base'."""
    return f"{R}/models/base" if wildcards.run == "base" else f"{R}/sft/{wildcards.run}"


def subset_file(wildcards):
    recipe = config["sft"]["recipes"][wildcards.recipe]
    return f"{R}/data/subsets/{subset_name(recipe)}.parquet"


SAMPLE_ENV = "../envs/vllm.yaml" if config["eval"]["backend"] == "vllm" else "../envs/sample.yaml"
GRPO_ENV = "../envs/vllm.yaml" if config["rl"]["use_vllm"] else "../envs/train.yaml"


def job_resources(family):
    """The scheduler request of a job family (data, train, rl, sample, grade, genloss, analysis) from the config."""
    return dict(config["resources"][family])


def one_of(names):
    """A wildcard pattern matching exactly `names` (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def benchmark_pairs(key):
    """A params function: NAME=PATH for each benchmark, from the input named `key` (listed in BENCHMARKS order)."""
    return lambda wildcards, input: " ".join(f"{b}={p}" for b, p in zip(BENCHMARKS, input[key], strict=True))


def source_where(wildcards):
    """The config entry a raw source file comes from, as error messages name it."""
    return "data.sft" if wildcards.kind == "sft" else f"data.rl[{RL_SOURCES.index(wildcards.name)}]"


def source_entry(wildcards):
    """The data.sft or data.rl entry that the raw file {kind}-{name} is read from."""
    if wildcards.kind == "sft":
        return config["data"]["sft"]
    return config["data"]["rl"][RL_SOURCES.index(wildcards.name)]


def local_file(entry):
    """The local file a config entry reads (an input: a changed file reruns its chain); nothing for the hub."""
    return [entry["path"]] if entry.get("path") else []


def source_input(wildcards):
    return local_file(source_entry(wildcards))


def source_settings(wildcards):
    return as_json(source_entry(wildcards))


def benchmark_source(wildcards):
    return local_file(config["eval"]["benchmarks"][wildcards.benchmark])


def benchmark_settings(wildcards):
    return as_json(config["eval"]["benchmarks"][wildcards.benchmark])


def sampling_settings(wildcards):
    """A function, not a string: a prompt template's braces ("{prompt}") must not be read as wildcards."""
    return as_json({k: config["eval"][k] for k in SAMPLING_KEYS})


def sft_settings(wildcards):
    return as_json(recipe_settings(config, wildcards.recipe))


def evaluated_models():
    """(stage, run) of every evaluated model: the base, each SFT recipe, each GRPO run."""
    return [("base", "base")] + [("sft", r) for r in RECIPES] + [("rl", r) for r in RL_RUNS]


def final_outputs():
    return [
        f"{R}/tables/tidy.csv",
        f"{R}/tables/predictors.csv",
        *[f"{R}/figures/{name}.{config['plots']['format']}" for name in FIGURES],
    ]
