"""Bring your own candidates: SFT checkpoints the study did not train, evaluated and ranked beside its recipes.

Config validation (one error naming the key), the candidate's model brought in like a hub base model, its losses
in the tidy table by held-out set, the loss filter comparing only losses on the same set, post-RL scores from a
calibration CSV, and the smoke DAG with two candidates (a local folder and a pinned snapshot in a local hub cache).
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import quagmire.train.base_model as base_model
from quagmire.analysis import ranking
from quagmire.analysis.tables import tidy_to_file
from quagmire.config import load_config, missing_local_files, unpinned_hub_inputs, validate_config
from quagmire.errors import QuagmireError
from quagmire.io import read_json
from quagmire.provenance import sha256_file
from quagmire.studies import load_run

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "examples" / "candidates.yaml"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
DEFAULTS = {"loss_quantile": 0.75, "loss_threshold": None, "interval_level": 0.95}
OWN_SET = {"name": "ext", "path": "ext.jsonl", "prompt_field": "prompt", "response_field": "response",
           "answer_field": "answer"}  # fmt: skip


def study(**sections: Any) -> dict[str, Any]:
    return {"study": "t", "sft": {"recipes": {"r1": {"subset": "random", "n": 8, "epochs": 1}}}, **sections}


def one_error(build: Any) -> str:
    with pytest.raises(QuagmireError) as info:
        build()
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --- config ---------------------------------------------------------------------------------------------------


def test_no_candidates_by_default_and_no_calibration_csv():
    config = validate_config({"study": "t"})
    assert config["candidates"] == {}
    assert "calibration_csv" not in config["analysis"]["rank"]  # absent, so the rank job's params stay as they were


BAD = [
    ({"r1": {"path": "x"}}, "candidates.r1: 'r1' is already a recipe's name (sft.recipes.r1)"),
    ({"base": {"path": "x"}}, 'candidates: "base" is not an allowed name here'),
    ({"my-model": {"path": "x"}}, 'candidates: "my-model" is not an allowed name here'),
    ({"c": {}}, "candidates.c: needs path (a local checkpoint folder) or hub_id with a pinned revision"),
    ({"c": {"hub_id": "org/m"}}, "candidates.c.revision: hub_id 'org/m' needs a pinned revision"),
    ({"c": {"hub_id": "org/m", "revision": "main"}}, 'candidates.c.revision: "main" is not a commit'),
    ({"c": {"path": "x", "weights": 1}}, "unknown key candidates.c.weights"),
    ({"c": {"path": "x", "heldout": "mine"}}, "candidates.c.heldout"),
    ({"c": {"path": "x", "heldout": {**OWN_SET, "name": "study"}}}, "candidates.c.heldout.name: 'study' names"),
    ({"c": {"path": "x", "heldout": OWN_SET}, "d": {"path": "y", "heldout": {**OWN_SET, "path": "other.jsonl"}}},
     "candidates.d.heldout: held-out set 'ext' is given with other settings in candidates.c.heldout"),
]


@pytest.mark.parametrize(("candidates", "named"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_a_bad_candidate_is_one_error_naming_the_key(candidates: dict, named: str) -> None:
    message = one_error(lambda: validate_config(study(candidates=candidates), source="my.yaml"))
    assert message.startswith("config error in my.yaml: ") and named in message, message


def test_missing_local_inputs_are_refused_before_any_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = study(candidates={"c": {"path": "ckpt"}})
    assert "candidates.c.path: folder not found: ckpt" in one_error(lambda: load_run(folder, source="bad.yaml"))
    Path("ckpt").mkdir()
    heldout = study(candidates={"c": {"path": "ckpt", "heldout": OWN_SET}})
    assert "candidates.c.heldout.path: file not found: ext.jsonl" in one_error(lambda: load_run(heldout))
    Path("ext.jsonl").write_text('{"prompt": "1+1=", "response": "\\\\boxed{2}", "answer": "2"}\n')
    calibration = {**heldout, "analysis": {"rank": {"calibration_csv": "post_rl.csv"}}}
    assert "analysis.rank.calibration_csv: file not found: post_rl.csv" in one_error(lambda: load_run(calibration))
    Path("post_rl.csv").write_text("run,post_rl\nc,0.3\n")
    run = load_run(calibration)
    assert run.studies["t"].candidates == ["c"] and run.studies["t"].heldout_sets == {"ext": OWN_SET}
    assert ("candidate", "c") in run.studies["t"].evaluated_models
    no_response = {**OWN_SET, "response_field": None}
    message = one_error(lambda: load_run(study(candidates={"c": {"path": "ckpt", "heldout": no_response}})))
    assert "candidates.c.heldout: source ext: an SFT source needs response_field" in message


def test_hub_candidates_and_hub_heldout_sets_need_the_network_and_pins() -> None:
    config = validate_config(study(candidates={
        "c": {"hub_id": "org/m", "revision": COMMIT, "heldout": {"name": "h", "hub_id": "org/d",
                                                                 "response_field": "response"}},
    }))  # fmt: skip
    assert unpinned_hub_inputs(config) == ["candidates.c.heldout"]
    run = load_run(config)
    assert run.studies["t"].reads_hub


def test_the_example_config_validates_and_names_its_local_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = load_config(EXAMPLE)
    assert config["candidates"] and config["analysis"]["rank"]["calibration_csv"]
    monkeypatch.chdir(tmp_path)  # none of its files exist here: each is named
    keys = [key for key, _ in missing_local_files(config)]
    assert [k for k in keys if k.startswith("candidates.")] == [
        f"candidates.{name}.path" for name, c in sorted(config["candidates"].items()) if "path" in c
    ] + [f"candidates.{name}.heldout.path" for name, c in sorted(config["candidates"].items())
         if isinstance(c["heldout"], dict) and "path" in c["heldout"]]  # fmt: skip
    assert "analysis.rank.calibration_csv" in keys
    # it is the smoke study plus its candidates: run after the smoke study, it evaluates the candidates only
    smoke = load_config(REPO / "config" / "smoke.yaml")
    assert {**config, "candidates": {}, "analysis": {**config["analysis"], "rank": smoke["analysis"]["rank"]}} == smoke


# --- the model ------------------------------------------------------------------------------------------------


def test_a_local_candidate_is_linked_checked_and_keeps_its_old_lineage(tiny_base: Path, tmp_path: Path) -> None:
    source = tmp_path / "ckpt"
    shutil.copytree(tiny_base, source)
    (source / "lineage.json").write_text(json.dumps({"kind": "sft", "parent": None}))
    out = tmp_path / "candidates" / "c"
    record = base_model.fetch_candidate("c", {"path": str(source)}, out)
    assert record["kind"] == "candidate" and record["source"]["kind"] == "local"
    assert record["source"]["lineage"] == {"kind": "sft", "parent": None}
    assert read_json(out / "lineage.json") == record
    assert (out / "model.safetensors").stat().st_ino == (source / "model.safetensors").stat().st_ino  # a link
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(QuagmireError, match=r"candidates.b .*no config.json"):
        base_model.fetch_candidate("b", {"path": str(broken)}, tmp_path / "candidates" / "b")
    with pytest.raises(QuagmireError, match=r"candidates.h org/m: a hub revision must be pinned"):
        base_model.fetch_candidate("h", {"hub_id": "org/m", "revision": "main"}, tmp_path / "candidates" / "h")
    assert not (tmp_path / "candidates" / "b").exists() and not (tmp_path / "candidates" / "h").exists()


def hub_cache(root: Path, hub_id: str, model: Path) -> Path:
    """A Hugging Face hub cache holding `model`'s files as `hub_id` at commit COMMIT (what a download leaves)."""
    repo = root / f"models--{hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for item in sorted(model.iterdir()):
        if item.is_file() and not item.name.startswith(".snakemake") and item.name != "lineage.json":
            blob = repo / "blobs" / sha256_file(item)
            shutil.copy(item, blob)
            (snapshot / item.name).symlink_to(Path("..", "..", "blobs", blob.name))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return root


