"""config/README.md is the rendering of config/schema.yaml, and the schema documents every key it accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quagmire.config import filled, load_schema, paper_schema, validate_config
from quagmire.config_doc import REGENERATE, KeyDoc, paper_keys, render, study_keys

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return load_schema()


def test_committed_config_readme_is_the_rendered_schema(schema: dict[str, Any]) -> None:
    committed = (REPO / "config" / "README.md").read_text()
    assert committed == render(schema), f"config/README.md is stale: regenerate it with `{REGENERATE}`"


@pytest.mark.parametrize("which", ["study", "paper"])
def test_every_key_has_a_description(schema: dict[str, Any], which: str) -> None:
    rows = study_keys(schema) if which == "study" else paper_keys(schema)
    undocumented = [row.path for row in rows if not row.description]
    assert undocumented == [], f"add a `description:` to these keys in config/schema.yaml: {undocumented}"


def test_a_key_without_description_is_listed_with_an_empty_one() -> None:
    """The check above can fail: a property without `description` yields a row without one."""
    tiny = {"type": "object", "properties": {"a": {"type": "integer", "default": 3, "description": "A."},
                                             "b": {"$ref": "#/$defs/b"}},
            "$defs": {"b": {"type": "object", "default": {}, "properties": {"c": {"type": "string"}}}}}
    assert study_keys(tiny) == [
        KeyDoc("a", "integer", "`3`", "A."), KeyDoc("b", "object", "`{}`", ""), KeyDoc("b.c", "string", "–", "")]


def _at(config: Any, path: str) -> Any:
    for key in path.split("."):
        config = config[key]
    return config


def _concrete_defaults(rows: list[KeyDoc]) -> dict[str, str]:
    """The stated defaults of keys with a fixed path whose value is not a mapping (a section's `{}` is filled
    further, by its keys' own defaults, which are rows of their own)."""
    return {row.path: row.default for row in rows
            if "<" not in row.path and "[]" not in row.path and row.default.startswith("`")
            and not row.default.startswith("`{")}


def test_documented_defaults_are_the_ones_validation_fills_in(schema: dict[str, Any]) -> None:
    """Each default the reference states is what a config that omits the key gets (a `$ref`'d node's own
    defaults included: resources.data.runtime is the data family's 30, not the shared 60)."""
    import json

    study = validate_config({"study": "doc"}, schema)
    documented = _concrete_defaults(study_keys(schema))
    assert {path: json.loads(text.strip("`")) for path, text in documented.items()} == {
        path: _at(study, path) for path in documented}
    assert documented["resources.data.runtime"] == "`30`" and documented["eval.shards"] == "`1`"
    assert len(documented) > 90
    paper = filled({"paper": "p", "studies": ["config/smoke.yaml"]}, paper_schema(schema), "doc")
    documented = _concrete_defaults(paper_keys(schema))
    assert {path: json.loads(text.strip("`")) for path, text in documented.items()} == {
        path: _at(paper, path) for path in documented}


def test_every_section_and_nested_kind_of_key_is_listed(schema: dict[str, Any]) -> None:
    paths = {row.path for row in study_keys(schema)}
    assert set(schema["properties"]) <= paths
    # a map of objects, a list of objects, an object alternative of anyOf, a $ref'd definition
    assert {"sft.recipes.<name>.epochs", "data.rl[].revision", "data.filters.decontaminate.threshold",
            "eval.benchmarks.<name>.answer_kind", "sft.defaults.save_steps"} <= paths
    assert {row.path for row in paper_keys(schema)} >= {"paper", "studies", "plots.dpi"}


def test_prose_keeps_placeholders_visible_in_markdown(schema: dict[str, Any]) -> None:
    text = render(schema)
    assert "results/&lt;study>/" in text and "`sft.recipes.<name>.n`" in text  # code spans are left as they are
