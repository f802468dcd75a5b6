"""One source of truth for defaults: the config schema.

Library settings take their defaults from the schema (`quagmire.config.section_defaults` / `settings_for`). The
few defaults that stay in code (dataclasses built directly in tests and benchmarks, constants of the training and
sampling modules whose job envs do not read the schema, command-line flags) are listed here and must equal the
schema's default, value and type. A bad value fails once, with one message naming the key, whether it comes from
a config file or through the library.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from quagmire import config as cfg
from quagmire.errors import QuagmireError

SRC = Path(cfg.__file__).resolve().parent


def schema_defaults() -> dict[str, Any]:
    """Every default a study config gets, by dotted key path (a mapping default is walked, not listed whole)."""
    whole = cfg.validate_config({"study": "defaults"})

    def walk(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(value, Mapping) and value:
            for key, sub in value.items():
                yield from walk(f"{prefix}.{key}" if prefix else str(key), sub)
        else:
            yield prefix, value

    return dict(walk("", {k: v for k, v in whole.items() if k != "study"}))


DEFAULTS = schema_defaults()


def same(value: Any, default: Any) -> bool:
    """Equal and of the same type (5.0 stays a float, 200 an int, True a bool)."""
    return type(value) is type(default) and value == default


def dataclass_defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def signature_defaults(fn: Any) -> dict[str, Any]:
    return {
        name: p.default for name, p in inspect.signature(fn).parameters.items() if p.default is not p.empty
    }


def kept_constants() -> list[tuple[str, Any, str]]:
    """(what, the library's default, the schema key it mirrors) for every default that stays in code."""
    from quagmire.analysis import predictors
    from quagmire.eval.sampling import SamplingSettings
    from quagmire.train import grpo, runner, sft
    from quagmire.verify_pool import GradingPool
    from quagmire.world.model import TinyModelSpec
    from quagmire.world.pretrain import PretrainSettings

    kept: list[tuple[str, Any, str]] = []
    for name, value in dataclass_defaults(SamplingSettings).items():
        kept.append((f"SamplingSettings.{name}", value, f"eval.{name}"))
    for name, value in dataclass_defaults(TinyModelSpec).items():
        kept.append((f"TinyModelSpec.{name}", value, f"base_model.{name}"))
    for name, value in dataclass_defaults(PretrainSettings).items():
        kept.append((f"PretrainSettings.{name}", value, "seed" if name == "seed" else f"base_model.pretrain.{name}"))
    for fn in (predictors.split_r2, predictors.predictor_quality):
        defaults = signature_defaults(fn)
        kept += [(f"{fn.__name__}(n_splits)", defaults["n_splits"], "analysis.n_splits"),
                 (f"{fn.__name__}(seed)", defaults["seed"], "seed")]
    pool = signature_defaults(GradingPool.__init__)
    kept += [("GradingPool(workers)", pool["workers"], "eval.grading_workers")]
    kept += [("GradingPool(timeout_s)", pool["timeout_s"], key)
             for key in ("eval.grading_timeout_s", "rl.grading_timeout_s", "data.filters.gold_timeout_s")]
    kept += [
        ("sft.DEFAULT_SAVE_STEPS", sft.DEFAULT_SAVE_STEPS, "sft.defaults.save_steps"),
        ("grpo.DEFAULT_SAVE_STEPS", grpo.DEFAULT_SAVE_STEPS, "rl.save_steps"),
        ("grpo.DEFAULT_VLLM_GPU_MEMORY", grpo.DEFAULT_VLLM_GPU_MEMORY, "rl.vllm_gpu_memory_utilization"),
        ("runner.DEFAULT_SAVE_TOTAL_LIMIT", runner.DEFAULT_SAVE_TOTAL_LIMIT, "sft.defaults.save_total_limit"),
        ("runner.DEFAULT_SAVE_TOTAL_LIMIT", runner.DEFAULT_SAVE_TOTAL_LIMIT, "rl.save_total_limit"),
        ("fixed_trainer_args(save_total_limit)", signature_defaults(runner.fixed_trainer_args)["save_total_limit"],
         "rl.save_total_limit"),
    ]
    return kept


# `settings.get("key", <literal>)` in these modules reads the named config section: the literal is a default.
GET_SECTIONS = {
    "train/sft.py": ("sft.defaults",),
    "train/grpo.py": ("rl",),
    "train/runner.py": ("sft.defaults", "rl"),
    "data/filters.py": ("data.filters",),
    "analysis/plots.py": ("plots",),
    "analysis/predictors.py": ("analysis", ""),
    "eval/sampling.py": ("eval",),
    "world/pretrain.py": ("base_model.pretrain", ""),
}


def literal_gets() -> list[tuple[str, str, Any, str]]:
    """(module, key, literal default, schema key) for each `.get("key", <literal>)` on a key of its section."""
    found = []
    for module, sections in GET_SECTIONS.items():
        tree = ast.parse((SRC / module).read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[1], ast.Constant) and isinstance(node.args[0].value, str)):
                continue
            key = node.args[0].value
            for section in sections:
                path = f"{section}.{key}" if section else key
                if path in DEFAULTS:
                    found.append((module, key, node.args[1].value, path))
                    break
    return found


