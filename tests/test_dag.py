"""The smoke study through real Snakemake, end to end, then what a rerun does after each kind of change.

One DAG run (about two minutes on two cores) serves every test here; each later test is a dry run against
the finished results, so it shows exactly which jobs a change would rerun.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from quagmire.provenance import sha256_file

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

pytestmark = pytest.mark.slow


def snakemake(
    workdir: Path, configfile: Path, *extra: str, check: bool = True
) -> subprocess.CompletedProcess:
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        *extra,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def planned_jobs(workdir: Path, configfile: Path) -> Counter:
    """Jobs per rule that a dry run would execute (empty when nothing is to be done)."""
    result = snakemake(workdir, configfile, "-n")
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return Counter()
    table = text.split("Job stats:", 1)[1]
    counts = Counter()
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    counts.pop("total", None)
    return counts


def variant(base: Path, tmp: Path, name: str, change: dict) -> Path:
    """A copy of the smoke config with one nested change."""
    config = yaml.safe_load(base.read_text())
    node = config
    *parents, leaf = change["key"]
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = change["value"]
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Run the whole smoke DAG once in a scratch folder."""
    workdir = tmp_path_factory.mktemp("dag")
    configfile = workdir / "smoke.yaml"
    shutil.copy(REPO / "config" / "smoke.yaml", configfile)
    snakemake(workdir, configfile)
    return workdir, configfile


def test_smoke_study_produces_tables_and_figures(study: tuple[Path, Path]) -> None:
    workdir, _ = study
    results = workdir / "results" / "smoke"
    tidy = pd.read_csv(results / "tables" / "tidy.csv")
    assert list(tidy.columns) == ["run", "stage", "benchmark", "metric", "value"]
    assert set(tidy["stage"]) == {"base", "sft", "rl"}
    assert {"addsub2", "mul2", "macro", "heldout"} <= set(tidy["benchmark"])
    recipes = {"random_n64_ep1", "random_n64_ep2", "random_n128_ep1", "shortest_n64_ep1"}
    assert set(tidy.loc[tidy["stage"] == "rl", "run"]) == recipes | {"base"}
    assert set(tidy.loc[tidy["metric"] == "genloss", "run"]) == recipes
    assert {"avg@4", "pass@1", "pass@2", "pass@4", "maj@4"} <= set(tidy["metric"])
    predictors = pd.read_csv(results / "tables" / "predictors.csv")
    assert set(predictors["predictor"]) == {"post_sft", "neg_genloss", "pass_at_k_large", "avg_both"}
    for figure in (
        "predictor_scatter",
        "sft_vs_rl_by_epochs",
        "subset_bars",
        "genloss_teaser",
        "passk_sweep",
        "passk_curves",
    ):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 1000
    for path in (results / "rl").iterdir():
        assert (path / "lineage.json").exists() and (path / "trainer_config.json").exists()
    assert (workdir / "logs" / "smoke" / "sft" / "random_n64_ep1.log").stat().st_size > 0


def test_second_run_with_nothing_changed_runs_no_job(study: tuple[Path, Path]) -> None:
    workdir, configfile = study
    assert planned_jobs(workdir, configfile) == Counter()


def test_plot_setting_change_reruns_only_plot_rules(study: tuple[Path, Path], tmp_path: Path) -> None:
    workdir, configfile = study
    changed = variant(configfile, tmp_path, "dpi", {"key": ["plots", "dpi"], "value": 61})
    assert planned_jobs(workdir, changed) == Counter({"plot": 6, "all": 1})


