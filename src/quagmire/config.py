"""Loading and validating a study config: JSON schema with defaults, errors that name the key.

Why our own pass before Snakemake's `validate`: jsonschema's raw messages ("Additional properties are not allowed
('lrr' was unexpected)") do not say where in the file the problem is. We report `sft.defaults.lrr` and the allowed
keys, in one line, before any job starts.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from quagmire import REPO
from quagmire.errors import QuagmireError

SCHEMA_PATH = REPO / "config" / "schema.yaml"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser where PyYAML has one


def load_schema(path: str | Path | None = None) -> dict[str, Any]:
    """The study schema (config/schema.yaml of this checkout, or an explicit path)."""
    schema_path = Path(path) if path else SCHEMA_PATH
    if not schema_path.exists():
        raise QuagmireError(f"config schema not found at {schema_path}")
    return yaml.load(schema_path.read_text(), Loader=_LOADER)


@functools.lru_cache(maxsize=1)
def _validator_class() -> Any:
    """Draft 2020-12 with two stricter types: an `integer` is never a float (YAML `4.0` for a count would reach
    `range()` or a file name as 4.0), and a `number` is finite (`.nan` passes every bound, since any comparison
    with NaN is false, and `.inf` is no learning rate or size)."""
    from jsonschema import Draft202012Validator, validators

    def is_integer(checker: Any, instance: Any) -> bool:
        return isinstance(instance, int) and not isinstance(instance, bool)

    def is_number(checker: Any, instance: Any) -> bool:
        if isinstance(instance, bool) or not isinstance(instance, (int, float)):
            return False
        return not isinstance(instance, float) or math.isfinite(instance)

    checker = Draft202012Validator.TYPE_CHECKER.redefine_many({"integer": is_integer, "number": is_number})
    return validators.extend(Draft202012Validator, type_checker=checker)


def _key_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_RESERVED = {
    "sft.recipes": " (letters, digits, _; 'base' is reserved for RL from the base model)",
    "world.benchmarks": " (letters, digits, _; not a pool name: sft, heldout, rl)",
    "candidates": " (letters, digits, _; 'base' is reserved for RL from the base model)",
}


_PATTERNS = {  # what a key's `pattern` means, for its error (the regex itself says little to a user)
    "revision": "a commit (40 lowercase hex digits); a branch or tag moves under a finished study",
    "study": "a folder name: letters, digits, _ . - (not starting with . or -); it names results/<study>/",
    "paper": "a folder name: letters, digits, _ . - (not starting with . or -); it names results/<paper>/",
}


def _within_alternatives(error: Any) -> Any:
    """For a value that matches none of `anyOf`'s alternatives: the error inside the alternative of its own type
    (a bad `threshold` inside an object, not "not valid under any of the given schemas"), if there is one."""
    if error.validator != "anyOf" or not error.context:
        return error
    inner = [e for e in error.context if e.validator not in ("type", "const") or len(e.absolute_path) > len(
        error.absolute_path)]
    if not inner:
        return error
    return _within_alternatives(max(inner, key=lambda e: len(e.absolute_path)))


def _describe(error: Any, at: Sequence[str] = ()) -> str:
    """One line for one jsonschema error: the dotted key (under the section `at`), what is wrong, what was given."""
    error = _within_alternatives(error)
    parts = [*at, *error.absolute_path]
    where = _key_path(parts)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        given = error.instance if isinstance(error.instance, Mapping) else {}
        unknown = sorted(k for k in given if k not in allowed)
        prefix = f"{where}." if parts else ""
        names = ", ".join(f"{prefix}{k}" for k in unknown) or where
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key {names}{hint}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if "propertyNames" in error.schema_path:
        return f"{where}: {json.dumps(error.instance)} is not an allowed name here{_RESERVED.get(where, '')}"
    got = json.dumps(error.instance) if not isinstance(error.instance, Mapping) else "an object"
    if error.validator == "type" and isinstance(error.instance, float):
        if not math.isfinite(error.instance):
            return f"{where}: must be a finite number (got {got})"
        if "integer" in error.validator_value:
            written = " written without a decimal point" if error.instance.is_integer() else ""
            return f"{where}: must be a whole number{written} (got {got})"
    if error.validator == "pattern" and parts and parts[-1] in _PATTERNS:
        return f"{where}: {got} is not {_PATTERNS[parts[-1]]}"
    if error.validator == "uniqueItems":
        return f"{where}: lists a value more than once (got {got})"
    return f"{where}: {error.message} (got {got})"


def _non_text_key(value: Any, at: tuple[Any, ...]) -> str | None:
    """The first mapping key that is not text (YAML reads `2048:` or `true:` as a number or a bool), described.

    Why: every key of a config is a name (a recipe, a benchmark, a setting); a JSON schema checks the names of
    strings only, so a number key would pass unchecked and later break sorting and file names.
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                written = json.dumps(key, default=str)
                return f"{_key_path(at)}: key {written} is not text; quote it (\"{written}\") or rename it"
            found = _non_text_key(item, (*at, key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _non_text_key(item, (*at, index))
            if found:
                return found
    return None


def validate_config(
    config: Mapping[str, Any], schema: Mapping[str, Any] | None = None, source: str = "config"
) -> dict[str, Any]:
    """Return a deep copy of `config` with schema defaults filled in; raise QuagmireError naming the bad key."""
    resolved = filled(config, schema or load_schema(), source)
    _check_semantics(resolved, source)
    return resolved


def filled(
    config: Mapping[str, Any], schema: Mapping[str, Any], source: str, at: Sequence[str] = ()
) -> dict[str, Any]:
    """A deep copy of `config`, checked against `schema` (errors name the key) and with its defaults filled in.

    `at` is where `config` sits in a study config (e.g. ("data", "filters") for that section alone), so an error
    names the key as a config file would.
    """
    validator = _validator_class()
    schema = dict(schema)
    resolved = copy.deepcopy(dict(config))
    problem = _non_text_key(resolved, tuple(at))
    if problem:
        raise QuagmireError(f"config error in {source}: {problem}")
    # Report problems on what the user wrote first: filled-in defaults can never be the culprit.
    errors = sorted(validator(schema).iter_errors(resolved), key=lambda e: list(e.absolute_path))
    if errors:
        raise QuagmireError(f"config error in {source}: {_describe(errors[0], at)}")
    for _ in _default_filler(schema)(schema).iter_errors(resolved):  # fills defaults in place; already valid
        pass
    errors = list(validator(schema).iter_errors(resolved))
    if errors:  # a default in the schema itself is invalid: a bug in the project, not in the user's config
        raise QuagmireError(f"schema default invalid: {_describe(errors[0], at)}")
    return resolved


# ---- one section at a time: the library's settings come from here, never from defaults of its own ----------


@functools.lru_cache(maxsize=1)
def _study_schema() -> dict[str, Any]:
    """The checkout's study schema, read once per process (library calls look up sections often)."""
    return load_schema()


def section_schema(path: str, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The schema of one section of a study config (`path` dotted, e.g. "data.filters"), with the root's `$defs`
    so that its `$ref`s resolve. A `$ref` on the way down is followed; the section's own node is kept as written
    (its `$ref` and sibling keywords validate together, as in the whole schema)."""
    root = schema or _study_schema()
    node: Mapping[str, Any] = root
    for part in path.split("."):
        props = _deref(root, node).get("properties", {})
        if part not in props:
            raise QuagmireError(f"no section {path!r} in the config schema ({part!r} is not a key here)")
        node = props[part]
    return {**node, "$defs": root.get("$defs", {})}


def section_defaults(path: str) -> dict[str, Any]:
    """Every default of section `path`, filled as for a config that leaves the whole section out."""
    return settings_for(path, None, "the config schema")


def settings_for(path: str, given: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """Section `path` of a study config as the library uses it: `given` (None: nothing given) checked against the
    schema, its missing keys filled from the schema's defaults, then the cross-key rules of that section.

    A bad value fails exactly as in a config file, naming the key (`config error in <where>: data.filters.
    max_tokens: ...`): the library has no defaults or checks of its own. A study config's sections arrive
    filled and checked already; filling them again changes nothing.
    """
    if given is not None and not isinstance(given, Mapping):
        got = json.dumps(given, default=str)
        raise QuagmireError(f"config error in {where}: {path}: must be a mapping (got {got})")
    resolved = filled(given or {}, section_schema(path), where, at=path.split("."))
    rule = SECTION_RULES.get(path)
    problem = rule(resolved) if rule else None
    if problem:
        raise QuagmireError(f"config error in {where}: {problem}")
    return resolved


def paper_schema(schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The schema of a paper config (`$defs/paper`), with the study schema's `$defs` for its references."""
    root = schema or load_schema()
    return {**root["$defs"]["paper"], "$defs": root["$defs"]}


def ref_target(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    """The node a local `$ref` ("#/$defs/...") points at in `root` (the one reader of references: validation,
    default filling and the config reference all follow them the same way)."""
    if not ref.startswith("#/"):
        raise QuagmireError(f"the config schema may only use local references (got {ref!r})")
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    return target


def _deref(root: Mapping[str, Any], sub: Mapping[str, Any]) -> Mapping[str, Any]:
    """`sub` with a local `$ref` (into `root`) replaced by its target; `sub`'s own keywords win."""
    ref = sub.get("$ref", "")
    if not ref:
        return sub
    return {**ref_target(root, ref), **{k: v for k, v in sub.items() if k != "$ref"}}


def _default_filler(root: Mapping[str, Any]) -> Any:
    """A validator class that fills `default`s (following local `$ref`s into `root`) while it descends."""
    from jsonschema import validators

    strict = _validator_class()

    def properties(validator: Any, props: Mapping[str, Any], instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for name, sub in props.items():
                sub = _deref(root, sub)
                if name not in instance and "default" in sub:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from strict.VALIDATORS["properties"](validator, props, instance, schema)

    return validators.extend(strict, {"properties": properties})


def _filter_bounds(filters: Mapping[str, Any]) -> str | None:
    """The length step's bounds must leave room for a response."""
    low, high = filters["min_tokens"], filters["max_tokens"]
    if low is not None and high is not None and low > high:
        return f"data.filters.min_tokens: {low} is larger than data.filters.max_tokens ({high})"
    return None


def _extra_ks_within_n(evaluation: Mapping[str, Any]) -> str | None:
    """pass@k is defined for k <= n only: a larger extra k would silently never be reported."""
    n = evaluation["n"]
    above = [k for k in evaluation["extra_ks"] if k > n]
    if above:
        return f"eval.extra_ks: {above[0]} is larger than eval.n ({n}); pass@k needs k <= n samples per problem"
    return None


# Cross-key rules of one section (what a JSON schema cannot state): checked for a study config and for the same
# section given to the library (`settings_for`), with one message, key path first.
SECTION_RULES: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "data.filters": _filter_bounds,
    "eval": _extra_ks_within_n,
}


def measured_ks(n: int, extra_ks: Sequence[int]) -> list[int]:
    """The k whose pass@k a study reports with n samples per problem: 1, 2, 4, ... up to n, n, and each extra k
    up to n (the rule of `quagmire.eval.metrics.ks_for`, stated here without importing the scoring stack into
    every job that reads a config; a test keeps the two equal)."""
    powers = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return sorted({n, *powers, *(k for k in extra_ks if 1 <= k <= n)})


def _k_large_measured(config: Mapping[str, Any]) -> str | None:
    """`analysis.k_large` must be a k whose pass@k the study measures, or the analysis job fails after every
    model was trained and sampled (pass@k for k > n is undefined)."""
    k_large, evaluation = config["analysis"]["k_large"], config["eval"]
    if k_large is None:
        return None
    n = evaluation["n"]
    if k_large > n:
        return (f"analysis.k_large: {k_large} is larger than eval.n ({n}); pass@k needs k <= n samples per "
                "problem")
    measured = measured_ks(n, evaluation["extra_ks"])
    if k_large not in measured:
        return (f"analysis.k_large: pass@{k_large} is not measured (k measured with eval.n = {n}: "
                f"{', '.join(map(str, measured))}); add {k_large} to eval.extra_ks or pick one of those")
    return None


def _base_model_source(config: Mapping[str, Any]) -> str | None:
    """A hub base model needs somewhere to come from."""
    model = config["base_model"]
    if model["source"] == "hub" and "hub_id" not in model and "path" not in model:
        return ("base_model: source 'hub' needs base_model.hub_id (with a pinned revision) or base_model.path "
                "(a local snapshot folder)")
    return None


STUDY_HELDOUT = "study"  # a candidate's `heldout:` naming the study's own held-out split


def candidate_heldout_set(candidate: Mapping[str, Any]) -> str:
    """The name of the held-out set a candidate's loss is measured on: 'study', or its data set's `name`."""
    heldout = candidate.get("heldout", STUDY_HELDOUT)
    return heldout if isinstance(heldout, str) else str(heldout["name"])


def _candidates(config: Mapping[str, Any]) -> str | None:
    """Candidates need a run name of their own, a model to come from (a hub one pinned: it is fetched once and
    must be the same weights on every rerun), and one meaning per held-out set name (losses compare by it)."""
    recipes = config["sft"]["recipes"]
    sets: dict[str, tuple[str, Any]] = {}
    for name, candidate in sorted(config["candidates"].items()):
        where = f"candidates.{name}"
        if name in recipes:
            return (f"{where}: {name!r} is already a recipe's name (sft.recipes.{name}); a candidate needs a run "
                    f"name of its own (both would write genloss/{name}.json and rank as {name})")
        if "path" not in candidate and "hub_id" not in candidate:
            return f"{where}: needs path (a local checkpoint folder) or hub_id with a pinned revision"
        if "path" not in candidate and "revision" not in candidate:
            return (f"{where}.revision: hub_id {candidate['hub_id']!r} needs a pinned revision (a 40-hex commit; a "
                    "branch or tag would change the candidate under a finished study)")
        heldout = candidate["heldout"]
        if isinstance(heldout, Mapping):
            set_name = candidate_heldout_set(candidate)
            if set_name == STUDY_HELDOUT:
                return (f"{where}.heldout.name: {STUDY_HELDOUT!r} names the study's own held-out split; give the "
                        "data set another name")
            first = sets.setdefault(set_name, (name, heldout))
            if first[1] != heldout:
                return (f"{where}.heldout: held-out set {set_name!r} is given with other settings in "
                        f"candidates.{first[0]}.heldout; one name is one set (losses are compared by it)")
    return None


def _check_semantics(config: Mapping[str, Any], source: str) -> None:
    """Cross-key rules a schema cannot state."""

    def fail(message: str) -> None:
        raise QuagmireError(f"config error in {source}: {message}")

    for path, rule in SECTION_RULES.items():
        section: Any = config
        for part in path.split("."):
            section = section[part]
        problem = rule(section)
        if problem:
            fail(problem)

    data, real = config["data"], config["eval"]["benchmarks"]
    world = config["world"]["benchmarks"] if data["source"] == "world" else {}
    if not world and not real:
        if data["source"] == "hub":
            fail("no benchmark to evaluate on: eval.benchmarks is empty (world.benchmarks is not used with "
                 "data.source 'hub')")
        fail("no benchmark to evaluate on (world.benchmarks and eval.benchmarks are both empty)")
    clash = sorted(set(world) & set(real))
    if clash:
        fail(f"benchmark name(s) {clash} are in both world.benchmarks and eval.benchmarks; rename one (each name "
             "is one file under data/benchmarks/)")
    if data["source"] == "hub":
        if "sft" not in data or not data["rl"]:
            fail("data.source 'hub' needs data.sft (the SFT dataset) and at least one data.rl entry")
        names = [entry["name"] for entry in data["rl"]]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            fail(f"data.rl names must be unique: {twice[0]!r} is listed {names.count(twice[0])} times (got {names}); "
                 "each is one file under data/raw/")
    for rule in (_k_large_measured, _base_model_source, _candidates):
        problem = rule(config)
        if problem:
            fail(problem)
    if data["source"] == "world":
        pool = config["world"]["pools"]["sft"]["size"]
        for name, recipe in config["sft"]["recipes"].items():
            if recipe["n"] > pool:
                fail(f"sft.recipes.{name}.n = {recipe['n']} is larger than the SFT pool (world.pools.sft.size = "
                     f"{pool})")


def unpinned_hub_inputs(config: Mapping[str, Any]) -> list[str]:
    """Config entries that would be read from the hub without a pinned commit (their jobs would refuse to run).

    A dry run does not read them, so this is how a user finds every `revision:` still to fill in at once.
    """
    from quagmire.provenance import is_commit

    entries: list[tuple[str, Mapping[str, Any]]] = []
    if config["base_model"]["source"] == "hub":
        entries.append(("base_model", config["base_model"]))
    if config["data"]["source"] == "hub":
        entries.append(("data.sft", config["data"].get("sft", {})))
        entries += [(f"data.rl[{i}]", entry) for i, entry in enumerate(config["data"]["rl"])]
    entries += [(f"eval.benchmarks.{name}", entry) for name, entry in config["eval"]["benchmarks"].items()]
    entries += [(f"candidates.{name}.heldout", c["heldout"]) for name, c in sorted(config["candidates"].items())
                if isinstance(c["heldout"], Mapping)]
    return [where for where, entry in entries if "path" not in entry and not is_commit(entry.get("revision"))]


def _repeated_key(node: Any, at: tuple[Any, ...] = ()) -> str | None:
    """The first key given twice in one mapping of a composed YAML document, as "key.path (lines a and b)".

    Why: a YAML loader keeps the last of two equal keys without a word, so a benchmark or recipe listed twice
    (perhaps with different settings) would silently be one of them.
    """
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if key.value in lines:
                return f"{_key_path([*at, key.value])} is given twice (lines {lines[key.value]} and {line})"
            lines[key.value] = line
            found = _repeated_key(value, (*at, key.value))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _repeated_key(item, (*at, index))
            if found:
                return found
    return None


def check_repeated_keys(path: str | Path) -> None:
    """Refuse a YAML config file that gives one key twice in a mapping, naming the key and both lines.

    For files read by someone else's loader too (Snakemake's `--configfile`), which keeps the last silently.
    """
    path = Path(path)
    if not path.is_file():
        return  # the reader names a missing file
    try:
        repeated = _repeated_key(yaml.compose(path.read_text(), Loader=_LOADER))
    except yaml.YAMLError:
        return  # the reader reports invalid YAML
    if repeated:
        raise QuagmireError(f"config error in {path}: {repeated}; YAML keeps only the last, so give it once")



def missing_local_files(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(config key, message) of every local input of a study that does not exist, relative paths read from the
    working directory as the jobs read them: the base model's snapshot folder, the hub-format data files, the
    benchmark files, the candidates' checkpoint folders and held-out files, and the ranking's calibration CSV."""
    missing = []
    model = config["base_model"]
    if model["source"] == "hub" and "path" in model and not Path(model["path"]).is_dir():
        missing.append(("base_model.path", f"folder not found: {model['path']}"))
    entries: list[tuple[str, Mapping[str, Any]]] = []
    if config["data"]["source"] == "hub":
        entries.append(("data.sft", config["data"].get("sft", {})))
        entries += [(f"data.rl[{i}]", entry) for i, entry in enumerate(config["data"]["rl"])]
    entries += [(f"eval.benchmarks.{name}", entry) for name, entry in sorted(config["eval"]["benchmarks"].items())]
    for name, candidate in sorted(config["candidates"].items()):
        if "path" in candidate and not Path(candidate["path"]).is_dir():
            missing.append((f"candidates.{name}.path", f"folder not found: {candidate['path']}"))
        if isinstance(candidate["heldout"], Mapping):
            entries.append((f"candidates.{name}.heldout", candidate["heldout"]))
    missing += [(f"{where}.path", f"file not found: {entry['path']}") for where, entry in entries
                if "path" in entry and not Path(entry["path"]).is_file()]
    rank = config["analysis"]["rank"]
    if "calibration_csv" in rank and not Path(rank["calibration_csv"]).is_file():
        missing.append(("analysis.rank.calibration_csv", f"file not found: {rank['calibration_csv']}"))
    return missing


def check_local_files(config: Mapping[str, Any], source: str) -> None:
    """Refuse a study whose local input is missing, naming its key, before any job starts (a job would only find
    out after everything upstream of it ran)."""
    missing = missing_local_files(config)
    if missing:
        key, problem = missing[0]
        raise QuagmireError(f"config error in {source}: {key}: {problem} (relative paths are read from the "
                            f"working directory, {Path.cwd()})")


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is an empty mapping), or a QuagmireError.

    A key given twice in one mapping is an error (`check_repeated_keys`), not the last one silently."""
    path = Path(path)
    if not path.exists():
        raise QuagmireError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:  # its own text spans several lines; the user needs where and what
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise QuagmireError(f"config error in {path}: not valid YAML{at}: {problem}") from exc
    check_repeated_keys(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise QuagmireError(f"config error in {path}: the top level must be a mapping")
    return raw


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML study config, apply `overrides` (a nested dict), validate, fill defaults."""
    raw = read_yaml_mapping(path)
    if "studies" in raw:
        raise QuagmireError(f"{path} is a paper config (it lists `studies`), not one study: read it with "
                            "quagmire.studies.load_run, or load one of its study files")
    if overrides:
        raw = deep_merge(raw, overrides)
    return validate_config(raw, source=str(path))


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dict merge; values in `update` win."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def recipe_settings(config: Mapping[str, Any], recipe: str) -> dict[str, Any]:
    """The fully resolved SFT settings of one recipe: defaults overridden by the recipe's own keys."""
    recipes = config["sft"]["recipes"]
    if recipe not in recipes:
        raise QuagmireError(f"unknown SFT recipe {recipe!r} (known: {', '.join(recipes)})")
    return {**config["sft"]["defaults"], **recipes[recipe]}


# What a job consumes vs what only labels or operates it. A rule's params carry exactly what changes its result,
# because Snakemake reruns a job (and everything after it) when its params change: a comparison label, a checkpoint
# cadence or a worker count must never retrain a model. Operational knobs reach jobs as Snakemake resources.
RECIPE_LABELS = ("dataset_level", "instance_level")  # which comparison a recipe belongs to: analysis only
CHECKPOINTING = ("save_steps", "save_total_limit")  # how often a run saves; resume works across any cadence
RL_OPERATIONAL = ("from_base", *CHECKPOINTING, "vllm_gpu_memory_utilization")  # from_base adds a run, changes none


def sft_job_settings(config: Mapping[str, Any], recipe: str) -> dict[str, Any]:
    """What an SFT job's result depends on: the recipe's resolved settings without labels and checkpointing."""
    return {k: v for k, v in recipe_settings(config, recipe).items() if k not in (*RECIPE_LABELS, *CHECKPOINTING)}


def sft_checkpointing(config: Mapping[str, Any], recipe: str) -> dict[str, int]:
    settings = recipe_settings(config, recipe)
    return {k: int(settings[k]) for k in CHECKPOINTING}


RECIPE_TABLE_KEYS = ("subset", "n", "epochs", "lr", *RECIPE_LABELS)  # what the recipes table lists per recipe


def recipe_table_settings(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What the recipes table job consumes: per recipe, its subset, size, epochs, lr and comparison labels."""
    return {
        name: {key: recipe_settings(config, name)[key] for key in RECIPE_TABLE_KEYS}
        for name in sorted(config["sft"]["recipes"])
    }


def grpo_job_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a GRPO job's result depends on: the `rl` section without operational knobs."""
    return {k: v for k, v in config["rl"].items() if k not in RL_OPERATIONAL}


def filter_job_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `data.filters` section without its worker count (the job's threads)."""
    return {k: v for k, v in config["data"]["filters"].items() if k != "gold_workers"}


def subset_name(recipe: Mapping[str, Any]) -> str:
    """Recipes that draw the same subset share one file: named by strategy and size."""
    return f"{recipe['subset']}-{recipe['n']}"
