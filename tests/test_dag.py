"""The smoke study through real Snakemake, end to end, then what a rerun does after each kind of change.

One DAG run (about two minutes on two cores) serves every test here; each later test is a dry run against
the finished results, so it shows exactly which jobs a change would rerun.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dagrun import REPO, planned_jobs, snakemake, variant
from quagmire.provenance import sha256_file

pytestmark = pytest.mark.slow


def test_smoke_study_produces_tables_and_figures(smoke_study: tuple[Path, Path]) -> None:
    workdir, _ = smoke_study
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
    found = json.loads((results / "tables" / "findings.json").read_text())["findings"]
    assert [f["claim"] for f in found] == list("abcde")
    assert found[1]["verdict"] == "not applicable"  # the smoke grid has no 3-epoch series
    assert (results / "tables" / "findings.md").read_text().startswith("# Paper findings, checked")
    ranking = pd.read_csv(results / "tables" / "ranking.csv")
    assert set(ranking["run"]) == set(pd.read_csv(results / "tables" / "recipes.csv")["run"])
    quality = json.loads((results / "tables" / "ranking_quality.json").read_text())["quality"]
    assert quality["n_runs_with_rl"] == len(ranking) and (results / "figures" / "ranking.png").stat().st_size > 0
    for figure in (
        "predictor_scatter",
        "sft_vs_rl_by_epochs",
        "subset_bars",
        "genloss_teaser",
        "passk_sweep",
        "passk_curves",
    ):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 1000
    along = pd.read_csv(results / "tables" / "loss_along_sft.csv")
    assert list(along.columns) == ["run", "step", "epoch", "genloss", "accuracy", "n"]
    assert set(along["run"]) == recipes and along.groupby("run").size().eq(4).all()  # sft.defaults.snapshots: 4
    assert along["accuracy"].between(0, 1).all() and set(along["n"]) == {4}
    last = along.sort_values("step").groupby("run").tail(1).set_index("run")["genloss"]
    final = tidy[tidy["metric"] == "genloss"].set_index("run")["value"]
    assert last.to_dict() == pytest.approx(final.to_dict(), rel=1e-9)  # the last snapshot is the final model
    assert ranking["loss_rising"].map(lambda v: str(v) in ("True", "False")).all()  # measured now
    cost = pd.read_csv(results / "tables" / "predictor_cost.csv")
    row = cost[(cost["predictor"] == "neg_min_genloss_along_sft") & (cost["level"] == "all")].iloc[0]
    assert row["sft_checkpoints"] == 4 and bool(row["available"])
    assert (results / "figures" / "loss_along_sft.png").stat().st_size > 1000
    for path in (results / "rl").iterdir():
        assert (path / "lineage.json").exists() and (path / "trainer_config.json").exists()
    assert (workdir / "logs" / "smoke" / "sft" / "random_n64_ep1.log").stat().st_size > 0


def test_second_run_with_nothing_changed_runs_no_job(smoke_study: tuple[Path, Path]) -> None:
    workdir, configfile = smoke_study
    assert planned_jobs(workdir, configfile) == Counter()


def test_plot_setting_change_reruns_only_plot_rules(smoke_study: tuple[Path, Path], tmp_path: Path) -> None:
    workdir, configfile = smoke_study
    changed = variant(configfile, tmp_path, "dpi", {"key": ["plots", "dpi"], "value": 61})
    # and the ranking figure and the loss-along-SFT figure; never SFT or the loss along it
    assert planned_jobs(workdir, changed) == Counter({"plot": 6, "rank": 1, "plot_loss_along_sft": 1, "all": 1})


def test_sft_setting_change_reruns_exactly_what_depends_on_sft(
    smoke_study: tuple[Path, Path], tmp_path: Path
) -> None:
    workdir, configfile = smoke_study
    changed = variant(configfile, tmp_path, "lr", {"key": ["sft", "defaults", "lr"], "value": 0.002})
    recipes, benchmarks = 4, 2
    evaluated = 2 * recipes  # post-SFT and post-RL of every recipe; never the base model or RL-from-base
    LOSS_ALONG_SFT = recipes  # noqa: N806 - each recipe's snapshots are new (and its genloss, written there)
    # the recipes table lists each recipe's resolved lr, so it is rebuilt too; data and pre-training are not
    assert planned_jobs(workdir, changed) == Counter(
        {
            "sft": recipes,
            "grpo": recipes,
            "sample_shard": evaluated * benchmarks,  # eval.shards 1: one shard per evaluation, joined by grade
            "grade": evaluated * benchmarks,
            "score": evaluated,
            "recipes_table": 1,
            "tidy_table": 1,
            "predictors": 1,
            "findings": 1,
            "rank": 1,
            "predictor_cost": 1,
            "plot": 6,
            "loss_along_sft": LOSS_ALONG_SFT,
            "loss_along_sft_table": 1,
            "plot_loss_along_sft": 1,
            "all": 1,
        }
    )


def test_one_recipe_change_reruns_only_that_recipe_chain(smoke_study: tuple[Path, Path], tmp_path: Path) -> None:
    workdir, configfile = smoke_study
    changed = variant(
        configfile, tmp_path, "ep", {"key": ["sft", "recipes", "random_n64_ep2", "epochs"], "value": 3}
    )
    LOSS_ALONG_SFT = 1  # noqa: N806 - that recipe's snapshots only (and its genloss, written there)
    # the recipes table changes too: it lists each recipe's epochs
    assert planned_jobs(workdir, changed) == Counter(
        {
            "sft": 1,
            "grpo": 1,
            "sample_shard": 4,
            "grade": 4,
            "score": 2,
            "recipes_table": 1,
            "tidy_table": 1,
            "predictors": 1,
            "findings": 1,
            "rank": 1,
            "predictor_cost": 1,
            "plot": 6,
            "loss_along_sft": LOSS_ALONG_SFT,
            "loss_along_sft_table": 1,
            "plot_loss_along_sft": 1,
            "all": 1,
        }
    )


TRAINING_SAMPLING_GRADING = {"pretrain", "sft", "grpo", "genloss", "sample_shard", "grade", "score"}
AFTER_TIDY = {
    "tidy_table": 1, "predictors": 1, "findings": 1, "rank": 1, "predictor_cost": 1, "plot": 6, "all": 1,
}  # what a changed tidy table reruns
ALONG_ONLY = {
    "loss_along_sft": 4, "loss_along_sft_table": 1, "plot_loss_along_sft": 1, **AFTER_TIDY,
}  # what a changed along_sft setting reruns: the along jobs also rewrite each recipe's genloss (same numbers), so
# the analysis that reads it is redone too -- seconds, against a genloss job per recipe on every fresh run


@pytest.mark.parametrize(
    ("name", "key", "value", "expected"),
    [
        # a comparison label is read by the recipes table only: no model, sample or grade is redone
        ("label", ["sft", "recipes", "random_n64_ep2", "instance_level"], True,
         {"recipes_table": 1, "predictors": 1, "findings": 1, "rank": 1, "predictor_cost": 1, "plot": 6,
          "plot_loss_along_sft": 1, "all": 1}),
        # operational knobs: how jobs run, never what they compute
        ("rl_save_steps", ["rl", "save_steps"], 1, {}),
        ("rl_save_total_limit", ["rl", "save_total_limit"], 5, {}),
        ("sft_save_steps", ["sft", "defaults", "save_steps"], 3, {}),
        ("vllm_memory", ["rl", "vllm_gpu_memory_utilization"], 0.5, {}),
        ("grading_workers", ["eval", "grading_workers"], 2, {}),
        ("threads", ["threads"], 2, {}),
        # GRPO from the base model dropped: the other runs stand; the tables are rebuilt without it
        ("from_base", ["rl", "from_base"], False, AFTER_TIDY),
        ("analysis", ["analysis", "n_splits"], 7, {"predictors": 1, "findings": 1, "predictor_cost": 1, "all": 1}),
        ("k_large", ["analysis", "k_large"], 2, {"predictors": 1, "findings": 1, "rank": 1, "predictor_cost": 1,
                                                "all": 1}),
        ("rank", ["analysis", "rank", "interval_level"], 0.9, {"rank": 1, "all": 1}),
        ("cost_draws", ["analysis", "cost_draws"], 2, {"predictor_cost": 1, "all": 1}),  # predictors keep their keys
        ("plots", ["plots", "width"], 5.0, {"plot": 6, "rank": 1, "plot_loss_along_sft": 1, "all": 1}),  # + rank's
        # loss along SFT: its own settings rerun the along jobs and what reads their table, never SFT or the tidy table
        ("along_n", ["along_sft", "n"], 2, ALONG_ONLY),
        ("along_problems", ["along_sft", "problems"], 4, ALONG_ONLY),
        ("along_calls", ["along_sft", "prompts_per_call"], 3, ALONG_ONLY),
    ],
)
def test_a_change_reruns_only_what_consumes_it(
    smoke_study: tuple[Path, Path], tmp_path: Path, name: str, key: list, value: object, expected: dict
) -> None:
    workdir, configfile = smoke_study
    planned = planned_jobs(workdir, variant(configfile, tmp_path, name, {"key": key, "value": value}))
    assert not set(planned) & TRAINING_SAMPLING_GRADING, planned
    assert planned == Counter(expected)


def test_a_calibration_csv_reruns_only_the_ranking(smoke_study: tuple[Path, Path], tmp_path: Path) -> None:
    """analysis.rank.calibration_csv is read by rule rank alone (an input: a changed file reruns it too). A planned
    change only: the smoke study has no run without RL to give a score for (tests/test_candidates.py runs one)."""
    workdir, configfile = smoke_study
    csv = tmp_path / "post_rl.csv"
    csv.write_text("run,post_rl\nsome_run,0.3\n")
    changed = variant(configfile, tmp_path, "calibration", {"key": ["analysis", "rank", "calibration_csv"],
                                                             "value": str(csv)})  # fmt: skip
    assert planned_jobs(workdir, changed) == Counter({"rank": 1, "all": 1})


def test_eval_n_reruns_sampling_and_what_follows_but_no_training(smoke_study: tuple[Path, Path], tmp_path: Path):
    workdir, configfile = smoke_study
    planned = planned_jobs(workdir, variant(configfile, tmp_path, "n", {"key": ["eval", "n"], "value": 3}))
    models, benchmarks = 1 + 4 + 5, 2  # base, 4 SFT recipes, 5 GRPO runs
    assert planned == Counter(
        {"sample_shard": models * benchmarks, "grade": models * benchmarks, "score": models, **AFTER_TIDY}
    )


def test_per_model_sampling_jobs_resample_once_per_model_and_train_nothing(
    smoke_study: tuple[Path, Path], tmp_path: Path
):
    """eval.sample_jobs: per_model is a job cut: one sampling job per model replaces one per (model, benchmark);
    the gathered samples files are rewritten from them (same samples), and nothing is trained."""
    workdir, configfile = smoke_study
    changed = variant(configfile, tmp_path, "per_model", {"key": ["eval", "sample_jobs"], "value": "per_model"})
    planned = planned_jobs(workdir, changed)
    models, benchmarks = 1 + 4 + 5, 2
    assert planned["sample_model_shard"] == models and "sample_shard" not in planned
    assert planned["grade"] == models * benchmarks
    assert not {"sft", "grpo", "pretrain", "genloss", "loss_along_sft"} & set(planned)


def test_a_recipes_snapshot_count_reruns_its_sft_chain_only(smoke_study: tuple[Path, Path], tmp_path: Path):
    """sft snapshots is a setting of the SFT job (its second output changes): that recipe's chain reruns."""
    workdir, configfile = smoke_study
    key = ["sft", "recipes", "random_n64_ep2", "snapshots"]
    planned = planned_jobs(workdir, variant(configfile, tmp_path, "snapshots", {"key": key, "value": 2}))
    assert planned["sft"] == 1 and planned["loss_along_sft"] == 1 and planned["genloss"] == 0
    assert planned["grpo"] == 1 and planned["pretrain"] == 0 and planned["loss_along_sft_table"] == 1


