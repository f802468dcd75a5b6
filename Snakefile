"""quagmire: SFT -> GRPO post-training studies as one DAG (see README.md).

    snakemake --cores 2 all                                  # the embedded study on a laptop CPU
    snakemake --cores 2 all --configfile config/smoke.yaml   # any one study
    snakemake --profile slurm all --configfile config/paper.yaml   # the whole paper: three studies, one DAG
    snakemake --cores 2 results/embedded/figures/predictor_scatter.png   # one figure
"""

from snakemake.utils import min_version

min_version("9.0")


# The embedded study unless --configfile names another study or a paper config (a config file is complete on its
# own: it is not merged over the embedded one, so its recipe grid is exactly the one it lists).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# `snakemake --report report.html`: this text on the landing page, then every output flagged with report() in the
# rules, by category, each under its caption in report/ (README, "The report").
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/data_hub.smk"
include: "rules/models.smk"
include: "rules/sft.smk"
include: "rules/rl.smk"
include: "rules/eval.smk"
include: "rules/genloss.smk"
include: "rules/candidates.smk"
include: "rules/analysis.smk"
include: "rules/paper.smk"


rule all:
    """Every table and figure of every study (and, through them, every model and evaluation), plus, for a paper
    config, the tables and figure that span its studies."""
    input:
        RUN.final_outputs(),
    default_target: True
