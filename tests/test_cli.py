"""The command line: one subcommand per stage; a user error is one line on stderr and exit status 2."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from quagmire.cli import COMMANDS, COMMANDS_BY_NAME, build_parser, main
from quagmire.config import load_config
from quagmire.hf import load_tokenizer
from quagmire.io import read_json

ROOT = Path(__file__).resolve().parents[1]
# Subcommands a user runs by hand; every other one is called by some rule (test_every_command_is_called_by_a_rule).
USER_FACING = {"check-config", "plan", "provenance"}
RULE_CALL = re.compile(r"""(?:^|[\s"'(;&|])quagmire\s+([a-z][a-z-]*)""")


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# --- check-config -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml"])
def test_check_config_accepts_the_shipped_configs(name, capsys):
    assert main(["check-config", str(ROOT / "config" / name)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out
    assert f"{len(load_config(ROOT / 'config' / name)['sft']['recipes'])} SFT recipes" in out


def test_check_config_checks_every_study_of_a_paper_config_and_lists_unpinned_inputs(capsys):
    assert main(["check-config", str(ROOT / "config" / "paper.yaml")]) == 0
    out = capsys.readouterr().out
    assert "valid paper config 'paper' (3 studies)" in out
    for study in ("paper_llama3_nemotron", "paper_mistral_acereason", "paper_qwen3_base"):
        assert f"study '{study}': valid (10 SFT recipes)" in out
    assert out.count("not yet runnable") == 3 and "base_model, data.sft" in out


def test_check_config_with_an_unknown_key_exits_2_with_one_line_naming_it(tmp_path, capsys):
    path = tmp_path / "typo.yaml"
    path.write_text("study: t\nsft:\n  defaults: {lrr: 0.1}\n")
    assert main(["check-config", str(path)]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1, lines
    assert "sft.defaults.lrr" in lines[0]
    assert str(path) in lines[0]
    assert lines[0].startswith("quagmire check-config:")
    assert "Traceback" not in lines[0]


def test_check_config_on_a_missing_file_exits_2(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
    (line,) = _error_lines(capsys)
    assert "not found" in line


# --- argument errors ----------------------------------------------------------------------------------------


def test_score_with_a_malformed_grades_argument_exits_2_with_a_clear_message(tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["score", "--grades", "nonsense", "--out", str(out), "--extra-ks", "--bootstrap", "10"]) == 2
    (line,) = _error_lines(capsys)
    assert "--grades" in line
    assert "NAME=PATH" in line
    assert "nonsense" in line
    assert not out.exists()


def test_score_without_its_required_arguments_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["score", "--grades", "nonsense"])  # --out missing: argparse's own usage error
    assert info.value.code == 2


@pytest.mark.parametrize(
    "settings, message", [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")]
)
def test_bad_settings_json_exits_2_with_a_clear_message(settings, message, tmp_path, capsys):
    assert main(["world", "--settings", settings, "--out-dir", str(tmp_path / "data")]) == 2
    (line,) = _error_lines(capsys)
    assert "--settings" in line and message in line
    assert not (tmp_path / "data").exists()


def test_the_command_table_has_unique_names_and_targets_of_the_form_module_function():
    assert len(COMMANDS_BY_NAME) == len(COMMANDS)
    for command in COMMANDS:
        module, sep, function = command.target.partition(":")
        assert sep and module.startswith("quagmire.") and function.isidentifier(), command.target
        assert len(set(command.keywords)) == len(command.keywords), f"{command.name}: a keyword given twice"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_command_has_a_working_help(command):
    parser = build_parser()
    assert command.name in parser.format_help()
    with pytest.raises(SystemExit) as info:
        parser.parse_args([command.name, "--help"])
    assert info.value.code == 0


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_command_target_takes_exactly_the_keywords_the_table_passes(command):
    signature = inspect.signature(command.function())
    kinds = {p.kind for p in signature.parameters.values()}
    assert not kinds & {inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL}, command.target
    assert set(signature.parameters) == set(command.keywords), command.target
    signature.bind(**dict.fromkeys(command.keywords))  # and no parameter is positional-only


def _rule_commands() -> set[str]:
    """The subcommands in the rules' shell commands (comments skipped)."""
    found = set()
    for path in sorted((ROOT / "rules").glob("*.smk")):
        for line in path.read_text().splitlines():
            found.update(RULE_CALL.findall(line.split("#", 1)[0]))
    return found


def test_every_command_is_called_by_a_rule_or_is_user_facing():
    called = _rule_commands()
    assert called - set(COMMANDS_BY_NAME) == set(), "a rule calls a subcommand that does not exist"
    assert set(COMMANDS_BY_NAME) - called == USER_FACING, "a subcommand no rule calls, or a user-facing one a rule does"
    assert {"world", "grade", "sft", "grpo", "paper-figure"} <= called  # the parse finds them


def test_a_command_imports_its_target_only_when_it_runs_and_score_never_loads_torch(tmp_path):
    grades = pd.DataFrame({"problem_id": ["p1", "p1", "p2", "p2"], "sample_idx": [0, 1, 0, 1],
                           "extracted": ["1", "2", "3", "3"], "status": ["correct", "incorrect", "correct", "correct"],
                           "correct": [True, False, True, True]})
    grades.to_parquet(tmp_path / "g.parquet")
    out = tmp_path / "metrics.json"
    code = (
        "import sys\n"
        "from quagmire.cli import main\n"
        "assert not any(m.startswith('quagmire.eval') for m in sys.modules), 'cli imports a target eagerly'\n"
        f"assert main(['score', '--grades', 'b={tmp_path / 'g.parquet'}', '--out', {str(out)!r}, "
        "'--extra-ks', '--bootstrap', '10']) == 0\n"
        "watched = ('torch', 'matplotlib', 'transformers', 'quagmire.eval.metrics')\n"
        "print(sorted(m for m in watched if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "['quagmire.eval.metrics']"
    assert read_json(out)["macro"]["avg@2"] == pytest.approx(0.75)


@pytest.fixture
def fake_trainers(monkeypatch):
    """quagmire.train.sft / .grpo replaced by recorders (no torch, no training)."""
    calls = []
    for name, function in (("sft", "train_sft"), ("grpo", "train_grpo")):
        module = types.ModuleType(f"quagmire.train.{name}")

        def record(*args, _name=function, **kwargs):
            calls.append((_name, args, kwargs))

        setattr(module, function, record)
        monkeypatch.setitem(sys.modules, f"quagmire.train.{name}", module)
    return calls


def test_sft_and_grpo_pass_only_the_operational_knobs_given(fake_trainers, tmp_path):
    settings = '{"lr": 0.1}'
    sft = ["sft", "--base", "b", "--data", "d", "--settings", settings, "--out", "o", "--save-steps", "5",
           "--threads", "3", "--gpus", "1", "--sharding", "fsdp", "--snapshots", "o.snapshots"]
    grpo = ["grpo", "--model", "m", "--prompts", "p", "--settings", settings, "--out", "o",
            "--vllm-gpu-memory", "0.3", "--sharding", "zero3"]
    assert main(sft) == 0 and main(grpo) == 0
    assert fake_trainers == [
        ("train_sft", (Path("b"), Path("d"), Path("o"), {"lr": 0.1}),
         {"threads": 3, "operational": {"save_steps": 5}, "snapshots": Path("o.snapshots")}),
        ("train_grpo", (Path("m"), Path("p"), Path("o"), {"lr": 0.1}),
         {"threads": 1, "operational": {"vllm_gpu_memory_utilization": 0.3}}),
    ]
    args = build_parser().parse_args(sft)
    assert COMMANDS_BY_NAME["sft"].kwargs(args, sft)["argv"] == sft  # what a multi-GPU job re-executes


def test_an_unknown_subcommand_is_rejected():
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["train-everything"])
    assert info.value.code == 2


# --- stages that run in a blink -----------------------------------------------------------------------------


def test_world_writes_disjoint_pools_from_smoke_settings(tmp_path):
    config = load_config(ROOT / "config" / "smoke.yaml")
    settings = json.dumps({"world": config["world"], "seed": config["seed"]})
    out = tmp_path / "data"
    assert main(["world", "--settings", settings, "--out-dir", str(out)]) == 0
    for pool in ("sft", "heldout", "rl"):
        frame = pd.read_parquet(out / f"{pool}.parquet")
        assert len(frame) == config["world"]["pools"][pool]["size"]
    for name, spec in config["world"]["benchmarks"].items():
        bench = out / "benchmarks" / f"{name}.parquet"
        world = str(out / "world_benchmarks.parquet")
        assert main(["world-benchmark", "--world", world, "--name", name, "--out", str(bench)]) == 0
        assert len(pd.read_parquet(bench)) == spec["size"]
        assert "benchmark" not in pd.read_parquet(bench).columns
    audit = read_json(out / "audit.json")
    assert audit["disjoint"] is True
    assert audit["settings"]["seed"] == config["seed"]
    files = [p for p in out.rglob("*.parquet") if p.name != "world_benchmarks.parquet"]
    prompts = pd.concat([pd.read_parquet(p)["prompt"] for p in files])
    assert prompts.is_unique


def test_an_unknown_world_benchmark_names_the_ones_there(tmp_path, capsys):
    config = load_config(ROOT / "config" / "smoke.yaml")
    settings = json.dumps({"world": config["world"], "seed": 0})
    assert main(["world", "--settings", settings, "--out-dir", str(tmp_path)]) == 0
    world = str(tmp_path / "world_benchmarks.parquet")
    assert main(["world-benchmark", "--world", world, "--name", "nope", "--out", str(tmp_path / "b.parquet")]) == 2
    assert "no world benchmark 'nope' (it has: addsub2, mul2)" in capsys.readouterr().err
    assert not (tmp_path / "b.parquet").exists()


def test_world_then_subset_then_recipes_through_the_cli(tmp_path):
    config = load_config(ROOT / "config" / "smoke.yaml")
    data, tok = tmp_path / "data", tmp_path / "tokenizer"
    assert (
        main(
            ["world", "--settings", json.dumps({"world": config["world"], "seed": 0}), "--out-dir", str(data)]
        )
        == 0
    )
    assert main(["tokenizer", "--out", str(tok)]) == 0
    assert load_tokenizer(tok)("1+2=")["input_ids"][0] == load_tokenizer(tok).bos_token_id

    out = tmp_path / "subsets" / "shortest-16.parquet"
    assert (
        main(
            [
                "subset",
                "--pool",
                str(data / "sft.parquet"),
                "--tokenizer",
                str(tok),
                "--strategy",
                "shortest",
                "--n",
                "16",
                "--seed",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    subset, pool = pd.read_parquet(out), pd.read_parquet(data / "sft.parquet")
    assert len(subset) == 16
    tokenizer = load_tokenizer(tok)
    lengths = sorted(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in pool["response"])
    assert sorted(subset["response_tokens"]) == lengths[:16]

    recipes = {name: {**config["sft"]["defaults"], **r} for name, r in config["sft"]["recipes"].items()}
    table = tmp_path / "recipes.csv"
    assert main(["recipes", "--settings", json.dumps(recipes), "--out", str(table)]) == 0
    frame = pd.read_csv(table)
    assert list(frame["run"]) == list(recipes)
    assert list(frame["n_unique"]) == [r["n"] for r in recipes.values()]


def test_subset_with_an_unknown_strategy_exits_2(tmp_path, capsys):
    config = load_config(ROOT / "config" / "smoke.yaml")
    data, tok = tmp_path / "data", tmp_path / "tokenizer"
    main(["world", "--settings", json.dumps({"world": config["world"], "seed": 0}), "--out-dir", str(data)])
    main(["tokenizer", "--out", str(tok)])
    capsys.readouterr()
    out = tmp_path / "s.parquet"
    assert (
        main(
            [
                "subset",
                "--pool",
                str(data / "sft.parquet"),
                "--tokenizer",
                str(tok),
                "--strategy",
                "median",
                "--n",
                "4",
                "--seed",
                "0",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    lines = _error_lines(capsys)
    assert any("median" in line for line in lines)
    assert not out.exists()