def test_a_two_study_paper_reuses_a_finished_study_and_adds_the_cross_study_tables(
    smoke_study: tuple[Path, Path],
) -> None:
    """config/smoke_paper.yaml = the smoke study (already finished here) + a second seed, as one DAG."""
    workdir, _ = smoke_study
    paper = REPO / "config" / "smoke_paper.yaml"
    planned = planned_jobs(workdir, paper)
    alone = planned_jobs(workdir / "fresh", REPO / "config" / "smoke.yaml")  # a whole study, planned from nothing
    assert planned == alone + Counter({"paper_tables": 1, "paper_figure": 1, "paper_ranking": 1})  # smoke_b's, once
    snakemake(workdir, paper)
    tables = pd.read_csv(workdir / "results" / "smoke_paper" / "tables" / "paper_predictors.csv")
    assert list(dict.fromkeys(tables["study"])) == ["smoke", "smoke_b"]
    markdown = (workdir / "results" / "smoke_paper" / "tables" / "paper_tables.md").read_text()
    assert "smoke (seed 0)" in markdown and "smoke (seed 1)" in markdown
    assert (workdir / "results" / "smoke_paper" / "figures" / "model_comparison.png").stat().st_size > 1000
    ranked = (workdir / "results" / "smoke_paper" / "tables" / "paper_ranking.md").read_text()
    assert "| smoke (seed 0) |" in ranked and "| smoke (seed 1) |" in ranked
    assert (workdir / "results" / "smoke_b" / "tables" / "tidy.csv").exists()
    assert planned_jobs(workdir, paper) == Counter()  # and the paper is complete


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
    smoke_study: tuple[Path, Path], tmp_path: Path
) -> None:
    """A GSM8K-format file through the `benchmark` rule, two `sample_shard` jobs and `grade` (which joins them).

    Only this benchmark's jobs run: the base model and everything else of the finished smoke study are reused.
    """
    workdir, configfile = smoke_study
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


