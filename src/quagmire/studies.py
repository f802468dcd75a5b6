"""The studies of one workflow run: a study config, or a paper config listing several (one DAG, one `all`).

Why one loader for both: every rule is written once, for a `{study}` wildcard, and looks its settings up in the
`Study` of that name. A single-study config is a run of one study without paper-level outputs; a paper config
(`studies:`, e.g. config/paper.yaml) adds the outputs that span its studies under `results/<paper>/`. Each study
keeps its own folder `results/<study>/`, so a study run alone and the same study inside a paper share every file
(nothing reruns when one is added to a paper).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from quagmire.config import (
    REPO,
    STUDY_HELDOUT,
    candidate_heldout_set,
    check_local_files,
    check_repeated_keys,
    deep_merge,
    filled,
    load_schema,
    paper_schema,
    read_yaml_mapping,
    unpinned_hub_inputs,
    validate_config,
)
from quagmire.errors import QuagmireError

RESULTS = "results"


@dataclass(frozen=True)
class Study:
    """One validated study config and what its DAG contains (runs, benchmarks), in a stable order.

    Lists are sorted: reordering keys in a config file must not change any job's params (and so rerun it).
    """

    name: str
    config: dict[str, Any] = field(repr=False)

    @cached_property
    def hub_data(self) -> bool:
        return self.config["data"]["source"] == "hub"

    @cached_property
    def hub_model(self) -> bool:
        return self.config["base_model"]["source"] == "hub"

    @cached_property
    def reads_hub(self) -> bool:
        """Whether any input is read from a model or data hub (no local `path`): jobs then need the network."""
        entries = [self.config["base_model"], *self.config["eval"]["benchmarks"].values()]
        if self.hub_data:
            entries += [self.config["data"]["sft"], *self.config["data"]["rl"]]
        entries += list(self.config["candidates"].values()) + list(self.heldout_sets.values())
        return any(entry.get("source", "hub") == "hub" and "path" not in entry for entry in entries)

    @cached_property
    def recipes(self) -> list[str]:
        return sorted(self.config["sft"]["recipes"])

    @cached_property
    def rl_runs(self) -> list[str]:
        """GRPO runs: one per SFT recipe, plus 'base' (GRPO from the base model) when rl.from_base is set."""
        return self.recipes + (["base"] if self.config["rl"]["from_base"] else [])

    @cached_property
    def candidates(self) -> list[str]:
        """SFT checkpoints the study did not train (`candidates:`), evaluated and ranked beside the recipes."""
        return sorted(self.config["candidates"])

    def candidate_heldout(self, name: str) -> str:
        """The held-out set candidate `name` is judged on: 'study' (the study's split) or its own set's name."""
        return candidate_heldout_set(self.config["candidates"][name])

    @cached_property
    def heldout_sets(self) -> dict[str, dict[str, Any]]:
        """The candidates' own held-out sets, by name, each a data set entry in data.sft's format."""
        sets: dict[str, dict[str, Any]] = {}
        for name in self.candidates:
            heldout = self.config["candidates"][name]["heldout"]
            if heldout != STUDY_HELDOUT:
                sets.setdefault(heldout["name"], heldout)
        return dict(sorted(sets.items()))

    @cached_property
    def world_benchmarks(self) -> list[str]:
        return [] if self.hub_data else sorted(self.config["world"]["benchmarks"])

    @cached_property
    def real_benchmarks(self) -> list[str]:
        """Registry benchmarks (local files or pinned hub datasets), evaluated next to the world's."""
        return sorted(self.config["eval"]["benchmarks"])

    @cached_property
    def benchmarks(self) -> list[str]:
        return sorted(self.world_benchmarks + self.real_benchmarks)

    @cached_property
    def shards(self) -> int:
        return int(self.config["eval"]["shards"])

    @property
    def sample_per_model(self) -> bool:
        """One sampling job per model (and shard) over every benchmark, not one per benchmark."""
        return self.config["eval"]["sample_jobs"] == "per_model"

    @cached_property
    def sft_source(self) -> str | None:
        return self.config["data"]["sft"]["name"] if self.hub_data else None

    @cached_property
    def rl_sources(self) -> list[str]:
        return [entry["name"] for entry in self.config["data"]["rl"]] if self.hub_data else []

    @cached_property
    def evaluated_models(self) -> list[tuple[str, str]]:
        """(stage, run) of every evaluated model: the base, each SFT recipe, each GRPO run, each candidate."""
        return ([("base", "base")] + [("sft", r) for r in self.recipes] + [("rl", r) for r in self.rl_runs]
                + [("candidate", c) for c in self.candidates])

    def path(self, *parts: str) -> str:
        """A path under this study's results folder, as rules name it."""
        return "/".join([RESULTS, self.name, *parts])

    def final_outputs(self) -> list[str]:
        """What `all` asks of this study: its tables and figures (and, through them, every model and evaluation)."""
        fmt = self.config["plots"]["format"]
        return [
            self.path("tables", "tidy.csv"),
            self.path("tables", "predictors.csv"),
            self.path("tables", "findings.md"),
            self.path("tables", "ranking.md"),
            self.path("tables", "predictor_cost.md"),
            self.path("tables", "loss_along_sft.csv"),
            self.path("figures", f"loss_along_sft.{fmt}"),
            *[self.path("figures", f"{name}.{fmt}") for name in self.config["plots"]["figures"]],
        ]


@dataclass(frozen=True)
class Run:
    """Everything one invocation builds: its studies and, for a paper config, the paper-level outputs."""

    studies: dict[str, Study]
    paper: str | None = None
    plots: dict[str, Any] = field(default_factory=dict)

    def paper_outputs(self) -> list[str]:
        """The cross-study tables and figure of a paper config (none for a single study)."""
        if self.paper is None:
            return []
        fmt = self.plots["format"]
        return [
            f"{RESULTS}/{self.paper}/tables/paper_predictors.csv",
            f"{RESULTS}/{self.paper}/tables/paper_tables.md",
            f"{RESULTS}/{self.paper}/tables/paper_ranking.md",
            f"{RESULTS}/{self.paper}/figures/model_comparison.{fmt}",
        ]

    def final_outputs(self) -> list[str]:
        return [path for study in self.studies.values() for path in study.final_outputs()] + self.paper_outputs()

    def where(self, predicate: Any) -> list[str]:
        """Names of the studies for which `predicate(study)` holds (e.g. which ones draw the embedded world)."""
        return [name for name, study in self.studies.items() if predicate(study)]


def load_run(
    config: Mapping[str, Any],
    *,
    source: str = "config",
    search: Sequence[str | Path] = (),
    files: Sequence[str | Path] = (),
) -> Run:
    """Validate a study config or a paper config (one with `studies:`) into a `Run`.

    Study files named by a paper config are looked up relative to the working directory first, then in each of
    `search` (the repository, so `config/paper.yaml` works from any working directory). `files` are the config
    files `config` was read from by another loader (Snakemake's): each is read again for a key given twice,
    which that loader keeps silently. Every study's local input files must exist (a run starts from them).
    """
    for path in files:
        check_repeated_keys(path)
    schema = load_schema()
    if "studies" not in config:
        study = validate_config(config, schema, source)
        _check_inputs(study, source)
        return Run(studies={study["study"]: Study(study["study"], study)})
    paper = filled(config, paper_schema(schema), source)
    studies: dict[str, Study] = {}
    for index, item in enumerate(paper["studies"]):
        where = f"{source} studies[{index}]"
        resolved = _study_config(item, where, search, schema)
        _check_inputs(resolved, where)
        name = resolved["study"]
        if name in studies:
            raise QuagmireError(f"config error in {source}: study name {name!r} appears twice in `studies`")
        studies[name] = Study(name, resolved)
    if paper["paper"] in studies:
        raise QuagmireError(
            f"config error in {source}: paper name {paper['paper']!r} is also a study's name (both would write "
            f"results/{paper['paper']}/); rename one"
        )
    run = Run(studies=studies, paper=paper["paper"], plots=paper["plots"])
    _check_benchmark_kinds(run, source)
    return run


def _check_inputs(config: Mapping[str, Any], source: str) -> None:
    """What a run needs of a validated study beyond its schema and cross-key rules: every data set entry resolves
    to a spec, and every local input exists. Here, not in `quagmire.config`, because resolving a spec needs the
    data registries, and every job imports the config module (its imports count for each job's env)."""
    problem = _data_specs(config)
    if problem:
        raise QuagmireError(f"config error in {source}: {problem}")
    check_local_files(config, source)


def _data_specs(config: Mapping[str, Any]) -> str | None:
    """Every `eval.benchmarks` entry (and, for hub data, `data.sft` / `data.rl` entry) resolves to a spec now,
    not in its job: an unknown registry name, an RL set listed as SFT data or a missing field mapping is named
    before anything runs. Two entries that resolve to the same data set would evaluate it twice."""
    from quagmire.data.benchmarks import spec_from_config

    seen: dict[Any, str] = {}
    for name, entry in sorted(config["eval"]["benchmarks"].items()):
        try:
            spec = spec_from_config(name, entry)
        except QuagmireError as error:
            return str(error)
        same = dataclasses.replace(spec, name="")
        if same in seen:
            return (f"eval.benchmarks.{name}: the same benchmark as eval.benchmarks.{seen[same]} (same registry "
                    "entry, source and fields); list it once")
        seen[same] = name
    if config["data"]["source"] == "hub" and "sft" in config["data"]:
        from quagmire.data.sources import KIND_RL, KIND_SFT, source_from_config

        entries = [("data.sft", KIND_SFT, config["data"]["sft"])]
        entries += [(f"data.rl[{i}]", KIND_RL, entry) for i, entry in enumerate(config["data"]["rl"])]
        for where, kind, entry in entries:
            try:
                source_from_config(entry, kind, where)
            except QuagmireError as error:
                return str(error)
    for name, candidate in sorted(config["candidates"].items()):
        if isinstance(candidate["heldout"], Mapping):  # a held-out set is SFT data: it needs prompts and responses
            from quagmire.data.sources import KIND_SFT, source_from_config

            try:
                source_from_config(candidate["heldout"], KIND_SFT, f"candidates.{name}.heldout")
            except QuagmireError as error:
                return str(error)
    return None



def _find(path: str, search: Sequence[str | Path]) -> Path:
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    for folder in search:
        if (Path(folder) / path).exists():
            return Path(folder) / path
    return candidate  # read_yaml_mapping names it as not found


def _study_config(item: Any, where: str, search: Sequence[str | Path], schema: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of `studies`: a study file, or an inline study (optionally `extends` a file), validated."""
    if isinstance(item, str):
        path = _find(item, search)
        return validate_config(read_yaml_mapping(path), schema, str(path))
    inline = dict(item)
    base = inline.pop("extends", None)
    if base is not None:
        if not isinstance(base, str):
            raise QuagmireError(f"config error in {where}: `extends` must be a study config file's path")
        inline = deep_merge(read_yaml_mapping(_find(base, search)), inline)
        where = f"{where} (extends {base})"
    return validate_config(inline, schema, where)


def _check_benchmark_kinds(run: Run, source: str) -> None:
    """One benchmark name means one kind of file in every study: the world's or a registry benchmark's.

    Both kinds are written to data/benchmarks/<name>.parquet by different rules, chosen by the name.
    """
    world = {b: s.name for s in run.studies.values() for b in s.world_benchmarks}
    for study in run.studies.values():
        for name in study.real_benchmarks:
            if name in world:
                raise QuagmireError(
                    f"config error in {source}: benchmark name {name!r} is a world benchmark in study "
                    f"{world[name]!r} and a registry benchmark (eval.benchmarks) in study {study.name!r}; rename one"
                )


def check_config(config: str | Path) -> Run:
    """Validate a study or paper config file and print what it holds and which hub inputs still need a pinned
    revision (a dry run does not read them): `quagmire check-config`, for a user before a run."""
    run = load_run(read_yaml_mapping(config), source=str(config), search=[REPO])
    if run.paper is not None:
        print(f"{config}: valid paper config '{run.paper}' ({len(run.studies)} studies)")
    for name, study in run.studies.items():
        runs = f"{len(study.recipes)} SFT recipes"
        runs += f", {len(study.candidates)} candidates" if study.candidates else ""
        print(f"  study '{name}': valid ({runs})" if run.paper else f"{config}: valid ({runs}, study '{name}')")
        unpinned = unpinned_hub_inputs(study.config)
        if unpinned:
            print(f"  not yet runnable: pin a hub revision (40-hex commit) or give a local path for "
                  f"{', '.join(unpinned)}")
    return run
