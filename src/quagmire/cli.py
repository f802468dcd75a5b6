"""The `quagmire` command line: one subcommand per stage of the DAG; argument parsing only.

Every Snakemake rule calls exactly one subcommand. Settings arrive as a JSON object (`--settings`) taken from
the validated config, so a rule's params are the only thing that decides what a job does. A `QuagmireError`
is printed as one line on stderr with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from quagmire.errors import QuagmireError

log = logging.getLogger("quagmire")


def _settings(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QuagmireError(f"--settings is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise QuagmireError("--settings must be a JSON object")
    return value


def _pairs(items: Sequence[str], what: str) -> list[tuple[str, str]]:
    """Parse KEY=PATH arguments."""
    out = []
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise QuagmireError(f"{what} must look like NAME=PATH (got {item!r})")
        out.append((key, path))
    return out


# --- stage commands ------------------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> None:
    from quagmire.config import REPO, read_yaml_mapping, unpinned_hub_inputs
    from quagmire.studies import load_run

    run = load_run(read_yaml_mapping(args.config), source=args.config, search=[REPO])
    if run.paper is not None:
        print(f"{args.config}: valid paper config '{run.paper}' ({len(run.studies)} studies)")
    for name, study in run.studies.items():
        print(f"  study '{name}': valid ({len(study.recipes)} SFT recipes)" if run.paper else
              f"{args.config}: valid ({len(study.recipes)} SFT recipes, study '{name}')")
        unpinned = unpinned_hub_inputs(study.config)
        if unpinned:
            print(f"  not yet runnable: pin a hub revision (40-hex commit) or give a local path for "
                  f"{', '.join(unpinned)}")


def cmd_plan(args: argparse.Namespace) -> None:
    from quagmire.plan import format_plan, plan_workflow

    plan = plan_workflow(args.config, args.target, args.directory, args.all_jobs, args.snakefile)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else format_plan(plan))


def cmd_world(args: argparse.Namespace) -> None:
    from quagmire.world.data import build_world, write_world

    settings = _settings(args.settings)
    frames = build_world(settings["world"], settings["seed"])
    audit = write_world(frames, Path(args.out_dir), settings)
    log.info("world written: %s", audit["rows"])


def cmd_world_benchmark(args: argparse.Namespace) -> None:
    from quagmire.world.data import write_world_benchmark

    rows = write_world_benchmark(Path(args.world), args.name, Path(args.out))
    log.info("world benchmark %s: %d problems", args.name, rows)


def cmd_source(args: argparse.Namespace) -> None:
    from quagmire.data.sources import load_source, source_from_config, write_source

    spec = source_from_config(_settings(args.settings), args.kind, args.where)
    frame, manifest = load_source(spec)
    write_source(frame, manifest, args.out)
    log.info("source %s: %s", spec.name, manifest["rows"])


def cmd_filter(args: argparse.Namespace) -> None:
    from quagmire.data.filters import filter_files

    benchmarks = dict(_pairs(args.benchmarks, "--benchmarks"))
    settings = _settings(args.settings)
    if args.workers is not None:  # the job's threads (operational: not part of the settings a rerun compares)
        settings["gold_workers"] = args.workers
    manifest = filter_files(args.raw, benchmarks, args.tokenizer, settings, args.out, args.audit, args.manifest)
    for step in manifest["steps"]:
        log.info("filter %s", step)


def cmd_split(args: argparse.Namespace) -> None:
    from quagmire.data.split import split_files

    record = split_files(args.data, args.size, args.seed, args.pool_out, args.heldout_out)
    log.info("held-out split: %d rows; SFT pool: %d rows", record["heldout_size"], record["pool_size"])


def cmd_subset(args: argparse.Namespace) -> None:
    from quagmire.data.subsets import subset_to_file

    subset_to_file(args.pool, args.tokenizer, args.strategy, args.n, args.seed, args.out)


def cmd_tokenizer(args: argparse.Namespace) -> None:
    from quagmire.io import atomic_dir
    from quagmire.world.tokenizer import build_tokenizer

    with atomic_dir(args.out) as tmp:
        build_tokenizer().save_pretrained(tmp)


def cmd_pretrain(args: argparse.Namespace) -> None:
    import torch

    from quagmire.hf import load_tokenizer
    from quagmire.io import atomic_dir, write_json
    from quagmire.provenance import lineage
    from quagmire.world.model import TinyModelSpec, build_model, count_parameters
    from quagmire.world.pretrain import PretrainSettings, pretrain, pretrain_corpus, save_base

    settings = _settings(args.settings)
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.tokenizer)
    model = build_model(TinyModelSpec.from_config(settings["model"]), tokenizer, settings["seed"])
    pre = PretrainSettings(**settings["pretrain"], seed=settings["seed"])
    log.info("base model: %d parameters", count_parameters(model))
    stats = pretrain(model, tokenizer, pretrain_corpus(pre), pre)
    stats["parameters"] = count_parameters(model)
    with atomic_dir(args.out) as tmp:
        save_base(model, tokenizer, tmp, stats)
        write_json(tmp / "lineage.json", lineage("pretrain", parent=None, data=[], settings=settings))


def cmd_base_model(args: argparse.Namespace) -> None:
    from quagmire.train.base_model import fetch_base

    fetch_base(_settings(args.settings), Path(args.out), Path(args.tokenizer_out) if args.tokenizer_out else None)


def _operational(args: argparse.Namespace) -> dict[str, Any]:
    """Operational knobs given on the command line (checkpoint cadence, vLLM memory): how a run goes, not what
    it computes, so they stay out of its settings, its resume fingerprint and its lineage."""
    knobs = {"save_steps": args.save_steps, "save_total_limit": args.save_total_limit,
             "vllm_gpu_memory_utilization": getattr(args, "vllm_gpu_memory", None)}  # GRPO only
    return {key: value for key, value in knobs.items() if value is not None}


def cmd_sft(args: argparse.Namespace) -> None:
    from quagmire.train.launch import relaunch
    from quagmire.train.sft import train_sft

    relaunch(args.argv, Path(args.base), args.gpus, args.sharding)
    train_sft(
        Path(args.base), Path(args.data), Path(args.out), _settings(args.settings), threads=args.threads,
        operational=_operational(args),
    )


def cmd_grpo(args: argparse.Namespace) -> None:
    from quagmire.train.grpo import train_grpo
    from quagmire.train.launch import relaunch

    relaunch(args.argv, Path(args.model), args.gpus, args.sharding)
    train_grpo(
        Path(args.model), Path(args.prompts), Path(args.out), _settings(args.settings), threads=args.threads,
        operational=_operational(args),
    )


def cmd_benchmark(args: argparse.Namespace) -> None:
    from quagmire.data.benchmarks import load_benchmark, spec_from_config, write_benchmark

    spec = spec_from_config(args.name, _settings(args.settings))
    frame, manifest = load_benchmark(spec)
    write_benchmark(frame, manifest, args.out)
    log.info("benchmark %s: %d problems (%s)", args.name, len(frame), manifest["rows"])


def cmd_sample(args: argparse.Namespace) -> None:
    from quagmire.eval.sampling import SamplingSettings, sample_to_file

    settings = SamplingSettings.from_config(_settings(args.settings))
    sample_to_file(
        Path(args.model), Path(args.benchmark), Path(args.out), settings, threads=args.threads,
        shard=args.shard, shards=args.shards,
    )


def cmd_gather(args: argparse.Namespace) -> None:
    from quagmire.eval.sampling import gather_samples

    gather_samples([Path(p) for p in args.shards], Path(args.benchmark), Path(args.out))


def cmd_grade(args: argparse.Namespace) -> None:
    import pandas as pd

    from quagmire.eval.grading import grade_samples
    from quagmire.io import write_parquet

    samples = pd.read_parquet(args.samples)
    problems = pd.read_parquet(args.benchmark)
    grades = grade_samples(samples, problems, timeout_s=args.timeout, workers=args.workers)
    counts = grades["status"].value_counts().to_dict()
    write_parquet(
        args.out,
        grades,
        metadata={
            "samples": args.samples,
            "benchmark": args.benchmark,
            "timeout_s": args.timeout,
            "status_counts": counts,
        },
    )
    log.info("graded %d samples: %s", len(grades), counts)


def cmd_score(args: argparse.Namespace) -> None:
    import pandas as pd

    from quagmire.eval.metrics import score
    from quagmire.io import write_json

    per_benchmark = {name: pd.read_parquet(path) for name, path in _pairs(args.grades, "--grades")}
    result = score(per_benchmark, extra_ks=args.extra_ks, n_boot=args.bootstrap)
    write_json(args.out, result)
    log.info("macro: %s", {k: round(v, 4) for k, v in result["macro"].items()})


def cmd_genloss(args: argparse.Namespace) -> None:
    from quagmire.eval.genloss import held_out_loss
    from quagmire.io import write_json

    result = held_out_loss(
        Path(args.model),
        Path(args.heldout),
        max_length=args.max_length,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    write_json(args.out, result)
    log.info("generalization loss %.4f over %d tokens", result["genloss"], result["n_tokens"])


def cmd_recipes(args: argparse.Namespace) -> None:
    import pandas as pd

    from quagmire.io import atomic_path

    recipes = _settings(args.settings)
    rows = [
        {
            "run": name,
            "subset": r["subset"],
            "n_unique": r["n"],
            "epochs": r["epochs"],
            "lr": r["lr"],
            "dataset_level": r["dataset_level"],
            "instance_level": r["instance_level"],
        }
        for name, r in recipes.items()
    ]
    with atomic_path(args.out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def cmd_table(args: argparse.Namespace) -> None:
    from quagmire.analysis.tables import tidy_table
    from quagmire.io import atomic_path, read_json

    evals = []
    for key, path in _pairs(args.eval, "--eval"):
        stage, sep, run = key.partition(":")
        if not sep:
            raise QuagmireError(f"--eval key must be STAGE:RUN (got {key!r})")
        evals.append((run, stage, read_json(path)))
    genlosses = [(run, read_json(path)) for run, path in _pairs(args.genloss, "--genloss")]
    tidy = tidy_table(evals, genlosses)
    with atomic_path(args.out) as tmp:
        tidy.to_csv(tmp, index=False)
    log.info("tidy table: %d rows", len(tidy))


def cmd_predictors(args: argparse.Namespace) -> None:
    from quagmire.analysis.tables import (
        passk_correlation_sweep,
        predictor_quality,
        predictor_values,
        read_recipes,
        read_tidy,
    )
    from quagmire.io import atomic_path

    settings = _settings(args.settings)
    tidy, recipes = read_tidy(args.tidy), read_recipes(args.recipes)
    values = predictor_values(tidy, recipes, k_large=settings.get("k_large"))
    quality = predictor_quality(values, n_splits=settings.get("n_splits", 200), seed=settings.get("seed", 0))
    sweep = passk_correlation_sweep(tidy, recipes)
    for frame, out in ((values, args.values), (quality, args.out), (sweep, args.sweep)):
        with atomic_path(out) as tmp:
            frame.to_csv(tmp, index=False)
    with_rl = quality[quality["level"] == "all"]
    log.info("predictor quality (all runs):\n%s", with_rl.to_string(index=False))


def cmd_plot(args: argparse.Namespace) -> None:
    from quagmire.analysis.plots import render

    render(args.figure, args.tidy, args.recipes, args.out, _settings(args.settings))


def cmd_paper_tables(args: argparse.Namespace) -> None:
    from quagmire.analysis.paper import write_tables

    table = write_tables(
        _pairs(args.study, "--study"), args.out_csv, args.out_md, dict(_pairs(args.label, "--label"))
    )
    log.info("paper tables: %d rows from %d studies", len(table), len(args.study))


def cmd_paper_figure(args: argparse.Namespace) -> None:
    from quagmire.analysis.paper import render_figure

    labels = dict(_pairs(args.label, "--label"))
    render_figure(_pairs(args.study, "--study"), args.out, _settings(args.settings), labels)


# --- parser --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quagmire", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], None], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=fn)
        return p

    def threads(p: argparse.ArgumentParser) -> None:
        p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")

    def checkpointing(p: argparse.ArgumentParser) -> None:
        p.add_argument("--save-steps", type=int, default=None, help="checkpoint every N steps (default: settings)")
        p.add_argument("--save-total-limit", type=int, default=None, help="checkpoints kept while training")

    def gpus(p: argparse.ArgumentParser) -> None:
        p.add_argument("--gpus", type=int, default=0, help="GPUs of this job; >1 trains through accelerate launch")
        p.add_argument("--sharding", choices=["fsdp", "zero3"], default="fsdp",
                       help="how models of 3B+ parameters are sharded over several GPUs (default fsdp)")

    p = add(
        "check-config", cmd_check_config, "Validate a study or paper config (unknown keys and wrong types are errors)."
    )
    p.add_argument("config")

    p = add("plan", cmd_plan, "Jobs per rule, GPUs and runtime per job, GPU- and CPU-hours, before submitting.")
    p.add_argument("config", help="the study config (snakemake --configfile)")
    p.add_argument("--target", action="append", default=[], help="file or rule to plan for (repeatable; default: all)")
    p.add_argument("-d", "--directory", help="working directory: jobs with outputs there are done (default: .)")
    p.add_argument("--all-jobs", action="store_true", help="count every job, as if no output existed")
    p.add_argument("--snakefile", help="default: the Snakefile of this checkout")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")

    p = add("world", cmd_world, "Build the embedded world's pools and benchmarks (disjoint).")
    p.add_argument("--settings", required=True, help='JSON: {"world": ..., "seed": ...}')
    p.add_argument("--out-dir", required=True)

    p = add("world-benchmark", cmd_world_benchmark, "Write one world benchmark from the world's benchmarks file.")
    p.add_argument("--world", required=True, help="world_benchmarks.parquet written by `quagmire world`")
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)

    p = add("source", cmd_source, "Read one training dataset (pinned hub or local file) into the shared schema.")
    p.add_argument("--kind", required=True, choices=["sft", "rl"])
    p.add_argument("--settings", required=True, help="JSON: its data.sft / data.rl entry (name + overrides)")
    p.add_argument("--where", default="data source", help="the config entry, for error messages")
    p.add_argument("--out", required=True, help="Parquet; the manifest is written beside it (.manifest.json)")

    p = add("filter", cmd_filter, "Dedup, gold check, decontamination and length filter, with a row-level audit.")
    p.add_argument("--raw", nargs="+", required=True, help="raw source files of one kind (concatenated)")
    p.add_argument("--benchmarks", nargs="*", default=[], metavar="NAME=PATH", help="decontaminate against these")
    p.add_argument("--tokenizer", required=True, help="the study's tokenizer (length filter)")
    p.add_argument("--settings", default="{}", help="JSON: the data.filters section")
    p.add_argument("--workers", type=int, default=None, help="math-verify workers of the gold check")
    p.add_argument("--out", required=True)
    p.add_argument("--audit", required=True, help="Parquet: one row per input row per step (kept, reason)")
    p.add_argument("--manifest", required=True, help="JSON: inputs and outputs with sha256, counts per step")

    p = add("split", cmd_split, "Split the clean SFT data into the SFT pool and the held-out split.")
    p.add_argument("--data", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool-out", required=True)
    p.add_argument("--heldout-out", required=True)

    p = add("subset", cmd_subset, "Select an SFT subset (random/shortest/longest/mix N by response tokens).")
    p.add_argument("--pool", required=True)
    p.add_argument("--tokenizer", required=True, help="folder with the study's tokenizer")
    p.add_argument("--strategy", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)

    p = add("tokenizer", cmd_tokenizer, "Build the embedded world's character-level tokenizer.")
    p.add_argument("--out", required=True)

    p = add("pretrain", cmd_pretrain, "Build and pre-train the embedded base model.")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--settings", required=True, help='JSON: {"model": ..., "pretrain": ..., "seed": ...}')
    p.add_argument("--out", required=True)
    threads(p)

    p = add("base-model", cmd_base_model, "Fetch and check a pre-trained base model (pinned hub or local copy).")
    p.add_argument("--settings", required=True, help='JSON: {"hub_id": ..., "revision": ...} or {"path": ...}')
    p.add_argument("--out", required=True)
    p.add_argument("--tokenizer-out", help="also save its tokenizer here (the study's tokenizer)")

    p = add("sft", cmd_sft, "Supervised fine-tuning (TRL SFTTrainer) of one recipe.")
    p.add_argument("--base", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--settings", required=True, help="JSON: the recipe's resolved settings")
    p.add_argument("--out", required=True)
    checkpointing(p)
    threads(p)
    gpus(p)

    p = add("grpo", cmd_grpo, "GRPO (TRL GRPOTrainer) with a math-verify correctness reward.")
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--settings", required=True, help="JSON: the rl config section")
    p.add_argument("--out", required=True)
    checkpointing(p)
    p.add_argument("--vllm-gpu-memory", type=float, default=None, help="GPU memory share of colocated vLLM")
    threads(p)
    gpus(p)

    p = add("benchmark", cmd_benchmark, "Normalize one evaluation benchmark (local file or pinned hub dataset).")
    p.add_argument("--name", required=True, help="the study's name for it (a registry name unless 'registry' says)")
    p.add_argument("--settings", default="{}", help="JSON: its eval.benchmarks entry (path, revision, fields...)")
    p.add_argument("--out", required=True, help="Parquet; the manifest is written beside it (.manifest.json)")

    p = add("sample", cmd_sample, "Draw n completions per problem of one benchmark (or one shard of it).")
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--settings", required=True, help="JSON: the eval config section")
    p.add_argument("--out", required=True)
    p.add_argument("--shard", type=int, default=0, help="which shard to draw (0-based)")
    p.add_argument("--shards", type=int, default=1, help="how many shards the benchmark is split into")
    threads(p)

    p = add("gather", cmd_gather, "Join the sample shards of one model on one benchmark, checking coverage.")
    p.add_argument("--shards", nargs="+", required=True, metavar="SHARD_PARQUET")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--out", required=True)

    p = add(
        "grade", cmd_grade, "Grade a samples file against a benchmark file with math-verify (gold first)."
    )
    p.add_argument("--samples", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=float, default=5.0, help="hard timeout per item, seconds")
    p.add_argument("--workers", type=int, default=1)

    p = add("score", cmd_score, "avg@n, pass@k, maj@n per benchmark and macro-averaged.")
    p.add_argument("--grades", nargs="+", required=True, metavar="BENCHMARK=PATH")
    p.add_argument("--out", required=True)
    p.add_argument("--extra-ks", type=int, nargs="*", default=[])
    p.add_argument("--bootstrap", type=int, default=1000)

    p = add("genloss", cmd_genloss, "Generalization loss of a checkpoint on the held-out SFT split.")
    p.add_argument("--model", required=True)
    p.add_argument("--heldout", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    threads(p)

    p = add("recipes", cmd_recipes, "Write the recipes table (one row per SFT recipe) from the config.")
    p.add_argument("--settings", required=True, help="JSON: recipe name -> resolved recipe")
    p.add_argument("--out", required=True)

    p = add("table", cmd_table, "Collect metrics and losses into the tidy table.")
    p.add_argument("--eval", nargs="+", required=True, metavar="STAGE:RUN=PATH")
    p.add_argument("--genloss", nargs="*", default=[], metavar="RUN=PATH")
    p.add_argument("--out", required=True)

    p = add("predictors", cmd_predictors, "Predictor values and quality (R², Spearman) for post-RL accuracy.")
    p.add_argument("--tidy", required=True)
    p.add_argument("--recipes", required=True)
    p.add_argument("--settings", default="{}")
    p.add_argument("--values", required=True)
    p.add_argument("--sweep", required=True)
    p.add_argument("--out", required=True)

    p = add("plot", cmd_plot, "Render one figure from the tidy table.")
    p.add_argument("--figure", required=True)
    p.add_argument("--tidy", required=True)
    p.add_argument("--recipes", required=True)
    p.add_argument("--settings", default="{}")
    p.add_argument("--out", required=True)

    p = add("paper-tables", cmd_paper_tables, "Tables 1-4: every study's predictor quality, a row per model.")
    p.add_argument("--study", nargs="+", required=True, metavar="NAME=PREDICTORS_CSV", help="in row order")
    p.add_argument("--label", nargs="*", default=[], metavar="NAME=TEXT", help="row label of a study (default NAME)")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)

    p = add("paper-figure", cmd_paper_figure, "Bars of every study's predictor quality (Spearman, split R²).")
    p.add_argument("--study", nargs="+", required=True, metavar="NAME=PREDICTORS_CSV", help="in bar order")
    p.add_argument("--label", nargs="*", default=[], metavar="NAME=TEXT", help="legend label of a study")
    p.add_argument("--settings", default="{}", help="JSON: the plots section (dpi, width, height, style, format)")
    p.add_argument("--out", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # a multi-GPU training command re-executes itself under accelerate with the same arguments
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args.func(args)
    except QuagmireError as exc:
        print(f"quagmire {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
