"""The `quagmire` command line: one subcommand per stage of the DAG; argument parsing only.

Every Snakemake rule calls exactly one subcommand, and every subcommand calls exactly one library function (its
`target`, imported only when that subcommand runs, so `quagmire score` never loads torch). The subcommands live
in one table, `COMMANDS`: its name, help, target and arguments, each argument naming the keyword it becomes.
Settings arrive as a JSON object (`--settings`) taken from the validated config, so a rule's params are the only
thing that decides what a job does; a setting the config always gives is a required argument here, never a second
default. A `QuagmireError` is printed as one line on stderr with exit status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quagmire.errors import QuagmireError


def _settings(text: str, flag: str) -> dict[str, Any]:
    """A JSON object given on the command line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QuagmireError(f"{flag} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise QuagmireError(f"{flag} must be a JSON object")
    return value


def _pairs(items: Sequence[str], flag: str) -> list[tuple[str, str]]:
    """NAME=PATH arguments, in order."""
    out = []
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise QuagmireError(f"{flag} must look like NAME=PATH (got {item!r})")
        out.append((key, path))
    return out


# How an argument's parsed value becomes the keyword argument (after argparse's own `type`).
PARSE: dict[str, Callable[[Any, str], Any]] = {
    "text": lambda value, flag: value,  # as argparse gives it (str, or its `type`)
    "settings": _settings,  # a JSON object -> dict
    "pairs": _pairs,  # NAME=PATH ... -> [(name, path), ...]
    "mapping": lambda value, flag: dict(_pairs(value, flag)),  # NAME=PATH ... -> {name: path}
}


@dataclass(frozen=True)
class Arg:
    """One command-line argument: its flags, its argparse options, and the target's keyword it fills."""

    flags: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    to: str | None = None  # the target's keyword (default: argparse's dest, e.g. --out-dir -> out_dir)
    parse: str = "text"  # a key of PARSE

    @property
    def dest(self) -> str:
        if "dest" in self.options:
            return self.options["dest"]
        long = [f for f in self.flags if f.startswith("--")] or list(self.flags)
        return long[0].lstrip("-").replace("-", "_")

    @property
    def keyword(self) -> str:
        return self.to or self.dest


def arg(*flags: str, to: str | None = None, parse: str = "text", **options: Any) -> Arg:
    if parse not in PARSE:
        raise ValueError(f"unknown parse {parse!r}")
    return Arg(flags, options, to, parse)


@dataclass(frozen=True)
class Command:
    """One subcommand: it parses `args` and calls `target` ("module:function") with their keywords."""

    name: str
    help: str
    target: str
    args: tuple[Arg, ...]
    argv: bool = False  # also pass the whole command line as `argv` (a trainer re-executes itself under accelerate)

    @property
    def keywords(self) -> list[str]:
        """The keyword arguments the target is called with."""
        return [a.keyword for a in self.args] + (["argv"] if self.argv else [])

    def kwargs(self, args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
        out = {a.keyword: PARSE[a.parse](getattr(args, a.dest), a.flags[-1]) for a in self.args}
        if self.argv:
            out["argv"] = list(argv)
        return out

    def function(self) -> Callable[..., Any]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


def _settings_arg(help_text: str, to: str = "settings") -> Arg:
    return arg("--settings", required=True, to=to, parse="settings", help=f"JSON: {help_text}")


def _out(help_text: str | None = None, **options: Any) -> Arg:
    return arg("--out", required=True, help=help_text, **options)


THREADS = arg("--threads", type=int, default=1, help="torch CPU threads (default 1)")
CHECKPOINTING = (
    arg("--save-steps", type=int, default=None, help="checkpoint every N steps (default: settings)"),
    arg("--save-total-limit", type=int, default=None, help="checkpoints kept while training"),
)
GPUS = (
    arg("--gpus", type=int, default=0, help="GPUs of this job; >1 trains through accelerate launch"),
    arg("--sharding", choices=["fsdp", "zero3"], required=True,
        help="how models of 3B+ parameters are sharded over several GPUs (sft.sharding)"),
)
STUDY_PAIRS = "NAME=PREDICTORS_CSV"

COMMANDS: tuple[Command, ...] = (
    Command(
        "check-config", "Validate a study or paper config (unknown keys and wrong types are errors).",
        "quagmire.studies:check_config", (arg("config"),),
    ),
    Command(
        "plan", "Jobs per rule, GPUs and runtime per job, GPU- and CPU-hours, before submitting.",
        "quagmire.plan:print_plan",
        (
            arg("config", help="the study config (snakemake --configfile)"),
            arg("--target", action="append", default=[], to="targets",
                help="file or rule to plan for (repeatable; default: all)"),
            arg("-d", "--directory", help="working directory: jobs with outputs there are done (default: .)"),
            arg("--all-jobs", action="store_true", help="count every job, as if no output existed"),
            arg("--snakefile", help="default: the Snakefile of this checkout"),
            arg("--json", action="store_true", to="as_json", help="print the plan as JSON"),
        ),
    ),
    Command(
        "provenance", "Where an artifact came from: its steps, settings, code and sha256s back to the raw data.",
        "quagmire.audit:print_provenance",
        (
            arg("artifact", help="any file or folder under results/ (figure, table, metrics, grades, checkpoint...)"),
            arg("-d", "--directory", help="the folder the workflow ran in (default: the parent of results/)"),
            arg("--json", action="store_true", to="as_json", help="print the tree as JSON"),
            arg("--check", action="store_true",
                help="compare every file's sha256 with those recorded when it was used; exit 2 if any changed"),
        ),
    ),
    Command(
        "world", "Build the embedded world's pools and benchmarks (disjoint).", "quagmire.world.data:world_to_file",
        (_settings_arg('{"world": ..., "seed": ...}'), arg("--out-dir", required=True)),
    ),
    Command(
        "world-benchmark", "Write one world benchmark from the world's benchmarks file.",
        "quagmire.world.data:write_world_benchmark",
        (
            arg("--world", required=True, type=Path, to="world_benchmarks",
                help="world_benchmarks.parquet written by `quagmire world`"),
            arg("--name", required=True),
            _out(type=Path),
        ),
    ),
    Command(
        "source", "Read one training dataset (pinned hub or local file) into the shared schema.",
        "quagmire.data.sources:source_to_file",
        (
            arg("--kind", required=True, choices=["sft", "rl"]),
            _settings_arg("its data.sft / data.rl entry (name + overrides)"),
            arg("--where", default="data source", help="the config entry, for error messages"),
            _out("Parquet; the manifest is written beside it (.manifest.json)"),
        ),
    ),
    Command(
        "filter", "Dedup, gold check, decontamination and length filter, with a row-level audit.",
        "quagmire.data.filters:filter_to_file",
        (
            arg("--raw", nargs="+", required=True, help="raw source files of one kind (concatenated)"),
            arg("--benchmarks", nargs="*", default=[], metavar="NAME=PATH", parse="mapping",
                help="decontaminate against these"),
            arg("--tokenizer", required=True, help="the study's tokenizer (length filter)"),
            _settings_arg("the data.filters section"),
            arg("--workers", type=int, default=None, help="math-verify workers of the gold check"),
            _out(),
            arg("--audit", required=True, help="Parquet: one row per input row per step (kept, reason)"),
            arg("--manifest", required=True, help="JSON: inputs and outputs with sha256, counts per step"),
        ),
    ),
    Command(
        "split", "Split the clean SFT data into the SFT pool and the held-out split.",
        "quagmire.data.split:split_files",
        (
            arg("--data", required=True, to="clean"),
            arg("--size", type=int, required=True),
            arg("--seed", type=int, required=True),
            arg("--pool-out", required=True),
            arg("--heldout-out", required=True),
        ),
    ),
    Command(
        "subset", "Select an SFT subset (random/shortest/longest/mix N by response tokens).",
        "quagmire.data.subsets:subset_to_file",
        (
            arg("--pool", required=True, to="pool_path"),
            arg("--tokenizer", required=True, to="tokenizer_dir", help="folder with the study's tokenizer"),
            arg("--strategy", required=True),
            arg("--n", type=int, required=True),
            arg("--seed", type=int, required=True),
            _out(),
        ),
    ),
    Command(
        "tokenizer", "Build the embedded world's character-level tokenizer.",
        "quagmire.world.tokenizer:tokenizer_to_file", (_out(),),
    ),
    Command(
        "pretrain", "Build and pre-train the embedded base model.", "quagmire.world.pretrain:pretrain_to_file",
        (
            arg("--tokenizer", required=True),
            _settings_arg('{"model": ..., "pretrain": ..., "seed": ...}'),
            _out(),
            THREADS,
        ),
    ),
    Command(
        "base-model", "Fetch and check a pre-trained base model (pinned hub or local copy).",
        "quagmire.train.base_model:fetch_base",
        (
            _settings_arg('{"hub_id": ..., "revision": ...} or {"path": ...}'),
            _out(type=Path),
            arg("--tokenizer-out", type=Path, help="also save its tokenizer here (the study's tokenizer)"),
        ),
    ),
    Command(
        "candidate-model", "Bring an SFT candidate the study did not train in (local folder or pinned hub), checked.",
        "quagmire.train.base_model:fetch_candidate",
        (
            arg("--name", required=True, help="the candidate's name (candidates.<name>)"),
            _settings_arg('{"hub_id": ..., "revision": ...} or {"path": ...}'),
            _out(type=Path),
        ),
    ),
    Command(
        "sft", "Supervised fine-tuning (TRL SFTTrainer) of one recipe.", "quagmire.train.launch:run_sft",
        (
            arg("--base", required=True),
            arg("--data", required=True),
            _settings_arg("the recipe's resolved settings"),
            _out(),
            arg("--snapshots", default=None, help="folder for the weight-only snapshots along SFT (sft.snapshots)"),
            *CHECKPOINTING,
            THREADS,
            *GPUS,
        ),
        argv=True,
    ),
    Command(
        "grpo", "GRPO (TRL GRPOTrainer) with a math-verify correctness reward.", "quagmire.train.launch:run_grpo",
        (
            arg("--model", required=True),
            arg("--prompts", required=True),
            _settings_arg("the rl config section"),
            _out(),
            *CHECKPOINTING,
            arg("--vllm-gpu-memory", type=float, default=None, help="GPU memory share of colocated vLLM"),
            THREADS,
            *GPUS,
        ),
        argv=True,
    ),
    Command(
        "benchmark", "Normalize one evaluation benchmark (local file or pinned hub dataset).",
        "quagmire.data.benchmarks:benchmark_to_file",
        (
            arg("--name", required=True, help="the study's name for it (a registry name unless 'registry' says)"),
            _settings_arg("its eval.benchmarks entry (path, revision, fields...)"),
            _out("Parquet; the manifest is written beside it (.manifest.json)"),
        ),
    ),
    Command(
        "sample", "Draw n completions per problem of one benchmark (or one shard of it).",
        "quagmire.eval.sampling:sample_shard_to_file",
        (
            arg("--model", required=True, type=Path),
            arg("--benchmark", required=True, type=Path),
            _settings_arg("the eval config section"),
            _out(type=Path),
            arg("--shard", type=int, default=0, help="which shard to draw (0-based)"),
            arg("--shards", type=int, default=1, help="how many shards the benchmark is split into"),
            THREADS,
        ),
    ),
    Command(
        "sample-model", "Draw n completions per problem of every benchmark (or one shard of each), loading the "
        "model once.",
        "quagmire.eval.sampling:sample_model_shard_to_file",
        (
            arg("--model", required=True, type=Path),
            arg("--benchmarks", nargs="+", required=True, metavar="NAME=PATH", parse="mapping"),
            _settings_arg("the eval config section"),
            _out(type=Path),
            arg("--shard", type=int, default=0, help="which shard to draw (0-based)"),
            arg("--shards", type=int, default=1, help="how many shards each benchmark is split into"),
            THREADS,
        ),
    ),
    Command(
        "grade", "Grade a samples file (or join sample shards into it first) against a benchmark file with "
        "math-verify (gold first).",
        "quagmire.eval.grading:grade_to_file",
        (
            arg("--samples", required=True, help="the samples file (written first when --shards are given)"),
            arg("--benchmark", required=True),
            _out(),
            arg("--shards", nargs="+", default=None, metavar="SHARD_PARQUET", to="shard_files",
                help="sample shards of this model and benchmark: joined into --samples (checking coverage) first"),
            arg("--timeout", type=float, required=True, help="hard timeout per item, seconds (eval.grading_timeout_s)"),
            arg("--workers", type=int, default=1),
        ),
    ),
    Command(
        "score", "avg@n, pass@k, maj@n per benchmark and macro-averaged.", "quagmire.eval.metrics:score_to_file",
        (
            arg("--grades", nargs="+", required=True, metavar="BENCHMARK=PATH", parse="mapping"),
            _out(),
            arg("--extra-ks", type=int, nargs="*", required=True, help="more k for pass@k (eval.extra_ks)"),
            arg("--bootstrap", type=int, required=True, help="resamples of avg@n's interval (eval.bootstrap)"),
            arg("--report", default=None,
                help="grading report JSON, its .md twin beside it (default: grading_report.json beside --out)"),
        ),
    ),
    Command(
        "genloss", "Generalization loss of a checkpoint on the held-out SFT split.",
        "quagmire.eval.genloss:genloss_to_file",
        (
            arg("--model", required=True),
            arg("--heldout", required=True),
            _out(),
            arg("--max-length", type=int, required=True, help="genloss.max_length"),
            arg("--batch-size", type=int, required=True, help="genloss.batch_size"),
            THREADS,
        ),
    ),
    Command(
        "loss-along-sft", "Held-out loss and post-SFT accuracy of every snapshot of one SFT run.",
        "quagmire.eval.along_sft:along_to_file",
        (
            arg("--run", required=True, help="the SFT recipe's name (the CSV's run column)"),
            arg("--snapshots", required=True, help="its snapshots folder (step-N/ folders)"),
            arg("--heldout", required=True),
            arg("--benchmarks", nargs="*", default=[], metavar="NAME=PATH", parse="pairs",
                help="benchmarks to sample (none when along_sft.n is 0)"),
            _settings_arg("{n, genloss: {max_length, batch_size}, sampling: {...}, grading_timeout_s}"),
            _out("CSV: run, step, epoch, genloss, accuracy, n; the manifest beside it"),
            THREADS,
            arg("--model", default=None, help="the run's published checkpoint: with --genloss-out, its genloss too"),
            arg("--genloss-out", default=None, help="its generalization loss JSON (as quagmire genloss writes)"),
        ),
    ),
    Command(
        "loss-along-sft-table", "Gather every SFT run's loss-along-SFT CSV into the study's table.",
        "quagmire.eval.along_table:gather_to_file",
        (arg("--along", nargs="+", required=True, to="runs", help="per-run CSVs, in recipe order"), _out()),
    ),
    Command(
        "recipes", "Write the recipes table (one row per SFT recipe) from the config.",
        "quagmire.analysis.tables:recipes_to_file",
        (_settings_arg("recipe name -> resolved recipe", to="recipes"), _out()),
    ),
    Command(
        "table", "Collect metrics and losses into the tidy table.", "quagmire.analysis.tables:tidy_to_file",
        (
            arg("--eval", nargs="+", required=True, metavar="STAGE:RUN=PATH", to="evals", parse="pairs"),
            arg("--genloss", nargs="*", default=[], metavar="RUN=PATH", to="genlosses", parse="pairs",
                help="a recipe's loss; a candidate's is candidate:RUN:SET=PATH (SET: its held-out set, or study)"),
            _out(),
        ),
    ),
    Command(
        "predictors", "Predictor values and quality (R², Spearman) for post-RL accuracy.",
        "quagmire.analysis.predictors:predictors_to_file",
        (
            arg("--tidy", required=True),
            arg("--recipes", required=True),
            _settings_arg("the analysis section and the study's seed"),
            arg("--values", required=True),
            arg("--sweep", required=True),
            _out(),
        ),
    ),
    Command(
        "predictor-cost", "What each predictor of the post-RL score costs (samples, checkpoints, RL steps); R², ρ.",
        "quagmire.analysis.predictor_cost:cost_to_file",
        (
            arg("--tidy", required=True),
            arg("--recipes", required=True),
            arg("--grades", nargs="+", required=True, metavar="RUN/BENCHMARK=PATH", parse="pairs",
                help="post-SFT grades files"),
            arg("--rl", nargs="+", required=True, metavar="RUN=DIR", parse="pairs",
                help="GRPO run folders (their train_stats.json)"),
            _settings_arg("the analysis section, the seed, rl prompts_per_step, group_size, format_reward"),
            arg("--loss-along-sft", default=None, help="CSV (run, step, genloss): loss at each SFT checkpoint"),
            _out(),
            arg("--out-md", required=True),
        ),
    ),
    Command(
        "findings", "The paper's findings (a)-(e), checked against the study's tidy, recipes and predictors tables.",
        "quagmire.analysis.findings:findings_to_file",
        (
            arg("--tidy", required=True),
            arg("--recipes", required=True),
            arg("--predictors", required=True),
            arg("--out-md", required=True),
            arg("--out-json", required=True),
        ),
    ),
    Command(
        "rank", "Rank SFT candidates before RL: loss filter, pass@large k, predicted post-RL, leave-one-out quality.",
        "quagmire.analysis.ranking:rank_to_file",
        (
            arg("--tidy", required=True),
            arg("--recipes", required=True),
            _settings_arg("analysis.k_large and analysis.rank as {k_large, rank}"),
            arg("--plot-settings", required=True, parse="settings", help="JSON: the plots section (dpi, size, style)"),
            arg("--out-csv", required=True),
            arg("--out-md", required=True),
            arg("--out-json", required=True),
            arg("--out-figure", required=True),
            arg("--loss-steps", default=None, help="CSV of run, step, genloss along SFT (default: not measured)"),
        ),
    ),
    Command(
        "plot", "Render one figure from the tidy table.", "quagmire.analysis.plots:render",
        (
            arg("--figure", required=True, to="name"),
            arg("--tidy", required=True, to="tidy_csv"),
            arg("--recipes", required=True, to="recipes_csv"),
            _settings_arg("the plots section (dpi, width, height, style, format)", to="settings_dict"),
            _out(),
        ),
    ),
    Command(
        "plot-loss-along-sft", "Held-out loss and post-SFT accuracy against SFT steps, a line per recipe.",
        "quagmire.analysis.plots:render_loss_along_sft",
        (
            arg("--along", required=True, to="along_csv", help="tables/loss_along_sft.csv"),
            arg("--recipes", required=True, to="recipes_csv"),
            _settings_arg("the plots section (dpi, width, height, style, format)", to="settings_dict"),
            _out(),
        ),
    ),
    Command(
        "paper-tables", "Tables 1-4: every study's predictor quality, a row per model.",
        "quagmire.analysis.paper:write_tables",
        (
            arg("--study", nargs="+", required=True, metavar=STUDY_PAIRS, to="studies", parse="pairs",
                help="in row order"),
            arg("--label", nargs="*", default=[], metavar="NAME=TEXT", to="labels", parse="mapping",
                help="row label of a study (default NAME)"),
            arg("--out-csv", required=True),
            arg("--out-md", required=True),
        ),
    ),
    Command(
        "paper-figure", "Bars of every study's predictor quality (Spearman, split R²).",
        "quagmire.analysis.paper:render_figure",
        (
            arg("--study", nargs="+", required=True, metavar=STUDY_PAIRS, to="studies", parse="pairs",
                help="in bar order"),
            arg("--label", nargs="*", default=[], metavar="NAME=TEXT", to="labels", parse="mapping",
                help="legend label of a study"),
            _settings_arg("the plots section (dpi, width, height, style, format)", to="settings_dict"),
            _out(),
        ),
    ),
    Command(
        "paper-ranking", "Every study's ranking quality (leave-one-out) side by side, and pooled.",
        "quagmire.analysis.ranking:paper_ranking_to_file",
        (
            arg("--study", nargs="+", required=True, metavar="NAME=RANKING_QUALITY_JSON", to="studies",
                parse="pairs", help="in row order"),
            arg("--label", nargs="*", default=[], metavar="NAME=TEXT", to="labels", parse="mapping",
                help="row label of a study (default NAME)"),
            arg("--out-md", required=True),
            arg("--out-json", required=True),
        ),
    ),
)
COMMANDS_BY_NAME: dict[str, Command] = {command.name: command for command in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand in COMMANDS."""
    parser = argparse.ArgumentParser(prog="quagmire", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        for a in command.args:
            p.add_argument(*a.flags, **a.options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = COMMANDS_BY_NAME[args.command]
    try:
        kwargs = command.kwargs(args, argv)  # a malformed argument fails before the target is imported
        command.function()(**kwargs)
    except QuagmireError as exc:
        print(f"quagmire {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
