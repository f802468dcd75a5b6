"""Study config: shipped configs validate, defaults come from the schema, every error names its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quagmire.config import (
    deep_merge,
    load_config,
    load_schema,
    recipe_settings,
    subset_name,
    validate_config,
)
from quagmire.errors import QuagmireError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "config" / "config.yaml", ROOT / "config" / "smoke.yaml"]
DEFAULT_MIX = {"add:2": 3, "sub:2": 3, "mul:2": 1, "add:3": 1}


def _recipe(**over):
    return {"subset": "random", "n": 8, "epochs": 1, **over}


def _error(config: dict) -> str:
    with pytest.raises(QuagmireError) as info:
        validate_config(config, source="my.yaml")
    return str(info.value)


@pytest.fixture(scope="module")
def schema():
    return load_schema()


@pytest.fixture(scope="module")
def minimal(schema):
    """The smallest valid config, with every default filled in."""
    return validate_config({"study": "t"}, schema)


# --- the shipped configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_validates_and_keeps_its_own_values(path):
    raw = yaml.safe_load(path.read_text())
    config = load_config(path)
    assert config["study"] == raw["study"]
    assert set(config["sft"]["recipes"]) == set(raw["sft"]["recipes"])
    for name, recipe in raw["sft"]["recipes"].items():
        for key, value in recipe.items():
            assert config["sft"]["recipes"][name][key] == value
    assert config["world"]["pools"]["sft"]["size"] == raw["world"]["pools"]["sft"]["size"]


def test_smoke_config_is_smaller_than_the_default_study():
    full, smoke = load_config(SHIPPED[0]), load_config(SHIPPED[1])
    assert smoke["world"]["pools"]["sft"]["size"] < full["world"]["pools"]["sft"]["size"]
    assert smoke["base_model"]["pretrain"]["steps"] < full["base_model"]["pretrain"]["steps"]
    assert smoke["rl"]["steps"] < full["rl"]["steps"]
    # values the smoke file does not state come from the schema, not from config.yaml
    assert smoke["rl"]["loss_type"] == "dapo"
    assert smoke["base_model"]["pretrain"]["lr"] == 0.001


def test_validate_does_not_mutate_its_input(schema):
    raw = {"study": "t", "eval": {"n": 3}}
    validate_config(raw, schema)
    assert raw == {"study": "t", "eval": {"n": 3}}


# --- defaults -----------------------------------------------------------------------------------------------


def test_schema_defaults_are_filled_in(minimal):
    assert minimal["seed"] == 0
    assert minimal["eval"]["n"] == 16
    assert minimal["eval"]["extra_ks"] == []
    assert minimal["sft"]["defaults"]["lr"] == 0.001
    assert minimal["sft"]["defaults"]["scheduler"] == "constant"
    assert minimal["rl"]["loss_type"] == "dapo"
    assert minimal["rl"]["from_base"] is True
    assert minimal["analysis"]["k_large"] is None
    assert minimal["base_model"]["pretrain"]["steps"] == 600
    assert set(minimal["world"]["benchmarks"]) == {"addsub2", "mul2", "addsub3"}


def test_pool_defaults_fill_size_and_mix_through_refs(minimal):
    pools = minimal["world"]["pools"]
    assert {name: p["size"] for name, p in pools.items()} == {"sft": 4096, "heldout": 256, "rl": 1024}
    for pool in pools.values():
        assert pool["mix"] == DEFAULT_MIX


def test_a_pool_that_states_only_its_size_gets_the_default_mix(schema):
    config = validate_config({"study": "t", "world": {"pools": {"rl": {"size": 10}}}}, schema)
    assert config["world"]["pools"]["rl"] == {"size": 10, "mix": DEFAULT_MIX}
    # a stated mix is kept, not merged with the default
    config = validate_config(
        {"study": "t", "world": {"benchmarks": {"b": {"size": 4, "mix": {"mul:3": 2}}}}}, schema
    )
    assert config["world"]["benchmarks"] == {"b": {"size": 4, "mix": {"mul:3": 2}}}


def test_recipe_flags_default_to_false(minimal):
    (recipe,) = minimal["sft"]["recipes"].values()
    assert recipe["dataset_level"] is False and recipe["instance_level"] is False


def test_stated_values_win_over_defaults(schema):
    config = validate_config({"study": "t", "eval": {"n": 3}, "sft": {"defaults": {"lr": 0.5}}}, schema)
    assert config["eval"]["n"] == 3
    assert config["eval"]["temperature"] == 1.0
    assert config["sft"]["defaults"]["lr"] == 0.5
    assert config["sft"]["defaults"]["batch_size"] == 32


# --- errors name the key ------------------------------------------------------------------------------------


def test_unknown_top_level_key_is_named_in_the_error():
    message = _error({"study": "t", "evall": {"n": 2}})
    assert "evall" in message
    assert "my.yaml" in message
    assert "eval" in message.split("evall", 1)[1]  # the allowed keys are listed after it


def test_unknown_nested_key_is_named_with_its_dotted_path():
    message = _error({"study": "t", "sft": {"defaults": {"lrr": 0.1}}})
    assert "sft.defaults.lrr" in message
    assert "lr" in message.split("sft.defaults.lrr", 1)[1]


def test_unknown_key_inside_a_recipe_is_named_with_the_recipe():
    message = _error({"study": "t", "sft": {"recipes": {"r1": _recipe(epoch=2)}}})
    assert "sft.recipes.r1.epoch" in message


def test_unknown_key_inside_a_pool_is_named():
    message = _error({"study": "t", "world": {"pools": {"sft": {"size": 8, "mixx": {"add:2": 1}}}}})
    assert "world.pools.sft.mixx" in message


def test_ill_typed_value_names_the_key_and_shows_the_value():
    message = _error({"study": "t", "eval": {"n": "many"}})
    assert "eval.n" in message
    assert '"many"' in message


def test_out_of_range_value_names_the_key():
    message = _error({"study": "t", "rl": {"group_size": 1}})
    assert "rl.group_size" in message
    assert "1" in message


def test_unknown_problem_kind_in_a_mix_is_rejected():
    message = _error({"study": "t", "world": {"benchmarks": {"b": {"size": 4, "mix": {"div:2": 1}}}}})
    assert "world.benchmarks.b" in message
    assert "div:2" in message


def test_missing_required_recipe_key_is_named():
    message = _error({"study": "t", "sft": {"recipes": {"r1": {"subset": "random", "n": 8}}}})
    assert "sft.recipes.r1" in message
    assert "epochs" in message


def test_recipe_larger_than_the_sft_pool_is_rejected_naming_the_recipe():
    config = {
        "study": "t",
        "world": {"pools": {"sft": {"size": 100}}},
        "sft": {"recipes": {"ok": _recipe(n=100), "too_big": _recipe(n=101)}},
    }
    message = _error(config)
    assert "sft.recipes.too_big.n" in message
    assert "101" in message and "100" in message


def test_recipe_as_large_as_the_pool_is_accepted(schema):
    config = {
        "study": "t",
        "world": {"pools": {"sft": {"size": 100}}},
        "sft": {"recipes": {"all": _recipe(n=100)}},
    }
    assert validate_config(config, schema)["sft"]["recipes"]["all"]["n"] == 100


def test_a_recipe_named_base_is_rejected():
    # 'base' is the name of the RL run from the base model; a recipe may not shadow it
    message = _error({"study": "t", "sft": {"recipes": {"base": _recipe()}}})
    assert "sft.recipes" in message
    assert "base" in message


def test_recipe_names_must_be_identifiers():
    message = _error({"study": "t", "sft": {"recipes": {"my-recipe": _recipe()}}})
    assert "my-recipe" in message


def test_missing_study_name_is_reported():
    assert "study" in _error({})


# --- load_config --------------------------------------------------------------------------------------------


def test_load_config_on_a_missing_file_says_not_found(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(QuagmireError, match="not found") as info:
        load_config(missing)
    assert str(missing) in str(info.value)


def test_load_config_on_invalid_yaml_says_not_valid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("study: t\neval: {n: [1, 2\n")
    with pytest.raises(QuagmireError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_on_a_non_mapping_says_it_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- study\n- t\n")
    with pytest.raises(QuagmireError, match="must be a mapping"):
        load_config(path)


def test_load_config_names_the_file_in_schema_errors(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("study: t\nsft:\n  defaults: {lrr: 0.1}\n")
    with pytest.raises(QuagmireError) as info:
        load_config(path)
    assert "sft.defaults.lrr" in str(info.value)
    assert str(path) in str(info.value)


def test_load_config_applies_overrides_before_validation(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("study: t\neval: {n: 4, temperature: 0.5}\n")
    config = load_config(path, overrides={"eval": {"n": 9}})
    assert config["eval"]["n"] == 9
    assert config["eval"]["temperature"] == 0.5
    with pytest.raises(QuagmireError, match="eval.bogus"):
        load_config(path, overrides={"eval": {"bogus": 1}})


# --- helpers ------------------------------------------------------------------------------------------------


def test_recipe_settings_merge_defaults_with_recipe_overrides(schema):
    config = validate_config(
        {
            "study": "t",
            "sft": {
                "defaults": {"lr": 0.002, "batch_size": 8},
                "recipes": {"fast": _recipe(lr=0.01), "plain": _recipe(epochs=3)},
            },
        },
        schema,
    )
    fast = recipe_settings(config, "fast")
    assert fast["lr"] == 0.01
    assert fast["batch_size"] == 8
    assert fast["max_length"] == 256  # a schema default of sft.defaults
    assert fast["n"] == 8 and fast["epochs"] == 1 and fast["subset"] == "random"
    plain = recipe_settings(config, "plain")
    assert plain["lr"] == 0.002
    assert plain["epochs"] == 3


def test_recipe_settings_of_an_unknown_recipe_lists_the_known_ones(minimal):
    with pytest.raises(QuagmireError) as info:
        recipe_settings(minimal, "nope")
    assert "nope" in str(info.value)
    assert "n2048_ep1" in str(info.value)


def test_subset_name_is_shared_by_recipes_drawing_the_same_subset():
    config = load_config(SHIPPED[0])
    recipes = config["sft"]["recipes"]
    assert subset_name(recipes["random_n2048_ep1"]) == "random-2048"
    assert subset_name(recipes["random_n2048_ep1"]) == subset_name(recipes["random_n2048_ep2"])
    assert subset_name(recipes["shortest_n2048_ep2"]) == "shortest-2048"
    assert subset_name(recipes["shortest_n2048_ep2"]) != subset_name(recipes["longest_n2048_ep2"])


def test_deep_merge_merges_nested_dicts_and_update_wins():
    base = {"a": 1, "b": {"c": 2, "d": {"e": 3}}, "l": [1, 2]}
    update = {"b": {"d": {"f": 4}, "c": 20}, "l": [9], "g": 5}
    merged = deep_merge(base, update)
    assert merged == {"a": 1, "b": {"c": 20, "d": {"e": 3, "f": 4}}, "l": [9], "g": 5}
    assert base == {"a": 1, "b": {"c": 2, "d": {"e": 3}}, "l": [1, 2]}  # inputs untouched


def test_deep_merge_copies_so_later_edits_do_not_leak():
    update = {"x": {"y": [1]}}
    merged = deep_merge({}, update)
    merged["x"]["y"].append(2)
    assert update == {"x": {"y": [1]}}


def test_deep_merge_replaces_a_scalar_with_a_mapping_and_back():
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 2}}, {"a": 1}) == {"a": 1}


def test_real_benchmarks_are_validated_and_may_not_reuse_a_world_name(schema):
    ok = validate_config({"study": "t", "eval": {"benchmarks": {"math500": {"path": "m.jsonl"}}}}, schema)
    assert ok["eval"]["benchmarks"] == {"math500": {"path": "m.jsonl"}} and ok["eval"]["shards"] == 1
    assert "eval.benchmarks.math500.paht" in _error({"study": "t", "eval": {"benchmarks": {"math500": {"paht": "m"}}}})
    clash = {"study": "t", "world": {"benchmarks": {"gsm8k": {"size": 4}}}, "eval": {"benchmarks": {"gsm8k": {}}}}
    assert "['gsm8k'] are in both world.benchmarks and eval.benchmarks" in _error(clash)
    assert "no benchmark to evaluate on" in _error({"study": "t", "world": {"benchmarks": {}}})


def test_unpinned_hub_inputs_are_listed_by_their_config_entry(schema):
    from quagmire.config import unpinned_hub_inputs

    config = validate_config({
        "study": "t",
        "base_model": {"source": "hub", "hub_id": "org/m", "revision": "a" * 40},
        "data": {"source": "hub", "sft": {"name": "nemotron_math"},
                 "rl": [{"name": "math_train", "path": "m.jsonl"}, {"name": "deepscaler"}]},
        "eval": {"benchmarks": {"aime25": {}, "math500": {"path": "x.jsonl"}}},
    }, schema)
    assert unpinned_hub_inputs(config) == ["data.sft", "data.rl[1]", "eval.benchmarks.aime25"]


def test_hub_data_needs_its_sources_and_unique_rl_names(schema):
    hub = {"study": "t", "data": {"source": "hub", "rl": [{"name": "math_train"}]}}
    assert "eval.benchmarks is empty (world.benchmarks is not used with data.source 'hub')" in _error(hub)
    hub["eval"] = {"benchmarks": {"math500": {}}}
    assert "data.source 'hub' needs data.sft" in _error(hub)
    twice = {"study": "t", "eval": hub["eval"], "data": {"source": "hub", "sft": {"name": "nemotron_math"},
                                                         "rl": [{"name": "deepscaler"}, {"name": "deepscaler"}]}}
    assert "data.rl names must be unique" in _error(twice)
    assert "data.rl[0].paht" in _error({"study": "t", "data": {"rl": [{"name": "x", "paht": "p"}]}})


def test_a_partial_resources_override_keeps_the_familys_other_defaults(schema):
    """`train: {gpu: 2}` asks for 2 GPUs with the train family's memory and runtime, not the generic ones."""
    config = validate_config({"study": "t", "resources": {"train": {"gpu": 2}, "genloss": {"runtime": 5}}}, schema)
    assert config["resources"]["train"] == {"gpu": 2, "mem_mb": 4000, "runtime": 120}
    assert config["resources"]["genloss"] == {"runtime": 5, "mem_mb": 3000, "gpu": 0}
    assert config["resources"]["rl"] == {"mem_mb": 6000, "runtime": 120, "gpu": 0}


def test_loading_a_paper_config_as_one_study_says_what_it_is():
    from pathlib import Path

    from quagmire.config import load_config

    paper = Path(__file__).resolve().parents[1] / "config" / "paper.yaml"
    with pytest.raises(QuagmireError, match=r"is a paper config \(it lists `studies`\), not one study"):
        load_config(paper)