def test_a_hub_candidate_is_read_from_the_hub_cache_offline_at_its_pinned_revision(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    cache = hub_cache(tmp_path / "hub", "org/cand", tiny_base)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # read once, at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "candidates" / "c"
    record = base_model.fetch_candidate("c", {"hub_id": "org/cand", "revision": COMMIT}, out)
    assert record["source"] == {"kind": "hub", "hub_id": "org/cand", "revision": COMMIT,
                                "files": record["source"]["files"]}  # fmt: skip
    assert record["source"]["files"]["model.safetensors"] == sha256_file(tiny_base / "model.safetensors")
    assert not (out / "model.safetensors").is_symlink()  # linked to the cache's blob, not to a symlink into it


# --- tables and ranking ---------------------------------------------------------------------------------------


def test_the_tidy_table_keeps_candidates_at_their_own_stage_with_their_held_out_set(tmp_path: Path) -> None:
    metrics = {"benchmarks": {"b": {"avg@4": 0.5}}, "macro": {"avg@4": 0.5, "pass@4": 0.8}}
    loss = {"genloss": 1.5, "n_tokens": 10, "n_examples": 2}
    for name, content in (("m.json", metrics), ("l.json", loss)):
        (tmp_path / name).write_text(json.dumps(content))
    m, lo = str(tmp_path / "m.json"), str(tmp_path / "l.json")
    tidy = tidy_to_file([("sft:r1", m), ("candidate:c1", m), ("candidate:c2", m)],
                        [("r1", lo), ("candidate:c1:study", lo), ("candidate:c2:ext", lo)], tmp_path / "t.csv")
    losses = tidy[tidy["metric"] == "genloss"].set_index("run")
    assert losses.loc["r1", "stage"] == "sft" and losses.loc["r1", "benchmark"] == "heldout"
    assert losses.loc["c1", "stage"] == "candidate" and losses.loc["c1", "benchmark"] == "heldout"
    assert losses.loc["c2", "benchmark"] == "heldout:ext"
    with pytest.raises(QuagmireError, match="candidate:RUN:SET"):
        tidy_to_file([("sft:r1", m)], [("candidate:c3", lo)], tmp_path / "u.csv")


def tables(recipes: dict[str, dict], candidates: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy and recipes tables: recipes {run: {pass, rl, loss, dataset}}, candidates {run: {pass, loss, set}}."""
    rows, table = [], []
    for run, r in recipes.items():
        rows += [(run, "sft", "macro", "avg@4", r["pass"] / 2), (run, "sft", "macro", "pass@4", r["pass"]),
                 (run, "sft", "heldout", "genloss", r["loss"])]  # fmt: skip
        if r.get("rl") is not None:
            rows.append((run, "rl", "macro", "avg@4", r["rl"]))
        dataset = r.get("dataset", True)
        table.append({"run": run, "subset": "random" if dataset else "shortest", "n_unique": 64, "epochs": 1,
                      "lr": 1e-3, "dataset_level": dataset, "instance_level": not dataset})  # fmt: skip
    for run, c in candidates.items():
        benchmark = "heldout" if c.get("set", "study") == "study" else f"heldout:{c['set']}"
        rows += [(run, "candidate", "macro", "avg@4", c["pass"] / 2), (run, "candidate", "macro", "pass@4", c["pass"]),
                 (run, "candidate", benchmark, "genloss", c["loss"])]  # fmt: skip
    return pd.DataFrame(rows, columns=["run", "stage", "benchmark", "metric", "value"]), pd.DataFrame(table)


RECIPES = {f"r{i}": {"pass": 0.1 * i, "rl": 0.05 * i + 0.01 * (i % 2), "loss": loss}
           for i, loss in enumerate([1.0, 2.0, 3.0, 4.0], 1)}  # fmt: skip
RECIPES["short"] = {"pass": 0.45, "rl": 0.2, "loss": 0.5, "dataset": False}
CANDIDATES = {
    "mine": {"pass": 0.7, "loss": 9.0},  # on the study's split: judged with r1-r4, and its loss is the highest
    "e1": {"pass": 0.6, "loss": 50.0, "set": "ext"},  # on a set of their own: judged among themselves only
    "e2": {"pass": 0.5, "loss": 10.0, "set": "ext"},
    "e3": {"pass": 0.15, "loss": 20.0, "set": "ext"},
    "lone": {"pass": 0.35, "loss": 0.1, "set": "solo"},
}


def test_losses_are_judged_only_among_runs_on_the_same_held_out_set() -> None:
    tidy, recipes = tables(RECIPES, CANDIDATES)
    table, calibration = ranking.rank_candidates(tidy, recipes, DEFAULTS)
    assert list(table.columns) == [*ranking.COLUMNS, *ranking.EXTRA_COLUMNS]
    by_run = table.set_index("run")
    # the study's split: r1-r4 and the candidate on it; quantile 0.75 of 1, 2, 3, 4, 9 is 4
    assert by_run.loc["mine", "loss_cutoff"] == pytest.approx(4.0) == by_run.loc["r1", "loss_cutoff"]
    assert by_run.loc["mine", "verdict"] == "drop" and by_run.loc["r4", "verdict"] == "keep"
    # the set 'ext': quantile 0.75 of 10, 20, 50 is 35, so the 50 is high there, however high its numbers look
    assert by_run.loc["e1", "loss_cutoff"] == pytest.approx(35.0)
    assert [by_run.loc[r, "verdict"] for r in ("e1", "e2", "e3")] == ["drop", "keep", "keep"]
    assert by_run.loc["lone", "verdict"] == ranking.NOT_JUDGED_FEW  # alone on its set
    assert by_run.loc["short", "verdict"] == ranking.NOT_JUDGED_LEVEL
    assert by_run.loc["e1", "heldout_set"] == "ext" and by_run.loc["r1", "heldout_set"] == "study"
    assert set(by_run.loc[list(CANDIDATES), "kind"]) == {"candidate"}
    # candidates get a prediction from the calibration on the recipes' RL runs, and no post-RL of their own
    assert calibration.n == 5 and table.loc[table["kind"] == "candidate", "post_rl"].isna().all()
    assert by_run.loc[list(CANDIDATES), "predicted_post_rl"].notna().all()
    assert table["rank"].tolist()[:3] == [1, 2, 3] and table.loc[0, "run"] == "e2"  # mine and e1 are dropped


def test_without_candidates_or_calibration_scores_the_table_keeps_its_columns() -> None:
    tidy, recipes = tables(RECIPES, {})
    table, _ = ranking.rank_candidates(tidy, recipes, DEFAULTS)
    assert list(table.columns) == list(ranking.COLUMNS)
    assert table["n_unique"].dtype == "int64"


def test_post_rl_scores_from_a_csv_join_the_calibration_and_the_leave_one_out(tmp_path: Path) -> None:
    tidy, recipes = tables(RECIPES, CANDIDATES)
    csv = tmp_path / "post_rl.csv"
    csv.write_text("run,benchmark,post_rl\ne2,macro,0.31\ne2,aime,0.9\nmine,macro,0.33\n")
    scores = ranking.read_calibration(csv)
    assert dict(zip(scores["run"], scores["post_rl"], strict=True)) == {"e2": 0.31, "mine": 0.33}
    table, calibration = ranking.rank_candidates(tidy, recipes, DEFAULTS, calibration_scores=scores)
    by_run = table.set_index("run")
    assert calibration.n == 7 and by_run.loc["e2", "post_rl"] == 0.31
    assert by_run.loc["e2", "post_rl_source"] == "calibration_csv" and by_run.loc["r1", "post_rl_source"] == "dag"
    assert by_run.loc["e3", "post_rl_source"] == ""
    loo = ranking.leave_one_out(table, 0.95)
    assert set(loo["run"]) == {"r1", "r2", "r3", "r4", "short", "e2", "mine"}
    # a study without candidates can calibrate on a recipe whose RL ran elsewhere (here: one without RL in the DAG)
    plain = {**RECIPES, "r5": {"pass": 0.5, "loss": 2.5}}
    tidy, recipes = tables(plain, {})
    (tmp_path / "r5.csv").write_text("run,post_rl\nr5,0.24\n")
    table, calibration = ranking.rank_candidates(tidy, recipes, DEFAULTS,
                                                 calibration_scores=ranking.read_calibration(tmp_path / "r5.csv"))
    assert calibration.n == 6 and list(table.columns) == [*ranking.COLUMNS, *ranking.EXTRA_COLUMNS]


CSV_ERRORS = [
    ("run,score\ne2,0.3\n", "missing column(s) post_rl"),
    ("run,post_rl\ne2,high\n", "line 2: post_rl 'high' of run 'e2' is not a number"),
    ("run,post_rl\ne2,\n", "line 2: post_rl '' of run 'e2' is not a number"),
    ("run,post_rl\ne2,31\n", "line 2: post_rl '31' of run 'e2' is not a score in [0, 1]"),
    ("run,post_rl\ne2,0.3\ne2,0.4\n", "run 'e2' is given 2 times"),
    ("run,post_rl\n", "no post-RL score in it"),
    ("run,post_rl\nnobody,0.3\n", "run 'nobody' is neither a recipe nor a candidate"),
    ("run,post_rl\nr1,0.3\n", "run 'r1' has a post-RL score from its GRPO run in the DAG already"),
]


@pytest.mark.parametrize(("text", "named"), CSV_ERRORS, ids=[f"csv{i}" for i in range(len(CSV_ERRORS))])
def test_a_bad_calibration_csv_is_one_error_naming_the_file_and_the_problem(tmp_path: Path, text: str, named: str):
    tidy, recipes = tables(RECIPES, CANDIDATES)
    csv = tmp_path / "post_rl.csv"
    csv.write_text(text)
    message = one_error(lambda: ranking.rank_candidates(tidy, recipes, DEFAULTS,
                                                        calibration_scores=ranking.read_calibration(csv)))
    assert message.startswith(f"analysis.rank.calibration_csv {csv}: ") and named in message, message


def test_the_rank_command_reads_the_calibration_csv_from_its_settings(tmp_path: Path, capsys) -> None:
    from quagmire.cli import main

    tidy, recipes = tables(RECIPES, CANDIDATES)
    tidy.to_csv(tmp_path / "tidy.csv", index=False)
    recipes.to_csv(tmp_path / "recipes.csv", index=False)
    (tmp_path / "post_rl.csv").write_text("run,post_rl\ne2,0.31\n")
    settings = {"k_large": None, "rank": {"calibration_csv": str(tmp_path / "post_rl.csv")}}
    out = {k: tmp_path / f"ranking.{k}" for k in ("csv", "md", "json", "png")}
    assert main(["rank", "--tidy", str(tmp_path / "tidy.csv"), "--recipes", str(tmp_path / "recipes.csv"),
                 "--settings", json.dumps(settings), "--plot-settings", "{}", "--out-csv", str(out["csv"]),
                 "--out-md", str(out["md"]), "--out-json", str(out["json"]), "--out-figure", str(out["png"])]) == 0
    markdown = capsys.readouterr().out
    assert "| held-out set |" in markdown and "e2 (candidate) | 10.000 | ext |" in markdown
    assert "0.310 (CSV)" in markdown
    record = json.loads(out["json"].read_text())
    assert record["calibration_csv"]["runs"] == {"e2": 0.31} and record["calibration"]["n"] == 6
    assert record["quality"]["n_runs_with_rl"] == 6
    written = pd.read_csv(out["csv"])
    assert written.set_index("run").loc["e2", "heldout_set"] == "ext"


# --- the DAG --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_candidates_are_brought_in_evaluated_and_ranked_beside_the_smoke_recipes(
    smoke_study: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local copy of one SFT checkpoint (judged on the study's split) and another checkpoint as a pinned snapshot
    in a local hub cache (judged on a held-out file of its own), plus a calibration CSV. Only their jobs and the
    tables after the tidy table run; the tables that do not list candidates stay byte for byte the same."""
    from dagrun import planned_jobs, snakemake

    workdir, configfile = smoke_study
    run = tmp_path / "run"
    shutil.copytree(workdir, run, symlinks=True)  # the finished smoke study, mtimes and Snakemake's records kept
    results = run / "results" / "smoke"
    recipes = sorted(p.name for p in (results / "sft").iterdir() if (p / "config.json").is_file())  # not snapshots
    local = tmp_path / "ckpt_local"
    shutil.copytree(results / "sft" / recipes[0], local)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache(tmp_path / "hub", "org/cand", results / "sft" / recipes[1])))
    heldout = pd.read_parquet(results / "data" / "heldout.parquet")
    own = tmp_path / "own_heldout.jsonl"
    own.write_text("".join(json.dumps({"prompt": p, "response": r, "answer": a}) + "\n"
                           for p, r, a in zip(heldout["prompt"][:12], heldout["response"][:12],
                                              heldout["answer"][:12], strict=True)))  # fmt: skip
    calibration = tmp_path / "post_rl.csv"
    calibration.write_text("run,post_rl\nmine,0.3\n")
    config = yaml.safe_load(configfile.read_text())
    config["candidates"] = {
        "mine": {"path": str(local)},
        "hubcand": {"hub_id": "org/cand", "revision": COMMIT,
                    "heldout": {**OWN_SET, "name": "own", "path": str(own)}},
    }  # fmt: skip
    config.setdefault("analysis", {}).setdefault("rank", {})["calibration_csv"] = str(calibration)
    changed = tmp_path / "candidates.yaml"
    changed.write_text(yaml.safe_dump(config))

    after_tidy = {"tidy_table": 1, "predictors": 1, "findings": 1, "rank": 1, "predictor_cost": 1, "plot": 6,
                  "all": 1}  # fmt: skip
    assert planned_jobs(run, changed) == Counter({
        "candidate_model": 2, "heldout_set": 1, "sample_shard": 4, "grade": 4, "score": 2,
        "genloss": 2, **after_tidy,
    })  # fmt: skip
    snakemake(run, changed)
    assert planned_jobs(run, changed) == Counter()

    lineage = read_json(results / "candidates" / "mine" / "lineage.json")
    assert lineage["kind"] == "candidate" and lineage["source"]["lineage"]["kind"] == "sft"
    hub = read_json(results / "candidates" / "hubcand" / "lineage.json")
    assert hub["source"]["kind"] == "hub" and hub["source"]["revision"] == COMMIT
    tidy = pd.read_csv(results / "tables" / "tidy.csv")
    losses = tidy[(tidy["stage"] == "candidate") & (tidy["metric"] == "genloss")].set_index("run")["benchmark"]
    assert losses.to_dict() == {"hubcand": "heldout:own", "mine": "heldout"}
    n_examples = tidy[(tidy["run"] == "hubcand") & (tidy["metric"] == "genloss_n_examples")]["value"]
    assert n_examples.tolist() == [12.0]
    # the same weights as the recipe they copy, on the same split: the same loss
    same = tidy[(tidy["metric"] == "genloss") & tidy["run"].isin(["mine", recipes[0]])]["value"]
    assert same.nunique() == 1
    table = pd.read_csv(results / "tables" / "ranking.csv").set_index("run")
    assert table.loc["mine", "kind"] == "candidate" and table.loc["mine", "post_rl"] == 0.3
    assert table.loc["mine", "post_rl_source"] == "calibration_csv" and table.loc["hubcand", "heldout_set"] == "own"
    assert math.isnan(table.loc["hubcand", "post_rl"]) and table.loc["hubcand", "verdict"] == ranking.NOT_JUDGED_FEW
    quality = json.loads((results / "tables" / "ranking_quality.json").read_text())
    assert quality["calibration"]["n"] == len(recipes) + 1 == quality["quality"]["n_runs_with_rl"]
    assert quality["calibration_csv"]["runs"] == {"mine": 0.3}
    # a prediction wherever there is a calibration line (the smoke models may all score the same pass@k: no line)
    fitted = quality["calibration"]["slope"] is not None
    assert table["predicted_post_rl"].notna().all() == fitted
    for name in ("recipes.csv", "predictors.csv", "predictor_values.csv", "passk_sweep.csv", "predictor_cost.csv",
                 "findings.json"):
        assert (results / "tables" / name).read_bytes() == (workdir / "results" / "smoke" / "tables" / name
                                                            ).read_bytes(), name  # fmt: skip