# Command-line flags that carry a schema key's value (the rules always pass it): each is required, or its default
# equals the schema's.
CLI_FLAGS = {
    ("grade", "timeout"): "eval.grading_timeout_s",
    ("grade", "workers"): "eval.grading_workers",
    ("score", "bootstrap"): "eval.bootstrap",
    ("genloss", "max_length"): "genloss.max_length",
    ("genloss", "batch_size"): "genloss.batch_size",
    ("split", "seed"): "seed",
    ("subset", "seed"): "seed",
    ("sample", "shards"): "eval.shards",
    ("sft", "threads"): "threads",
    ("sft", "sharding"): "sft.sharding",
    ("grpo", "sharding"): "sft.sharding",
}


REQUIRED = object()  # marks a flag without a default of its own


def cli_defaults() -> list[tuple[str, Any, str]]:
    from quagmire.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    found = []
    for (command, dest), path in CLI_FLAGS.items():
        action = next(a for a in commands[command]._actions if a.dest == dest)
        value = REQUIRED if action.required else action.default
        found.append((f"quagmire {command} --{dest.replace('_', '-')}", value, path))
    return found


# ------------------------------------------------------------------------------------------------ the walk


def test_the_walk_sees_every_section_and_typed_defaults() -> None:
    assert DEFAULTS["data.filters.gold_timeout_s"] == 5.0 and type(DEFAULTS["data.filters.gold_timeout_s"]) is float
    assert same(DEFAULTS["analysis.n_splits"], 200) and same(DEFAULTS["seed"], 0)
    assert {path.split(".")[0] for path in DEFAULTS} >= {
        "seed", "threads", "world", "data", "base_model", "sft", "rl", "eval", "genloss", "analysis", "resources",
        "plots"}


def test_section_defaults_are_what_a_study_config_gets() -> None:
    """The library's view of a section (no study config at hand) is the study config's, for every section."""
    whole = cfg.validate_config({"study": "defaults"})
    for section in ("data.filters", "plots", "eval", "rl", "sft.defaults", "base_model.pretrain", "analysis",
                    "genloss", "world", "resources.train"):
        expected: Any = whole
        for part in section.split("."):
            expected = expected[part]
        assert cfg.section_defaults(section) == expected, section


@pytest.mark.parametrize("what,value,path", kept_constants(), ids=lambda x: x if isinstance(x, str) else None)
def test_a_default_kept_in_code_equals_the_schemas(what: str, value: Any, path: str) -> None:
    assert path in DEFAULTS, f"{what}: {path} is not a schema default (renamed?)"
    assert same(value, DEFAULTS[path]), f"{what} = {value!r}, but the schema's {path} default is {DEFAULTS[path]!r}"


def test_every_field_of_a_settings_dataclass_is_a_schema_key() -> None:
    """A field the schema does not know would be a default of the library's own."""
    from quagmire.eval.sampling import SamplingSettings
    from quagmire.world.model import TinyModelSpec
    from quagmire.world.pretrain import PretrainSettings

    for cls, section in ((SamplingSettings, "eval"), (TinyModelSpec, "base_model"),
                         (PretrainSettings, "base_model.pretrain")):
        unknown = [f.name for f in dataclasses.fields(cls)
                   if f"{section}.{f.name}" not in DEFAULTS and f.name != "seed"]
        assert unknown == [], f"{cls.__name__}: fields without a schema default: {unknown}"


def test_a_literal_get_default_equals_the_schemas() -> None:
    found = literal_gets()
    wrong = [f"{module}: .get({key!r}, {value!r}) but the schema's {path} default is {DEFAULTS[path]!r}"
             for module, key, value, path in found if not same(value, DEFAULTS[path])]
    assert wrong == []