def _hub_format_files(world: Path, folder: Path) -> dict[str, Path]:
    """The smoke world's problems written in each paper source's own format (Nemotron chat rows, MATH train,
    DeepScaleR, GSM8K test), plus the faults a real dump has: a contaminated, a duplicate and a broken row."""
    sft = pd.read_parquet(world / "sft.parquet")
    rl = pd.read_parquet(world / "rl.parquet")
    bench = pd.read_parquet(world / "benchmarks" / "addsub2.parquet")
    rows = [
        {"input": [{"role": "system", "content": "detailed thinking off"}, {"role": "user", "content": p}],
         "output": r, "reasoning": "off", "generator": "world"}
        for p, r in zip(sft["prompt"], sft["response"], strict=True)
    ]
    contaminated = {**rows[0], "input": [{"role": "user", "content": bench["prompt"].iloc[0]}]}
    rows += [rows[1], contaminated, {"input": [{"role": "user", "content": "1+1="}]}]  # duplicate, leak, no output
    files = {"nemotron": folder / "nemotron.jsonl", "math": folder / "math.parquet", "dsr": folder / "dsr.jsonl",
             "gsm8k": folder / "gsm8k.jsonl"}
    files["nemotron"].write_text("".join(json.dumps(row) + "\n" for row in rows))
    half = len(rl) // 2
    pd.DataFrame({"problem": rl["prompt"][:half], "solution": [f"So \\boxed{{{a}}}." for a in rl["answer"][:half]],
                  "level": "Level 1", "type": "Arithmetic"}).to_parquet(files["math"])
    files["dsr"].write_text("".join(json.dumps({"problem": p, "answer": a, "solution": ""}) + "\n"
                                    for p, a in zip(rl["prompt"][half:], rl["answer"][half:], strict=True)))
    files["gsm8k"].write_text("".join(json.dumps({"question": p, "answer": f"Add.\n#### {a}"}) + "\n"
                                      for p, a in zip(bench["prompt"], bench["answer"], strict=True)))
    return files


