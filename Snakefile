"""quagmire: SFT -> GRPO post-training study as one DAG (see README.md and ../DESIGN in the docs).

    snakemake --cores 2 all                          # the embedded study on a laptop CPU
    snakemake --cores 2 all --configfile config/smoke.yaml
    snakemake --cores 2 results/embedded/figures/predictor_scatter.png   # one figure
"""

from snakemake.utils import min_version

min_version("9.0")


# The embedded study unless --configfile names another study (a study file is complete on its own: it is not
# merged over the embedded one, so its recipe grid is exactly the one it lists).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/sft.smk"
include: "rules/rl.smk"
include: "rules/eval.smk"
include: "rules/genloss.smk"
include: "rules/analysis.smk"


rule all:
    """Every table and figure of the study (and, through them, every model and evaluation)."""
    input:
        final_outputs(),
    default_target: True
