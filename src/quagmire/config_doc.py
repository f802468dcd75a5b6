"""config/README.md, rendered from config/schema.yaml: every key path with its type, default and description.

Why generated: the schema is what validation and default filling read, so it is the one place a key's meaning,
type and default can be right. A hand-written key reference drifts from it; this one is rendered from it, and a
test fails when the committed file differs from the rendering. Regenerate with

    python -m quagmire.config_doc > config/README.md
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from quagmire.config import ref_target

REGENERATE = "python -m quagmire.config_doc > config/README.md"


@dataclass(frozen=True)
class KeyDoc:
    """One row of the reference: a key path (`eval.shards`, `sft.recipes.<name>.n`, `data.rl[].name`)."""

    path: str
    type: str
    default: str
    description: str


def resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """`node` with its local `$ref` followed: the node's own keywords win, and its `properties` are merged per key
    over the referenced ones, as default filling sees them (a resources family's own mem_mb default wins)."""
    ref = node.get("$ref")
    if not ref:
        return dict(node)
    base = resolve(ref_target(root, ref), root)
    merged = {**base, **{k: v for k, v in node.items() if k != "$ref"}}
    if "properties" in node and "properties" in base:
        own = node["properties"]
        merged["properties"] = {name: {**sub, **own.get(name, {})} for name, sub in base["properties"].items()}
        merged["properties"].update({name: sub for name, sub in own.items() if name not in base["properties"]})
    return merged


def _value(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _bounds(node: Mapping[str, Any]) -> list[str]:
    parts = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in node:
            parts.append(f"{sign} {node[key]}")
    if "pattern" in node:
        parts.append(f"matching `{node['pattern']}`")
    names = node.get("propertyNames", {})
    if isinstance(names, Mapping) and "pattern" in names:
        parts.append(f"names matching `{names['pattern']}`")
    for key, what in (("minItems", "item"), ("minProperties", "entry")):
        if key in node:
            plural = "" if node[key] == 1 else ("s" if what == "item" else "ies")
            parts.append(f"at least {node[key]} {what if not plural else what.rstrip('y') + plural}")
    return parts


def type_of(node: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    """A short reading of a node's type and constraints, e.g. "integer ≥ 1" or "string: `hf`, `vllm`"."""
    node = resolve(node, root)
    if "const" in node:
        return _value(node["const"])
    if "anyOf" in node:
        kinds = [type_of(alternative, root) for alternative in node["anyOf"]]
        return " or ".join(kinds)
    kind = node.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else kind
    if kind == "array" and isinstance(node.get("items"), Mapping):
        text = f"array of {_grouped(type_of(node['items'], root))}"
    elif kind == "object" and isinstance(node.get("additionalProperties"), Mapping) and "properties" not in node:
        text = f"mapping of name to {_grouped(type_of(node['additionalProperties'], root))}"
    if "enum" in node:
        text = f"{text if 'type' in node else 'one of'}: {', '.join(_value(v) for v in node['enum'])}"
    return ", ".join([text, *_bounds(node)]) if _bounds(node) else text


def _grouped(text: str) -> str:
    """An inner type in parentheses when it has constraints of its own, so they do not read as the outer's."""
    return f"({text})" if "," in text or " or " in text else text


def _default(node: Mapping[str, Any], required: bool) -> str:
    if "default" in node:
        return _value(node["default"])
    return "required" if required else "–"


def _description(node: Mapping[str, Any]) -> str:
    return " ".join(str(node.get("description", "")).split())


def walk(node: Mapping[str, Any], root: Mapping[str, Any], path: str, required: bool = False) -> Iterator[KeyDoc]:
    """The rows of `node` at `path` and of every key below it, in schema order."""
    resolved = resolve(node, root)
    yield KeyDoc(path, type_of(resolved, root), _default(resolved, required), _description(resolved))
    yield from _children(resolved, root, path)


def _children(node: Mapping[str, Any], root: Mapping[str, Any], path: str) -> Iterator[KeyDoc]:
    required = set(node.get("required", ()))
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, root, f"{path}.{name}" if path else name, name in required)
    entries = node.get("additionalProperties")
    if isinstance(entries, Mapping) and "properties" in resolve(entries, root):  # plain values: in the map's type
        yield from walk(entries, root, f"{path}.<name>")
    items = node.get("items")
    if isinstance(items, Mapping) and "properties" in resolve(items, root):
        yield from walk(items, root, f"{path}[]")
    for alternative in node.get("anyOf", ()):
        yield from _children(resolve(alternative, root), root, path)  # e.g. decontaminate's object form


def study_keys(schema: Mapping[str, Any]) -> list[KeyDoc]:
    """Every key path of a study config."""
    return list(_children(schema, schema, ""))


def paper_keys(schema: Mapping[str, Any]) -> list[KeyDoc]:
    """Every key path of a paper config (`$defs/paper`)."""
    return list(_children(resolve(schema["$defs"]["paper"], schema), schema, ""))


def _cell(text: str) -> str:
    """Table-cell text: `|` escaped everywhere, and `<` outside code spans (else `results/<study>/` would render
    as an HTML tag and vanish)."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


def _table(rows: list[KeyDoc]) -> list[str]:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    lines += [f"| {_cell(f'`{r.path}`')} | {_cell(r.type)} | {_cell(r.default)} | {_cell(r.description)} |"
              for r in rows]
    return lines


def render(schema: Mapping[str, Any]) -> str:
    """The Markdown reference of every key of a study config and of a paper config, from the schema."""
    lines = [
        "# Config keys",
        "",
        f"<!-- Generated from config/schema.yaml by `{REGENERATE}`; do not edit by hand. -->",
        "",
        _description(schema),
        "",
        "A key path names nested keys with dots; `<name>` is a name of your choosing (a recipe, a benchmark) and",
        "`[]` an item of a list. A section whose default is `{}` is filled with the defaults of its keys, listed",
        "below it; `–` means no default (the key is unset unless the config states it).",
        "",
        "## Study config",
        "",
    ]
    rows = study_keys(schema)
    top = [row for row in rows if "." not in row.path and not row.type.startswith("object")]
    lines += ["### Top level", "", *_table(top), ""]
    for name, sub in schema["properties"].items():
        node = resolve(sub, schema)
        if node.get("type") != "object":
            continue
        section = [row for row in rows if row.path == name or row.path.startswith(f"{name}.")]
        lines += [f"### `{name}`", "", *_table(section), ""]
    paper = resolve(schema["$defs"]["paper"], schema)
    lines += ["## Paper config", "", _cell(_description(paper)), "", *_table(paper_keys(schema)), ""]
    return "\n".join(lines)


def main() -> None:
    """Print config/README.md for this checkout's schema."""
    from quagmire.config import load_schema

    sys.stdout.write(render(load_schema()))


if __name__ == "__main__":
    main()