def test_paper_path_hub_model_and_hub_format_data_run_end_to_end(
    smoke_study: tuple[Path, Path], tmp_path: Path
) -> None:
    """data.source 'hub' and base_model.source 'hub' through real Snakemake, on files in the sources' formats:
    raw sources, audited filters, held-out split, SFT, GRPO, a registry benchmark, tables and figures."""
    workdir, _ = smoke_study
    files = _hub_format_files(workdir / "results" / "smoke" / "data", tmp_path)
    config = {
        "study": "hubsmoke",
        "data": {
            "source": "hub",
            "sft": {"name": "nemotron_math", "path": str(files["nemotron"])},
            "rl": [
                {"name": "math_train", "path": str(files["math"])},
                {"name": "deepscaler", "path": str(files["dsr"])},
            ],
            "heldout_size": 16,
            "filters": {"max_tokens": 200},
        },
        "base_model": {"source": "hub", "path": str(workdir / "results" / "smoke" / "models" / "base")},
        "sft": {"defaults": {"batch_size": 16}, "recipes": {
            "random_n48_ep1": {"subset": "random", "n": 48, "epochs": 1, "dataset_level": True},
            "random_n48_ep2": {"subset": "random", "n": 48, "epochs": 2, "dataset_level": True,
                               "instance_level": True},
            "shortest_n48_ep2": {"subset": "shortest", "n": 48, "epochs": 2, "instance_level": True},
        }},
        "rl": {"steps": 2, "prompts_per_step": 2, "group_size": 4, "max_completion_length": 24},
        "eval": {"benchmarks": {"gsm8k": {"path": str(files["gsm8k"])}}, "n": 4, "max_new_tokens": 24,
                 "prompts_per_call": 8, "bootstrap": 50},
        "analysis": {"n_splits": 20},
    }
    configfile = tmp_path / "hubsmoke.yaml"
    configfile.write_text(yaml.safe_dump(config))
    hub_workdir = tmp_path / "run"
    hub_workdir.mkdir()
    snakemake(hub_workdir, configfile)

    results = hub_workdir / "results" / "hubsmoke"
    raw = json.loads((results / "data" / "raw" / "sft-nemotron_math.parquet.manifest.json").read_text())
    n_sft = len(pd.read_parquet(workdir / "results" / "smoke" / "data" / "sft.parquet"))
    assert raw["rows"]["read"] == n_sft + 3 and raw["rows"]["kept"] == n_sft + 2
    audit = pd.read_parquet(results / "data" / "clean" / "sft.audit.parquet")
    dropped = audit[~audit["kept"]]
    assert set(dropped["reason"]) == {"duplicate_exact", "contaminated:gsm8k"}, dropped
    manifest = json.loads((results / "data" / "clean" / "sft.manifest.json").read_text())
    assert manifest["outputs"]["clean"]["sha256"] == sha256_file(results / "data" / "clean" / "sft.parquet")
    heldout = pd.read_parquet(results / "data" / "heldout.parquet")
    pool = pd.read_parquet(results / "data" / "sft.parquet")
    assert len(heldout) == 16 and not set(heldout["problem_id"]) & set(pool["problem_id"])
    rl = pd.read_parquet(results / "data" / "rl.parquet")
    assert {pid.split("-")[0] for pid in rl["problem_id"]} == {"math_train", "deepscaler"}
    lineage = json.loads((results / "rl" / "random_n48_ep1" / "lineage.json").read_text())
    assert lineage["parent"]["lineage"]["parent"]["lineage"]["source"]["kind"] == "local"
    tidy = pd.read_csv(results / "tables" / "tidy.csv")
    assert set(tidy["benchmark"]) >= {"gsm8k", "macro", "heldout"}
    assert (results / "figures" / "predictor_scatter.png").stat().st_size > 1000