def test_sft_setting_change_reruns_exactly_what_depends_on_sft(
    study: tuple[Path, Path], tmp_path: Path
) -> None:
    workdir, configfile = study
    changed = variant(configfile, tmp_path, "lr", {"key": ["sft", "defaults", "lr"], "value": 0.002})
    recipes, benchmarks = 4, 2
    evaluated = 2 * recipes  # post-SFT and post-RL of every recipe; never the base model or RL-from-base
    # the recipes table lists each recipe's resolved lr, so it is rebuilt too; data and pre-training are not
    assert planned_jobs(workdir, changed) == Counter(
        {
            "sft": recipes,
            "grpo": recipes,
            "genloss": recipes,
            "sample": evaluated * benchmarks,
            "grade": evaluated * benchmarks,
            "score": evaluated,
            "recipes_table": 1,
            "tidy_table": 1,
            "predictors": 1,
            "plot": 6,
            "all": 1,
        }
    )


def test_one_recipe_change_reruns_only_that_recipe_chain(study: tuple[Path, Path], tmp_path: Path) -> None:
    workdir, configfile = study
    changed = variant(
        configfile, tmp_path, "ep", {"key": ["sft", "recipes", "random_n64_ep2", "epochs"], "value": 3}
    )
    # the recipes table changes too: it lists each recipe's epochs
    assert planned_jobs(workdir, changed) == Counter(
        {
            "sft": 1,
            "grpo": 1,
            "genloss": 1,
            "sample": 4,
            "grade": 4,
            "score": 2,
            "recipes_table": 1,
            "tidy_table": 1,
            "predictors": 1,
            "plot": 6,
            "all": 1,
        }
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"key": ["sft", "defaults", "lrr"], "value": 0.1}, "sft.defaults.lrr"),
        ({"key": ["eval", "n"], "value": "many"}, "eval.n"),
        ({"key": ["rl", "group_size"], "value": 1}, "rl.group_size"),
    ],
)
def test_bad_config_fails_before_any_job_and_names_the_key(tmp_path: Path, change: dict, named: str) -> None:
    bad = variant(REPO / "config" / "smoke.yaml", tmp_path, "bad", change)
    result = snakemake(tmp_path, bad, "-n", check=False)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_a_real_format_benchmark_is_normalized_sampled_in_shards_and_graded(
    study: tuple[Path, Path], tmp_path: Path
) -> None:
    """A GSM8K-format file through the `benchmark` rule, two `sample_shard` jobs, `gather_samples` and `grade`.

    Only this benchmark's jobs run: the base model and everything else of the finished smoke study are reused.
    """
    workdir, configfile = study
    world = pd.read_parquet(workdir / "results" / "smoke" / "data" / "benchmarks" / "addsub2.parquet")
    source = tmp_path / "gsm8k_arith.jsonl"
    lines = [
        {"question": p, "answer": f"Column by column.\n#### {a}"}
        for p, a in zip(world["prompt"], world["answer"], strict=True)
    ]
    source.write_text("\n".join(map(json.dumps, lines)) + "\n{not json\n")
    changed = variant(configfile, tmp_path, "real", {"key": ["eval", "benchmarks"],
                                                      "value": {"arith": {"registry": "gsm8k", "path": str(source)}}})
    changed = variant(changed, tmp_path, "real", {"key": ["eval", "shards"], "value": 2})
    target = "results/smoke/eval/base/base/arith.grades.parquet"
    snakemake(workdir, changed, target)
    bench = workdir / "results" / "smoke" / "data" / "benchmarks" / "arith.parquet"
    manifest = json.loads(bench.with_name("arith.parquet.manifest.json").read_text())
    assert manifest["rows"] == {"read": len(world) + 1, "kept": len(world), "dropped": {"invalid_json": 1}}
    assert manifest["source"]["sha256"] == sha256_file(source)
    shards = sorted((workdir / "results" / "smoke" / "eval" / "base" / "base" / "shards").glob("arith.*"))
    assert [p.name for p in shards] == ["arith.0-of-2.samples.parquet", "arith.1-of-2.samples.parquet"]
    grades = pd.read_parquet(workdir / target)
    assert len(grades) == len(world) * 4 and set(grades["status"]) <= {"correct", "incorrect", "no_answer"}
