"""`quagmire plan`: the real DAG's jobs with each job's evaluated request, and what they add up to.

The expected hours are computed here from the config file and the rule -> resource family wiring of rules/*.smk,
never from quagmire.plan, so a planning bug cannot agree with itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from quagmire.cli import main
from quagmire.plan import families, family_of, format_plan, gpus_of, plan_workflow
from test_dag import PAPER_JOBS

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper_llama3_nemotron.yaml"
SMOKE = REPO / "config" / "smoke.yaml"

# rules/*.smk: which resources family each cluster rule asks for (job_resources(...)); local rules are not billed
CLUSTER_FAMILY = {
    "base_model": "data", "source": "data", "filter_sft": "data", "split_heldout": "data", "filter_rl": "data",
    "benchmark": "data", "subset": "data", "sft": "train", "grpo": "rl",
    "sample_shard": "sample", "grade": "grade", "loss_along_sft": "genloss",
}  # fmt: skip
LOCAL_RULES = {
    "score", "recipes_table", "tidy_table", "predictors", "findings", "rank", "predictor_cost",
    "plot", "all", "loss_along_sft_table", "plot_loss_along_sft",
}
SMOKE_JOBS = {
    "world": 1, "world_benchmark": 2, "tokenizer": 1, "pretrain": 1, "subset": 3, "sft": 4, "grpo": 5,
    "sample_shard": 20, "grade": 20, "score": 10, "recipes_table": 1, "tidy_table": 1,
    "predictors": 1, "findings": 1, "rank": 1, "predictor_cost": 1, "plot": 6, "all": 1,
    "loss_along_sft": 4, "loss_along_sft_table": 1, "plot_loss_along_sft": 1,
}  # fmt: skip  (eval.shards 1: every evaluation is one sample_shard job per benchmark, joined by its grade job)


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory: pytest.TempPathFactory):
    return plan_workflow(PAPER, workdir=tmp_path_factory.mktemp("paper"))


def test_paper_plan_counts_the_readme_jobs_per_rule(paper_plan) -> None:
    assert paper_plan.jobs_per_rule() == PAPER_JOBS
    assert paper_plan.jobs == 857 and paper_plan.done == 0
    assert set(PAPER_JOBS) == set(CLUSTER_FAMILY) | LOCAL_RULES


def test_paper_plan_gpu_and_cpu_hours_equal_the_configs_resources(paper_plan) -> None:
    resources = yaml.safe_load(PAPER.read_text())["resources"]
    threads = yaml.safe_load(PAPER.read_text())["threads"]
    gpu_hours = sum(
        PAPER_JOBS[rule] * resources[fam].get("gpu", 0) * resources[fam]["runtime"] / 60
        for rule, fam in CLUSTER_FAMILY.items()
    )
    cpu_hours = sum(
        PAPER_JOBS[rule] * resources[fam].get("cpus_per_task", threads) * resources[fam]["runtime"] / 60
        for rule, fam in CLUSTER_FAMILY.items()
    )
    # 10 SFT x 8 GPUs x 24 h + 11 GRPO x 8 x 48 h + 616 shards x 1 x 8 h + 10 loss-along-SFT (with genloss)
    # x 1 x 1 h (base_model: no GPU)
    assert gpu_hours == 1920 + 4224 + 4928 + 10
    assert paper_plan.gpu_hours == pytest.approx(gpu_hours)
    assert paper_plan.cpu_hours == pytest.approx(cpu_hours)


def test_paper_plan_rows_carry_each_jobs_request_and_family(paper_plan) -> None:
    resources = yaml.safe_load(PAPER.read_text())["resources"]
    rows = {row.rule: row for row in paper_plan.rows}
    assert len(rows) == len(paper_plan.rows)  # every rule asks for one thing in a one-study config
    for rule, fam in CLUSTER_FAMILY.items():
        row = rows[rule]
        assert (row.family, row.local) == (fam, False)
        assert (row.gpu, row.runtime_min, row.mem_mb) == (
            resources[fam].get("gpu", 0), resources[fam]["runtime"], resources[fam]["mem_mb"]
        )
    for rule in LOCAL_RULES:
        assert rows[rule].local and rows[rule].gpu_hours == 0
    assert rows["score"].family == "analysis"


def test_smoke_plan_has_no_gpus_and_counts_threads_as_cpus(tmp_path: Path) -> None:
    plan = plan_workflow(SMOKE, workdir=tmp_path)
    assert plan.jobs_per_rule() == SMOKE_JOBS and plan.jobs == 86
    assert plan.gpu_hours == 0
    config = yaml.safe_load(SMOKE.read_text())
    assert all(row.cpus == config.get("threads", 1) for row in plan.rows if row.rule in ("sft", "grade"))
    assert plan.cpu_hours > 0
    text = format_plan(plan)
    assert "0.0 GPU-hours" in text and "no job is done yet" in text


def test_existing_outputs_are_not_counted_unless_all_jobs(tmp_path: Path) -> None:
    done = tmp_path / "results" / "paper_llama3_nemotron" / "data" / "benchmarks" / "gsm8k.parquet"
    done.parent.mkdir(parents=True)
    done.write_bytes(b"")
    plan = plan_workflow(PAPER, workdir=tmp_path)
    assert plan.jobs_per_rule()["benchmark"] == 6 and plan.done == 1 and plan.jobs == 856
    assert "1 of 857 jobs are already done and not counted" in format_plan(plan)
    everything = plan_workflow(PAPER, workdir=tmp_path, all_jobs=True)
    assert everything.jobs_per_rule() == PAPER_JOBS


def test_target_plans_only_what_it_needs(tmp_path: Path) -> None:
    plan = plan_workflow(SMOKE, targets=["results/smoke/sft/random_n64_ep1"], workdir=tmp_path)
    assert plan.jobs_per_rule() == {"world": 1, "tokenizer": 1, "pretrain": 1, "subset": 1, "sft": 1}


def test_cli_prints_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", str(SMOKE), "-d", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].split()[:4] == ["rule", "family", "runs", "on"]
    assert "total" in out and "local rules run on the submitting host" in out
    assert main(["plan", str(SMOKE), "-d", str(tmp_path), "--json", "--target", "results/smoke/tables/tidy.csv"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gpu_hours"] == 0 and report["jobs"] == sum(row["jobs"] for row in report["rows"])
    assert "all" not in {row["rule"] for row in report["rows"]}


@pytest.mark.parametrize(
    ("change", "named"),
    [({"sft": {"defaults": {"lrr": 0.1}}}, "sft.defaults.lrr"), ({"eval": {"n": "many"}}, "eval.n")],
)
def test_config_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, change: dict, named: str) -> None:
    config = yaml.safe_load(SMOKE.read_text())
    for key, value in change.items():
        config.setdefault(key, {}).update(value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    assert main(["plan", str(bad), "-d", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("quagmire plan: ") and named in err and "\n" not in err


def test_missing_config_and_unknown_target_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"quagmire plan: no such config file: {tmp_path / 'nope.yaml'}"
    assert main(["plan", str(SMOKE), "-d", str(tmp_path), "--target", "no/such/file"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no/such/file" in err and "\n" not in err


def test_request_helpers() -> None:
    assert gpus_of({"gpu": 8}) == 8 and gpus_of({"gres": "gpu:a100:4"}) == 4 and gpus_of({"gres": "gpu:2"}) == 2
    assert gpus_of({"mem_mb": 1000}) == 0
    config = {"resources": {"train": {"gpu": 8, "runtime": 60}, "rl": {"gpu": 8, "runtime": 60}}, "studies": {
        "a": {"resources": {"sample": {"gpu": 1, "runtime": 30}}}, "b": {"resources": {"sample": {"runtime": 90}}}}}
    known = families(config)
    assert family_of({"gpu": 8, "runtime": 60, "mem_mb": 1}, known) == "rl|train"  # identical requests: both named
    assert family_of({"gpu": 0, "runtime": 90}, known) == "sample"  # per-study sections are searched too
    assert family_of({"runtime": 5}, known) == ""


def test_per_study_callable_resources_are_evaluated_per_job(tmp_path: Path) -> None:
    """A config holding several studies, whose rule asks for each study's own resources through a callable."""
    (tmp_path / "studies.yaml").write_text(
        yaml.safe_dump(
            {
                "studies": {
                    "a": {"resources": {"train": {"gpu": 8, "runtime": 120}}},
                    "b": {"resources": {"train": {"gpu": 2, "runtime": 30}}},
                }
            }
        )
    )
    (tmp_path / "Snakefile").write_text(
        "def res(key):\n"
        "    return lambda wildcards: config['studies'][wildcards.study]['resources']['train'][key]\n\n"
        "rule all:\n"
        "    input: expand('out/{study}/model', study=sorted(config['studies']))\n\n"
        "rule train:\n"
        "    output: 'out/{study}/model'\n"
        "    threads: 4\n"
        "    resources: gpu=res('gpu'), runtime=res('runtime')\n"
        "    shell: 'touch {output}'\n"
    )
    plan = plan_workflow(tmp_path / "studies.yaml", workdir=tmp_path, snakefile=tmp_path / "Snakefile")
    train = sorted((r for r in plan.rows if r.rule == "train"), key=lambda r: r.gpu)
    assert [(r.jobs, r.gpu, r.runtime_min, r.cpus, r.family) for r in train] == [
        (1, 2, 30, 4, "train"), (1, 8, 120, 4, "train")
    ]
    assert plan.gpu_hours == pytest.approx(8 * 2 + 2 * 0.5)
    assert plan.cpu_hours == pytest.approx(4 * 2 + 4 * 0.5)
