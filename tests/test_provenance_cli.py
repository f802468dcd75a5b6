"""`quagmire provenance`: the lineage of any artifact back to the raw data, from Snakemake's records and the
project's manifests; `--check` finds a file changed since a step used it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from quagmire.audit import build_tree, render_text, snakemake_record_path
from quagmire.cli import main
from quagmire.eval.metrics import score_to_file
from quagmire.io import read_json, read_parquet_metadata
from quagmire.provenance import SIDECAR_SUFFIX, code_version, identity_sha256, sha256_file

FIGURE = "results/smoke/figures/predictor_scatter.png"


# --- records and manifests (fast) ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["results/smoke/tables/tidy.csv", "results/" + "x" * 400 + "/metrics.json"])
def test_the_record_path_is_the_one_snakemake_writes(tmp_path, key):
    from snakemake.persistence.file import FilePersistence

    stub = SimpleNamespace(_fetch_max_len=lambda subject: 255)
    assert snakemake_record_path(tmp_path, key) == Path(FilePersistence._record_path(stub, str(tmp_path), key))


def test_the_code_version_is_this_checkout_s_commit_and_dirty_flag():
    version = code_version()
    assert len(version["commit"]) == 40 and isinstance(version["dirty"], bool)


def _toy_grades(path: Path, correct: list[bool]) -> None:
    frame = pd.DataFrame({"problem_id": ["p1", "p1", "p2", "p2"], "sample_idx": [0, 1, 0, 1],
                          "extracted": ["1"] * 4, "status": ["correct" if c else "incorrect" for c in correct],
                          "correct": correct})
    frame.to_parquet(path)


@pytest.fixture
def toy_chain(tmp_path, monkeypatch):
    """grades (raw) -> metrics (score) -> tidy table (table), written by the library under results/, no Snakemake."""
    from quagmire.analysis.tables import tidy_to_file

    monkeypatch.chdir(tmp_path)  # paths as rules give them: relative to the working folder
    run = Path("results/toy/eval/sft/r")
    run.mkdir(parents=True)
    _toy_grades(run / "a.grades.parquet", [True, False, True, True])
    _toy_grades(run / "b.grades.parquet", [False, False, True, False])
    score_to_file({"a": run / "a.grades.parquet", "b": run / "b.grades.parquet"}, run / "metrics.json",
                  extra_ks=[], bootstrap=10)
    tidy_to_file([("sft:r", run / "metrics.json")], [], "results/toy/tables/tidy.csv")
    return tmp_path


def test_a_table_names_its_inputs_by_sha256_in_a_sidecar_and_its_bytes_stay_the_table(toy_chain):
    tidy = toy_chain / "results/toy/tables/tidy.csv"
    sidecar = read_json(f"{tidy}{SIDECAR_SUFFIX}")
    assert sidecar["step"] == "tidy_table" and sidecar["output"]["sha256"] == sha256_file(tidy)
    metrics = toy_chain / "results/toy/eval/sft/r/metrics.json"
    assert sidecar["inputs"] == [{"role": "metrics:sft:r", "path": "results/toy/eval/sft/r/metrics.json",
                                  "kind": "file", "sha256": sha256_file(metrics)}]
    assert tidy.read_text().splitlines()[0] == "run,stage,benchmark,metric,value"
    manifest = read_json(metrics)["manifest"]
    assert manifest["settings"] == {"extra_ks": [], "bootstrap": 10} and manifest["code"] == code_version()


def test_the_tree_of_a_table_without_snakemake_walks_the_manifests_to_the_raw_grades(toy_chain, capsys):
    tree = build_tree(toy_chain / "results/toy/tables/tidy.csv")
    assert tree.workdir == str(toy_chain) and not tree.snakemake_records
    assert sorted(step.rule for step in tree.steps.values()) == ["score", "tidy_table"]
    raw = {path for path, node in tree.files.items() if node.step is None}
    assert raw == {"results/toy/eval/sft/r/a.grades.parquet", "results/toy/eval/sft/r/b.grades.parquet"}
    assert tree.counts() == {"steps": 2, "files": 4, "hashes": 4, "raw_inputs": 2}
    assert "<- score" in render_text(tree) and "code: " + code_version()["commit"] in render_text(tree)

    assert main(["provenance", "results/toy/tables/tidy.csv", "--json", "--check"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["files"]["results/toy/eval/sft/r/a.grades.parquet"]["recorded"][0]["by"] == "score -> " \
        "results/toy/eval/sft/r/metrics.json"


def test_check_flags_a_raw_file_changed_after_a_step_read_it_and_exits_2(toy_chain, capsys):
    _toy_grades(toy_chain / "results/toy/eval/sft/r/b.grades.parquet", [True, True, True, True])
    assert main(["provenance", "results/toy/tables/tidy.csv", "--check"]) == 2
    captured = capsys.readouterr()
    changed = [line for line in captured.out.splitlines() if line.startswith("CHANGED")]
    assert len(changed) == 1 and changed[0].startswith("CHANGED results/toy/eval/sft/r/b.grades.parquet: ")
    assert "changed since" in captured.err


def test_provenance_of_a_missing_artifact_is_one_clear_error(tmp_path, capsys):
    assert main(["provenance", str(tmp_path / "nope.png")]) == 2
    assert "no such artifact" in capsys.readouterr().err


# --- the smoke study (slow: the session's smoke DAG) --------------------------------------------------------


def _copy(workdir: Path, dest: Path, snakemake_records: bool = True) -> Path:
    """The results (and Snakemake's records) of a study in another folder, mtimes kept."""
    dest.mkdir(parents=True)
    shutil.copytree(workdir / "results", dest / "results", symlinks=True)
    if snakemake_records:
        shutil.copytree(workdir / ".snakemake" / "metadata", dest / ".snakemake" / "metadata")
    return dest


def _signature(tree) -> dict[str, tuple]:
    """Per file: its sha256 and everything recorded about the step that made it."""
    out = {}
    for path, node in tree.files.items():
        step = tree.steps.get(node.step) if node.step else None
        out[path] = (node.sha256, None if step is None else (step.rule, json.dumps(step.settings, sort_keys=True),
                                                              step.params, step.inputs, step.finished, step.code))
    return out


@pytest.mark.slow
def test_the_tree_of_a_figure_reaches_the_world_data_with_sha256_and_code_versions(smoke_study, capsys):
    workdir, _ = smoke_study
    start = time.perf_counter()
    assert main(["provenance", str(workdir / FIGURE)]) == 0
    seconds = time.perf_counter() - start
    text = capsys.readouterr().out
    tree = build_tree(workdir / FIGURE)
    rules = {step.rule for step in tree.steps.values()}
    assert {"plot", "tidy_table", "score", "grade", "sample_shard", "grpo", "sft", "subset",
            "pretrain", "tokenizer", "world", "world_benchmark", "loss_along_sft", "recipes_table"} <= rules
    for data in ("sft", "heldout", "rl", "benchmarks/addsub2", "benchmarks/mul2"):
        node = tree.files[f"results/smoke/data/{data}.parquet"]
        assert node.sha256 == sha256_file(workdir / node.path)
        assert tree.steps[node.step].rule in ("world", "world_benchmark")
    world = next(step for step in tree.steps.values() if step.rule == "world")
    assert world.settings["seed"] == 0 and world.code["commit"] == code_version()["commit"]
    assert all(step.code for step in tree.steps.values() if step.rule != "tokenizer"), "a step without code version"
    sft = next(step for step in tree.steps.values() if step.rule == "sft")
    assert sft.packages["torch"] and sft.settings["epochs"] in (1, 2)
    assert tree.files["results/smoke/tables/tidy.csv"].recorded  # the figure's sidecar names the tidy table
    counts = tree.counts()
    assert f"{counts['steps']} steps, {counts['files']} files" in text
    print(f"\nprovenance of {FIGURE}: {counts}, {seconds:.2f} s")


@pytest.mark.slow
def test_json_and_check_on_a_copy_then_check_flags_a_modified_benchmark(smoke_study, tmp_path, capsys):
    workdir, _ = smoke_study
    copy = _copy(workdir, tmp_path / "copy")
    assert main(["provenance", str(copy / FIGURE), "--json", "--check"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["snakemake_records"] is True and document["counts"]["steps"] > 20
    assert not any(node["changed"] for node in document["files"].values())

    bench = copy / "results/smoke/data/benchmarks/mul2.parquet"
    frame = pd.read_parquet(bench)
    frame.loc[0, "prompt"] = frame.loc[0, "prompt"] + " "
    frame.to_parquet(bench)
    assert main(["provenance", str(copy / FIGURE), "--check"]) == 2
    changed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("CHANGED")]
    assert changed and all(line.startswith("CHANGED results/smoke/data/benchmarks/mul2.parquet") for line in changed)


@pytest.mark.slow
def test_without_snakemake_records_the_manifests_give_the_same_files_and_hashes(smoke_study, tmp_path):
    workdir, _ = smoke_study
    copy = _copy(workdir, tmp_path / "elsewhere", snakemake_records=False)
    with_records, without = build_tree(workdir / FIGURE), build_tree(copy / FIGURE, check=True)
    assert not without.snakemake_records and not without.changed
    assert {p: n.sha256 for p, n in without.files.items()} == {p: n.sha256 for p, n in with_records.files.items()}
    assert {s.rule for s in without.steps.values()} >= {"plot", "score", "grade", "sample_shard", "sft", "world"}
    subset = next(s for s in without.steps.values() if s.rule == "subset")
    assert subset.record == "manifest" and subset.code["commit"] == code_version()["commit"]


@pytest.mark.slow
def test_a_changed_eval_setting_changes_the_lineage_exactly_at_that_step_and_below(smoke_study, tmp_path):
    from dagrun import snakemake, variant

    workdir, configfile = smoke_study
    before = _signature(build_tree(workdir / FIGURE))
    scratch = _copy(workdir, tmp_path / "variant")
    config = variant(configfile, tmp_path, "bootstrap", {"key": ["eval", "bootstrap"], "value": 60})
    snakemake(scratch, config, FIGURE)
    tree = build_tree(scratch / FIGURE, check=True)
    after = _signature(tree)
    assert set(after) == set(before)
    differ = {path for path in after if after[path] != before[path]}
    rules = {tree.steps[tree.files[path].step].rule for path in differ}
    assert rules == {"score", "tidy_table", "plot"}, rules
    score = next(s for s in tree.steps.values() if s.rule == "score")
    assert score.settings["bootstrap"] == 60
    assert all(path.endswith(("metrics.json", "tidy.csv", ".png")) for path in differ)
    metrics = {p.relative_to(scratch).as_posix() for p in (scratch / "results/smoke/eval").glob("*/*/metrics.json")}
    assert {p for p in differ if p.endswith("metrics.json")} == metrics and len(metrics) == 10  # every model's
    assert not tree.changed
    assert read_parquet_metadata(scratch / "results/smoke/eval/rl/random_n64_ep1/mul2.samples.parquet")[
        "manifest"]["model"]["sha256"] == identity_sha256(scratch / "results/smoke/rl/random_n64_ep1")