PAPER_JOBS = {  # 10 SFT recipes, GRPO from each and from the base, 22 models x 7 benchmarks x 4 shards
    "base_model": 1, "source": 3, "filter_sft": 1, "split_heldout": 1, "filter_rl": 1, "benchmark": 7, "subset": 5,
    "sft": 10, "grpo": 11, "sample_shard": 616, "grade": 154, "score": 22,
    "recipes_table": 1, "tidy_table": 1, "predictors": 1, "findings": 1, "rank": 1, "plot": 6, "all": 1,
}
PAPER_JOBS["predictor_cost"] = 1  # +1 per study: tables/predictor_cost
PAPER_JOBS.update({"loss_along_sft": 10, "loss_along_sft_table": 1, "plot_loss_along_sft": 1})  # +12: loss along SFT
# (each recipe's genloss is written by its loss_along_sft job; each model's shards are joined by its grade jobs)


@pytest.mark.parametrize("name", ["paper_llama3_nemotron", "paper_mistral_acereason", "paper_qwen3_base"])
def test_paper_configs_plan_the_expected_jobs(name: str, tmp_path: Path) -> None:
    """The README's job counts, as a dry run computes them (no download, no GPU)."""
    jobs = planned_jobs(tmp_path, REPO / "config" / f"{name}.yaml")
    assert dict(jobs) == PAPER_JOBS
    assert sum(jobs.values()) == 857


def test_the_whole_paper_plans_as_one_dag(tmp_path: Path) -> None:
    """config/paper.yaml: the three studies' jobs, one `all`, and the three paper-level jobs."""
    jobs = planned_jobs(tmp_path, REPO / "config" / "paper.yaml")
    expected = Counter({rule: 3 * count for rule, count in PAPER_JOBS.items()})
    expected.update({"all": -2, "paper_tables": 1, "paper_figure": 1, "paper_ranking": 1})
    assert jobs == expected
    assert sum(jobs.values()) == 2572
