"""Where each output of a study sits in `snakemake --report report.html`: its category, caption file and label.

The rules only wrap their outputs in Snakemake's `report()` flag (`in_report` in rules/common.smk) and look the
rest up here, so the report's layout is data that one test can hold against the figures the plots module
draws and the caption files in `report/`. A flag never changes a job: which jobs run, and every output's path
and bytes, are the same with or without it.

Categories follow a reader through the study: the data, the training runs, their evaluation, the predictors of
the post-RL score, and the paper's findings (the figures the paper argues from, and a paper config's tables
across models). They are numbered because the report lists categories alphabetically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DATA = "1. Data"
TRAINING = "2. Training"
EVALUATION = "3. Evaluation"
PREDICTORS = "4. Predictors"
PAPER_FINDINGS = "5. Paper findings"
CATEGORIES = (DATA, TRAINING, EVALUATION, PREDICTORS, PAPER_FINDINGS)

FIGURE_CAPTION = "figures.rst"  # one caption file for the `plot` rule, a section per figure (by wildcard)


@dataclass(frozen=True)
class ReportOutput:
    """One kind of output in the report: its caption file (under report/), category and a short 'shows' label."""

    caption: str
    category: str
    shows: str


OUTPUTS: dict[str, ReportOutput] = {
    "audit": ReportOutput("data/audit.rst", DATA, "pool sizes and their disjointness"),
    "source_manifest": ReportOutput("data/source_manifest.rst", DATA, "a hub source: origin, revision, drops"),
    "filter_manifest": ReportOutput("data/filter_manifest.rst", DATA, "filter steps: rows kept and dropped"),
    "benchmark_manifest": ReportOutput("data/benchmark_manifest.rst", DATA, "a benchmark: source and counts"),
    "recipes": ReportOutput("training/recipes.rst", TRAINING, "the SFT recipe grid"),
    "sft_stats": ReportOutput("training/sft_stats.rst", TRAINING, "one SFT run: steps and losses"),
    "grpo_stats": ReportOutput("training/grpo_stats.rst", TRAINING, "one GRPO run: steps and rewards"),
    "genloss": ReportOutput("training/genloss.rst", TRAINING, "held-out loss of one SFT checkpoint"),
    "loss_along_sft": ReportOutput("training/loss_along_sft.rst", TRAINING, "held-out loss and accuracy per SFT step"),
    "loss_along_sft_figure": ReportOutput("training/loss_along_sft_figure.rst", TRAINING,
                                          "loss and accuracy against SFT steps"),
    "grading_report": ReportOutput("evaluation/grading_report.rst", EVALUATION, "why one model scores what it does"),
    "tidy": ReportOutput("evaluation/tidy.rst", EVALUATION, "every score of every model"),
    "predictors": ReportOutput("predictors/predictors.rst", PREDICTORS, "how well each predictor predicts"),
    "predictor_values": ReportOutput("predictors/predictor_values.rst", PREDICTORS, "each run's predictor values"),
    "passk_sweep_table": ReportOutput("predictors/passk_sweep.rst", PREDICTORS, "rank correlation as k grows"),
    "ranking": ReportOutput("predictors/ranking.rst", PREDICTORS, "SFT candidates ranked before RL"),
    "ranking_figure": ReportOutput("predictors/ranking_figure.rst", PREDICTORS, "predicted post-RL, leave-one-out"),
    "predictor_cost": ReportOutput("predictors/predictor_cost.rst", PREDICTORS, "what each predictor costs"),
    "findings": ReportOutput("paper/findings.rst", PAPER_FINDINGS, "the paper's claims, checked"),
    "paper_predictors": ReportOutput("paper/paper_predictors.rst", PAPER_FINDINGS, "predictors across models"),
    "paper_tables": ReportOutput("paper/paper_tables.rst", PAPER_FINDINGS, "the paper's Tables 1-4"),
    "model_comparison": ReportOutput("paper/model_comparison.rst", PAPER_FINDINGS, "predictors, model by model"),
    "paper_ranking": ReportOutput("paper/paper_ranking.rst", PAPER_FINDINGS, "the ranking's quality, study by study"),
}

# Every figure of quagmire.analysis.plots.FIGURES: (category, what it shows). Its caption is the section of
# report/figures.rst for its name.
FIGURES: dict[str, tuple[str, str]] = {
    "predictor_scatter": (PREDICTORS, "post-RL score against each predictor"),
    "passk_sweep": (PREDICTORS, "rank correlation of pass@k with post-RL, by k"),
    "passk_curves": (EVALUATION, "pass@k against k, per stage"),
    "sft_vs_rl_by_epochs": (PAPER_FINDINGS, "post-SFT and post-RL scores by SFT epochs"),
    "subset_bars": (PAPER_FINDINGS, "post-SFT and post-RL scores by SFT subset"),
    "genloss_teaser": (PAPER_FINDINGS, "held-out loss and the RL outcome by epochs"),
}


def labels(output: str, file: str) -> dict[str, str]:
    """The labels of one output in the report's result tables: its file (under the study's folder) and what it
    shows. `file` may hold wildcards; Snakemake fills them in per job."""
    return {"file": file, "shows": OUTPUTS[output].shows}


def figure_category(wildcards: Any) -> str:
    """The category of a `plot` job's figure, by its {figure} wildcard."""
    return FIGURES[wildcards.figure][0]


def figure_labels(wildcards: Any) -> dict[str, str]:
    """The labels of a `plot` job's figure, by its {figure} and {ext} wildcards."""
    return {"file": f"figures/{wildcards.figure}.{wildcards.ext}", "shows": FIGURES[wildcards.figure][1]}
