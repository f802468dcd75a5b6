"""Bad input, clearly refused: each malformed config or data file gets one message naming the key or value.

One table per kind of input. A config case is a study config (a dict, as YAML gives it) and the strings its one
error line must contain: the dotted key and the offending value. A data case is a file a user points a benchmark
or a training source at: it is either read with its bad rows dropped and counted by reason in the manifest, or
refused with one error naming the data set, the file and why nothing is left. Cases covered elsewhere are not
repeated here (tests/test_config.py, test_studies.py, test_sources.py, test_benchmarks.py, test_data_spec.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from quagmire.config import load_config, measured_ks, validate_config
from quagmire.data.benchmarks import benchmark_to_file, load_benchmark, spec_from_config
from quagmire.data.sources import load_source, source_from_config, source_to_file
from quagmire.errors import QuagmireError
from quagmire.eval.metrics import ks_for
from quagmire.studies import check_config, load_run

RECIPE = {"subset": "random", "n": 8, "epochs": 1}
HUB = {"source": "hub", "sft": {"name": "nemotron_math"}, "rl": [{"name": "math_train"}]}  # data.source: hub
REAL = {"benchmarks": {"math500": {}}}  # a registry benchmark (unpinned: fine until its job reads it)


def study(**sections: Any) -> dict[str, Any]:
    return {"study": "t", **sections}


def one_error(build: Callable[[], Any]) -> str:
    """The message of the QuagmireError `build` raises; it must be one line (no traceback, no list of errors)."""
    with pytest.raises(QuagmireError) as info:
        build()
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------- malformed configs

CONFIGS = [
    # wrong types
    pytest.param(study(eval={"n": "many"}), ["eval.n", '"many"'], id="type-string-for-integer"),
    pytest.param(study(rl={"from_base": "yes"}), ["rl.from_base", '"yes"'], id="type-string-for-boolean"),
    pytest.param(study(eval=[1, 2]), ["eval", "[1, 2]", "object"], id="type-list-for-section"),
    pytest.param(study(sft={"recipes": {"r1": 5}}), ["sft.recipes.r1", "5", "object"], id="type-number-for-recipe"),
    pytest.param(study(eval={"n": 4.0}), ["eval.n", "4.0", "whole number"], id="type-float-for-integer"),
    pytest.param(study(seed=1.5), ["seed", "1.5", "whole number"], id="type-fraction-for-integer"),
    pytest.param(study(rl={"lr": float("nan")}), ["rl.lr", "NaN", "finite"], id="type-nan"),
    pytest.param(study(eval={"grading_timeout_s": float("inf")}), ["eval.grading_timeout_s", "Infinity", "finite"],
                 id="type-infinity"),
    pytest.param(study(sft={"recipes": {2048: RECIPE}}), ["sft.recipes", "2048", "not text"], id="type-number-key"),
    # unknown keys
    pytest.param(study(evall={"n": 2}), ["unknown key evall", "allowed: along_sft, analysis"],
                 id="unknown-top-level-key"),
    pytest.param(study(sft={"recipes": {"r1": {**RECIPE, "epoch": 2}}}), ["sft.recipes.r1.epoch"],
                 id="unknown-recipe-key"),
    pytest.param(study(eval={"benchmarks": {"math500": {"paht": "m.jsonl"}}}), ["eval.benchmarks.math500.paht"],
                 id="unknown-benchmark-key"),
    # names that become paths and wildcards
    pytest.param(study(sft={"recipes": {"my recipe": RECIPE}}), ["sft.recipes", '"my recipe"', "letters, digits"],
                 id="recipe-name-with-space"),
    pytest.param(study(sft={"recipes": {"a/b": RECIPE}}), ["sft.recipes", '"a/b"'], id="recipe-name-with-slash"),
    pytest.param(study(sft={"recipes": {"r*": RECIPE}}), ["sft.recipes", '"r*"'], id="recipe-name-with-wildcard"),
    pytest.param({"study": ".."}, ["study", '".."', "results/<study>/"], id="study-name-dot-dot"),
    pytest.param({"study": "my study"}, ["study", '"my study"'], id="study-name-with-space"),
    # negative or zero sizes
    pytest.param(study(world={"pools": {"sft": {"size": -5}}}), ["world.pools.sft.size", "-5"], id="negative-pool"),
    pytest.param(study(world={"benchmarks": {"b": {"size": -3}}}), ["world.benchmarks.b.size", "-3"],
                 id="negative-benchmark-size"),
    pytest.param(study(sft={"recipes": {"r1": {**RECIPE, "n": -1}}}), ["sft.recipes.r1.n", "-1"],
                 id="negative-recipe-n"),
    pytest.param(study(data={"heldout_size": 0}), ["data.heldout_size", "0"], id="zero-heldout"),
    pytest.param(study(resources={"train": {"mem_mb": -1}}), ["resources.train.mem_mb", "-1"], id="negative-memory"),
    # pass@k beyond the samples
    pytest.param(study(eval={"n": 4}, analysis={"k_large": 8}), ["analysis.k_large", "8", "eval.n (4)"],
                 id="k-large-above-n"),
    pytest.param(study(eval={"n": 16}, analysis={"k_large": 3}), ["analysis.k_large", "pass@3", "eval.extra_ks"],
                 id="k-large-not-measured"),
    pytest.param(study(eval={"n": 4, "extra_ks": [8]}), ["eval.extra_ks", "8", "eval.n (4)"], id="extra-k-above-n"),
    pytest.param(study(eval={"extra_ks": [3, 3]}), ["eval.extra_ks", "[3, 3]", "more than once"],
                 id="extra-k-twice"),
    # an empty grid, and things listed twice
    pytest.param(study(sft={"recipes": {}}), ["sft.recipes", "non-empty"], id="empty-recipe-grid"),
    pytest.param(study(sft={"recipes": None}), ["sft.recipes", "null"], id="null-recipe-grid"),
    pytest.param(study(eval={"benchmarks": {"math500": {}, "m2": {"registry": "math500"}}}),
                 ["eval.benchmarks.m2", "eval.benchmarks.math500", "list it once"], id="benchmark-listed-twice"),
    pytest.param(study(data={**HUB, "rl": [{"name": "deepscaler"}, {"name": "deepscaler"}]}, eval=REAL),
                 ["data.rl", "'deepscaler' is listed 2 times"], id="rl-source-listed-twice"),
    pytest.param(study(plots={"figures": ["subset_bars", "subset_bars"]}), ["plots.figures", '"subset_bars"'],
                 id="figure-listed-twice"),
    # data sets a job could never read
    pytest.param(study(eval={"benchmarks": {"mathh500": {}}}), ["eval.benchmarks.mathh500", "not a registered"],
                 id="unknown-benchmark-name"),
    pytest.param(study(eval={"benchmarks": {"b": {"registry": "nope"}}}), ["eval.benchmarks.b.registry", "'nope'"],
                 id="unknown-benchmark-registry"),
    pytest.param(study(eval={"benchmarks": {"math500": {"revision": "main"}}}),
                 ["eval.benchmarks.math500.revision", '"main"', "40 lowercase hex"], id="revision-a-branch"),
    pytest.param(study(base_model={"source": "hub", "hub_id": "org/m", "revision": "abc123"}),
                 ["base_model.revision", '"abc123"'], id="revision-too-short"),
    pytest.param(study(base_model={"source": "hub"}), ["base_model", "hub_id", "path"], id="hub-model-from-nowhere"),
    pytest.param(study(eval={"benchmarks": {"math500": {"path": ""}}}), ["eval.benchmarks.math500.path", '""'],
                 id="empty-path"),
    pytest.param(study(data={**HUB, "sft": {"name": "nope"}}, eval=REAL), ["data.sft", "'nope'", "not a registered"],
                 id="unknown-source"),
    pytest.param(study(data={**HUB, "sft": {"name": "deepscaler"}}, eval=REAL), ["data.sft", "'deepscaler'", "rl"],
                 id="rl-source-as-sft"),
    pytest.param(study(data={**HUB, "sft": {"name": "mine", "path": "x.jsonl"}}, eval=REAL),
                 ["data.sft", "source mine", "response_field"], id="sft-source-without-response"),
]


@pytest.mark.parametrize(("config", "named"), CONFIGS)
def test_a_malformed_config_is_one_error_naming_the_key_and_value(config: dict, named: list[str]) -> None:
    """Through `load_run`, the entry point of the Snakefile and of `quagmire check-config`."""
    message = one_error(lambda: load_run(config, source="bad.yaml"))
    assert message.startswith("config error in bad.yaml: ")
    for part in named:
        assert part in message, (part, message)


def test_the_config_and_the_scores_agree_on_which_k_are_measured() -> None:
    """`analysis.k_large` is checked against the k the score job reports; the two statements of that rule agree."""
    for n in range(1, 300):
        for extra in ([], [3], [n, n + 1, 5, 100]):
            assert measured_ks(n, extra) == ks_for(n, extra), (n, extra)


def test_cross_key_rules_apply_to_a_study_config_alone_too() -> None:
    """validate_config (the library's reader) refuses the cross-key cases without the run-level checks."""
    message = one_error(lambda: validate_config(study(eval={"n": 4}, analysis={"k_large": 8}), source="s.yaml"))
    assert message == ("config error in s.yaml: analysis.k_large: 8 is larger than eval.n (4); pass@k needs k <= n "
                       "samples per problem")


# --------------------------------------------------------------------------- malformed config files


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


FILES = [
    pytest.param("study: t\neval:\n  benchmarks:\n    math500: {}\n    math500: {path: m.jsonl}\n",
                 ["eval.benchmarks.math500 is given twice", "lines 4 and 5"], id="yaml-benchmark-listed-twice"),
    pytest.param("study: t\nsft:\n  recipes:\n    r1: {subset: random, n: 8, epochs: 1}\n"
                 "    r1: {subset: random, n: 8, epochs: 2}\n", ["sft.recipes.r1 is given twice"],
                 id="yaml-recipe-listed-twice"),
    pytest.param("study: t\neval: {n: 4}\neval: {n: 8}\n", ["eval is given twice", "lines 2 and 3"],
                 id="yaml-section-twice"),
    pytest.param("", ["study", "required"], id="empty-file"),
    pytest.param("study: t\neval: {n: [1, 2\n", ["not valid YAML at line 3"], id="invalid-yaml"),
    pytest.param("- study\n- t\n", ["top level must be a mapping"], id="top-level-a-list"),
]


@pytest.mark.parametrize(("text", "named"), FILES)
def test_a_malformed_config_file_is_one_error_naming_the_file_and_key(
    tmp_path: Path, text: str, named: list[str]
) -> None:
    path = _write(tmp_path / "bad.yaml", text)
    message = one_error(lambda: load_config(path))
    assert str(path) in message
    for part in named:
        assert part in message, (part, message)


def test_check_config_refuses_a_key_given_twice(tmp_path: Path) -> None:
    """The user's pre-flight check reads the file itself, so it sees what a YAML loader would hide."""
    path = _write(tmp_path / "twice.yaml", "study: t\nseed: 1\nseed: 2\n")
    assert "seed is given twice" in one_error(lambda: check_config(path))


def test_snakemakes_config_files_are_checked_for_keys_given_twice(tmp_path: Path) -> None:
    """Snakemake loads --configfile itself (keeping the last key); the run is refused from the file."""
    path = _write(tmp_path / "twice.yaml", "study: t\nseed: 1\nseed: 2\n")
    message = one_error(lambda: load_run(yaml.safe_load(path.read_text()), files=[path]))
    assert "seed is given twice (lines 2 and 3)" in message


MISSING = [
    pytest.param(study(eval={"benchmarks": {"math500": {"path": "nope/m.jsonl"}}}),
                 "eval.benchmarks.math500.path: file not found: nope/m.jsonl", id="benchmark-file"),
    pytest.param(study(data={**HUB, "rl": [{"name": "math_train", "path": "nope/math.parquet"}]}, eval=REAL),
                 "data.rl[0].path: file not found: nope/math.parquet", id="source-file"),
    pytest.param(study(base_model={"source": "hub", "path": "nope/model"}),
                 "base_model.path: folder not found: nope/model", id="model-folder"),
]


@pytest.mark.parametrize(("config", "named"), MISSING)
def test_a_missing_local_file_is_refused_before_any_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict, named: str
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths are read from the working directory, as the jobs read them
    message = one_error(lambda: load_run(config, source="bad.yaml"))
    assert message.startswith("config error in bad.yaml: ") and named in message


def test_a_local_file_that_exists_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("m.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')
    run = load_run(study(eval={"benchmarks": {"math500": {"path": "m.jsonl"}}}))
    assert run.studies["t"].real_benchmarks == ["math500"]


# --------------------------------------------------------------------------- malformed data files


def _jsonl(rows: list[Any]) -> bytes:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode()


def _parquet(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.to_parquet(path)


def _truncated_parquet(path: Path) -> None:
    pd.DataFrame({"problem": ["1+1", "2+2"], "answer": ["2", "4"]}).to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


GOOD = {"problem": "1+1", "answer": "2"}

# (file name, its content: bytes or a writer) -> as a benchmark: the kept count and drops, or the error's parts
DATA = [
    pytest.param("e.jsonl", b"", None, ["no usable rows in e.jsonl", "read 0", "the source is empty"],
                 id="empty-jsonl"),
    pytest.param("b.jsonl", b"\n  \n\n", None, ["no usable rows in b.jsonl", "the source is empty"],
                 id="blank-lines-jsonl"),
    pytest.param("e.parquet", _parquet(pd.DataFrame({"problem": pd.Series([], dtype=str),
                                                     "answer": pd.Series([], dtype=str)})),
                 None, ["no usable rows in e.parquet", "read 0"], id="empty-parquet"),
    pytest.param("t.parquet", _truncated_parquet, None, ["cannot read Parquet file", "t.parquet"],
                 id="truncated-parquet"),
    pytest.param("x.parquet", b"not parquet at all", None, ["cannot read Parquet file", "x.parquet"],
                 id="not-parquet"),
    pytest.param("f.jsonl", _jsonl([{"question": "1+1", "answer": "2"}]), None,
                 ["has no field(s) ['problem']", "its fields are ['answer', 'question']"], id="missing-field"),
    pytest.param("w.jsonl", _jsonl([GOOD, {"problem": 5, "answer": "2"}, {"problem": "3+3", "answer": {"a": 1}},
                                    {"problem": None, "answer": "1"}]),
                 (1, {"answer_not_text": 1, "problem_missing": 1, "problem_not_text": 1}), None, id="wrong-types"),
    pytest.param("w.parquet", _parquet(pd.DataFrame({"problem": [1, 2], "answer": ["2", "4"]})), None,
                 ["no usable rows in w.parquet", "problem_not_text: 2"], id="wrong-column-type-parquet"),
    pytest.param("g.jsonl", _jsonl([GOOD, "not json", "[1, 2]"]) + b"\xff\xfe\n" + b'{"problem": "2+2", "ans',
                 (1, {"invalid_json": 2, "invalid_utf8": 1, "not_an_object": 1}), None,
                 id="unreadable-lines-and-truncated-jsonl"),
    pytest.param("a.jsonl", _jsonl([{"problem": "", "answer": "1"}, {"problem": "1+1", "answer": ""},
                                    {"problem": "1+1"}]),
                 None, ["no usable rows in a.jsonl", "read 3", "answer_empty: 1", "answer_missing: 1",
                        "problem_empty: 1"], id="all-rows-invalid"),
    pytest.param("c.csv", b"problem,answer\n1+1,2\n", None, ["expected a .jsonl or .parquet file", "c.csv"],
                 id="unsupported-format"),
]


def _rows_counted_or_one_error(
    load: Any, prefix: str, kept_dropped: tuple[int, dict] | None, named: list[str] | None
) -> None:
    """Either `load()` keeps `kept` rows and counts each dropped one by reason, or it fails with one message that
    starts with `prefix` and names every part of `named`."""
    if kept_dropped is None:
        message = one_error(load)
        assert message.startswith(prefix)
        for part in named or []:
            assert part in message, (part, message)
        return
    frame, manifest = load()
    kept, dropped = kept_dropped
    assert len(frame) == kept
    assert manifest["rows"] == {"read": kept + sum(dropped.values()), "kept": kept, "dropped": dropped}


@pytest.mark.parametrize(("name", "content", "kept_dropped", "named"), DATA)
def test_a_malformed_benchmark_file_drops_and_counts_rows_or_is_one_error(
    tmp_path: Path, name: str, content: Any, kept_dropped: tuple[int, dict] | None, named: list[str] | None
) -> None:
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else content(path)
    spec = spec_from_config("own", {"path": str(path)})
    _rows_counted_or_one_error(lambda: load_benchmark(spec), "benchmark own: ", kept_dropped, named)


SOURCE_DATA = [
    pytest.param(b"", None, ["no usable rows", "the source is empty"], id="empty"),
    pytest.param(_jsonl([{"question": "1+1", "answer": "2"}]), None,
                 ["prompt_missing: 1", "field(s) ['problem'] appear in no row"], id="missing-field"),
    pytest.param(_jsonl([GOOD, {"problem": ["a list"], "answer": "2"}, {"problem": "3+3", "answer": None}]),
                 (1, {"answer_missing": 1, "prompt_not_text": 1}), None, id="wrong-types"),
    pytest.param(_jsonl([{"problem": " ", "answer": "1"}, "oops"]), None,
                 ["read 2", "invalid_json: 1", "prompt_empty: 1"], id="all-rows-invalid"),
]


@pytest.mark.parametrize(("content", "kept_dropped", "named"), SOURCE_DATA)
def test_a_malformed_source_file_drops_and_counts_rows_or_is_one_error(
    tmp_path: Path, content: bytes, kept_dropped: tuple[int, dict] | None, named: list[str] | None
) -> None:
    path = tmp_path / "rl.jsonl"
    path.write_bytes(content)
    spec = source_from_config({"name": "mine", "path": str(path)}, "rl", "data.rl[0]")
    _rows_counted_or_one_error(lambda: load_source(spec), "source mine: ", kept_dropped, named)


def test_duplicated_benchmark_ids_are_one_error_naming_the_id(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl([{"id": 7, **GOOD}, {"id": 7, "problem": "2+2", "answer": "4"}]))
    message = one_error(lambda: load_benchmark(spec_from_config("own", {"path": str(path), "id_field": "id"})))
    assert "problem ids are not unique" in message and "own-00007" in message


# --------------------------------------------------------------------------- a job names its config entry


def _no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load_dataset called for an unpinned revision")

    monkeypatch.setattr(datasets, "load_dataset", must_not_run)


def test_a_benchmark_job_without_a_pinned_revision_names_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_download(monkeypatch)
    message = one_error(lambda: benchmark_to_file("aime25", {}, tmp_path / "b.parquet"))
    assert message.startswith("eval.benchmarks.aime25: benchmark aime25: hub dataset ")
    assert "must be pinned to a commit" in message


def test_a_source_job_without_a_pinned_revision_names_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_download(monkeypatch)
    message = one_error(lambda: source_to_file("rl", {"name": "deepscaler"}, "data.rl[1]", tmp_path / "r.parquet"))
    assert message.startswith("data.rl[1]: source deepscaler: hub dataset ")
    assert "must be pinned to a commit" in message


def test_a_source_job_on_an_empty_file_names_its_entry(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    message = one_error(lambda: source_to_file("rl", {"name": "math_train", "path": str(path)}, "data.rl[0]",
                                                tmp_path / "r.parquet"))
    assert message.startswith("data.rl[0]: source math_train: no usable rows in empty.jsonl")