def test_the_scan_for_literal_gets_can_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = tmp_path / "train" / "sft.py"
    module.parent.mkdir()
    module.write_text('steps = settings.get("save_steps", 50)\n')
    monkeypatch.setattr(f"{__name__}.SRC", tmp_path)
    monkeypatch.setattr(f"{__name__}.GET_SECTIONS", {"train/sft.py": ("sft.defaults",)})
    assert literal_gets() == [("train/sft.py", "save_steps", 50, "sft.defaults.save_steps")]
    assert not same(50, DEFAULTS["sft.defaults.save_steps"])


@pytest.mark.parametrize("what,value,path", cli_defaults(), ids=lambda x: x if isinstance(x, str) else None)
def test_a_cli_flag_is_required_or_defaults_to_the_schemas(what: str, value: Any, path: str) -> None:
    assert value is REQUIRED or same(value, DEFAULTS[path]), (
        f"{what} defaults to {value!r}, the schema's {path} to {DEFAULTS[path]!r}")


def test_filters_and_plots_keep_no_defaults_of_their_own() -> None:
    from quagmire.analysis import plots
    from quagmire.data import filters

    assert dataclass_defaults(plots.PlotSettings) == {}
    assert not hasattr(filters, "DEFAULT_FILTERS")
    assert signature_defaults(filters.NgramIndex.__init__) == {}
    assert filters.resolve_filters(None) == cfg.section_defaults("data.filters")


# ------------------------------------------------------------------------------ one check, one message


BAD_VALUES = [
    ("data.filters", {"max_tokens": -1}, "data.filters.max_tokens: -1 is less than the minimum of 1 (got -1)"),
    ("data.filters", {"min_tokens": 10, "max_tokens": 5},
     "data.filters.min_tokens: 10 is larger than data.filters.max_tokens (5)"),
    ("data.filters", {"decontaminate": {"threshold": 2}},
     "data.filters.decontaminate.threshold: 2 is greater than the maximum of 1 (got 2)"),
    ("plots", {"dpi": "x"}, "plots.dpi: 'x' is not of type 'integer' (got \"x\")"),
    ("plots", {"colour": "red"}, "unknown key plots.colour (allowed: dpi, figures, format, height, style, width)"),
]


def _nested(path: str, value: Any) -> dict[str, Any]:
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


def _library_call(section: str, given: Mapping[str, Any]) -> None:
    """The section through the library function that consumes it."""
    if section == "data.filters":
        from quagmire.data.filters import resolve_filters

        resolve_filters(given)
    else:
        from quagmire.analysis.plots import PlotSettings

        PlotSettings.from_config(given)


@pytest.mark.parametrize("section,given,message", BAD_VALUES)
def test_a_bad_value_gets_one_message_from_a_config_file_or_the_library(
    section: str, given: dict[str, Any], message: str, tmp_path: Path
) -> None:
    import yaml

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"study": "bad", **_nested(section, given)}))
    with pytest.raises(QuagmireError) as from_file:
        cfg.load_config(path)
    with pytest.raises(QuagmireError) as from_library:
        _library_call(section, given)
    with pytest.raises(QuagmireError) as from_settings_for:
        cfg.settings_for(section, given, "my settings")
    assert str(from_file.value) == f"config error in {path}: {message}"
    assert str(from_library.value).endswith(f": {message}") and str(from_library.value).startswith("config error in")
    assert str(from_settings_for.value) == f"config error in my settings: {message}"


def test_a_filled_study_section_passes_the_library_unchanged() -> None:
    """A study config's sections arrive filled and checked; the library's fill is then a no-op."""
    whole = cfg.validate_config({"study": "s", "data": {"filters": {"max_tokens": 100, "decontaminate": {"n": 9}}},
                                 "plots": {"dpi": 300}})
    assert cfg.settings_for("data.filters", whole["data"]["filters"], "x") == whole["data"]["filters"]
    assert whole["data"]["filters"]["decontaminate"] == {"n": 9, "threshold": 0.5, "min_words": 8}
    assert cfg.settings_for("plots", whole["plots"], "x") == whole["plots"]


def test_an_unknown_section_is_a_clear_error() -> None:
    with pytest.raises(QuagmireError, match=r"no section 'data\.filter' in the config schema"):
        cfg.section_defaults("data.filter")
    with pytest.raises(QuagmireError, match=r"config error in x: plots: must be a mapping \(got 3\)"):
        cfg.settings_for("plots", 3, "x")  # type: ignore[arg-type]
