"""Studies of a run: a study config is a run of one study; a paper config lists several, checked across studies."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quagmire.config import (
    filter_job_settings,
    grpo_job_settings,
    load_config,
    recipe_settings,
    recipe_table_settings,
    sft_checkpointing,
    sft_job_settings,
)
from quagmire.errors import QuagmireError
from quagmire.studies import load_run

REPO = Path(__file__).resolve().parents[1]


def test_a_study_config_is_a_run_of_one_study_without_paper_outputs():
    run = load_run(yaml.safe_load((REPO / "config" / "smoke.yaml").read_text()))
    assert list(run.studies) == ["smoke"] and run.paper is None and run.paper_outputs() == []
    smoke = run.studies["smoke"]
    assert smoke.recipes == ["random_n128_ep1", "random_n64_ep1", "random_n64_ep2", "shortest_n64_ep1"]
    assert smoke.rl_runs == smoke.recipes + ["base"]
    assert smoke.benchmarks == ["addsub2", "mul2"] and smoke.shards == 1 and not smoke.reads_hub
    assert run.final_outputs()[:2] == ["results/smoke/tables/tidy.csv", "results/smoke/tables/predictors.csv"]


def test_the_paper_config_runs_the_three_model_studies_in_order():
    run = load_run(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), search=[REPO])
    assert list(run.studies) == ["paper_llama3_nemotron", "paper_mistral_acereason", "paper_qwen3_base"]
    assert run.paper == "paper"
    assert run.paper_outputs() == [
        "results/paper/tables/paper_predictors.csv",
        "results/paper/tables/paper_tables.md",
        "results/paper/tables/paper_ranking.md",
        "results/paper/figures/model_comparison.png",
    ]
    for study in run.studies.values():  # each study is exactly its own file, validated
        assert study.config == load_config(REPO / "config" / f"{study.name}.yaml")
        assert study.hub_data and study.hub_model and study.shards == 4 and study.reads_hub


def test_an_inline_study_extends_a_file_and_its_own_keys_win():
    run = load_run(yaml.safe_load((REPO / "config" / "smoke_paper.yaml").read_text()), search=[REPO])
    smoke, other = run.studies["smoke"], run.studies["smoke_b"]
    assert other.config["seed"] == 1 and smoke.config["seed"] == 0
    assert other.config["label"] == "smoke (seed 1)"
    assert {k: v for k, v in other.config.items() if k not in ("study", "seed", "label")} == {
        k: v for k, v in smoke.config.items() if k not in ("study", "seed", "label")
    }


@pytest.mark.parametrize(
    ("paper", "message"),
    [
        ({"paper": "p", "studies": ["config/smoke.yaml", "config/smoke.yaml"]}, "study name 'smoke' appears twice"),
        ({"paper": "smoke", "studies": ["config/smoke.yaml"]}, "paper name 'smoke' is also a study's name"),
        ({"paper": "p", "studies": []}, "studies: [] should be non-empty"),
        ({"paper": "p", "studies": ["config/smoke.yaml"], "plot": {}}, "unknown key plot"),
        ({"paper": "p", "studies": ["nope.yaml"]}, "config file not found: nope.yaml"),
        ({"paper": "p", "studies": [{"extends": "config/smoke.yaml", "study": "b", "eval": {"nn": 1}}]},
         "studies[0] (extends config/smoke.yaml): unknown key eval.nn"),
        ({"paper": "p", "studies": [{"study": "x", "world": {"benchmarks": {"gsm8k": {"size": 4}}}},
                                    {"study": "y", "eval": {"benchmarks": {"gsm8k": {}}}}]},
         "benchmark name 'gsm8k' is a world benchmark in study 'x' and a registry benchmark"),
    ],
)
def test_paper_config_errors_name_what_to_fix(paper: dict, message: str):
    with pytest.raises(QuagmireError) as err:
        load_run(paper, source="p.yaml", search=[REPO])
    assert message in str(err.value)


def test_job_settings_leave_out_labels_and_operational_knobs():
    """What a rule's params carry: a label or a checkpoint cadence must not rerun a training job."""
    config = load_config(REPO / "config" / "config.yaml")
    full = recipe_settings(config, "random_n2048_ep2")
    assert full["dataset_level"] and full["instance_level"] and "save_steps" in full
    job = sft_job_settings(config, "random_n2048_ep2")
    assert job == {k: v for k, v in full.items()
                   if k not in ("dataset_level", "instance_level", "save_steps", "save_total_limit")}
    assert sft_checkpointing(config, "random_n2048_ep2") == {"save_steps": 100, "save_total_limit": 2}
    rl = grpo_job_settings(config)
    assert not {"from_base", "save_steps", "save_total_limit", "vllm_gpu_memory_utilization"} & set(rl)
    assert rl["lr"] == config["rl"]["lr"] and rl["use_vllm"] is False  # what changes a result stays
    assert "gold_workers" not in filter_job_settings(config) and "dedup" in filter_job_settings(config)
    table = recipe_table_settings(config)["random_n2048_ep2"]  # the recipes table: labels yes, cadence no
    assert table == {"subset": "random", "n": 2048, "epochs": 2, "lr": full["lr"], "dataset_level": True,
                     "instance_level": True}
