# Generalization loss: the SFT loss of a post-SFT checkpoint on its held-out set. A recipe's is written by its
# loss_along_sft job (its last snapshot is the published checkpoint, measured there anyway with the same settings);
# a candidate's, which has no snapshots, by the genloss rule.


rule genloss:
    """Generalization loss of an SFT candidate: its SFT loss on the held-out set it names."""
    input:
        model=genloss_model,
        heldout=genloss_heldout,
    output:
        in_report(f"{R}/genloss/{{recipe}}.json", "genloss"),
    wildcard_constraints:
        recipe=CANDIDATE_NAMES,
    params:
        max_length=setting("genloss", "max_length"),
        batch_size=setting("genloss", "batch_size"),
    threads: setting("threads")
    log:
        f"{LOGS}/genloss/{{recipe}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("genloss"),
    shell:
        "quagmire genloss --model {input.model} --heldout {input.heldout} --max-length {params.max_length} "
        "--batch-size {params.batch_size} --out {output} --threads {threads} > {log} 2>&1"


rule loss_along_sft:
    """Loss along SFT: held-out loss and post-SFT accuracy (along_sft.n samples) of every snapshot of one recipe;
    and the recipe's generalization loss, its last snapshot's (the published checkpoint, compared byte for byte).
    So a change of along_sft.n also rewrites genloss/<recipe>.json, with the same numbers."""
    input:
        snapshots=f"{R}/sft/{{recipe}}.snapshots",
        model=f"{R}/sft/{{recipe}}",
        heldout=f"{R}/data/heldout.parquet",
        benchmarks=along_benchmark_files,
    output:
        along=f"{R}/along_sft/{{recipe}}.csv",
        genloss=in_report(f"{R}/genloss/{{recipe}}.json", "genloss"),
    wildcard_constraints:
        recipe=RECIPE_NAMES,
    params:
        settings=along_settings,
        benchmarks=along_benchmark_pairs,
    threads: setting("threads")
    log:
        f"{LOGS}/along_sft/{{recipe}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("genloss"),
    shell:
        "quagmire loss-along-sft --run {wildcards.recipe} --snapshots {input.snapshots} --heldout {input.heldout} "
        "--benchmarks {params.benchmarks} --settings {params.settings:q} --out {output.along} --threads {threads} "
        "--model {input.model} --genloss-out {output.genloss} > {log} 2>&1"


rule loss_along_sft_table:
    """Every recipe's loss along SFT in one table (run, step, epoch, genloss, accuracy, n)."""
    input:
        along_files,
    output:
        in_report(f"{R}/tables/loss_along_sft.csv", "loss_along_sft"),
    log:
        f"{LOGS}/analysis/loss_along_sft.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire loss-along-sft-table --along {input} --out {output} > {log} 2>&1"


rule plot_loss_along_sft:
    """Held-out loss and post-SFT accuracy against SFT steps, a line per recipe (a plot setting reruns only this)."""
    input:
        along=f"{R}/tables/loss_along_sft.csv",
        recipes=f"{R}/tables/recipes.csv",
    output:
        in_report(f"{R}/figures/loss_along_sft.{{ext}}", "loss_along_sft_figure"),
    params:
        settings=plot_settings,
    wildcard_constraints:
        ext=r"png|pdf|svg",
    log:
        f"{LOGS}/figures/loss_along_sft.{{ext}}.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire plot-loss-along-sft --along {input.along} --recipes {input.recipes} --settings {params.settings:q} "
        "--out {output} > {log} 2>&1"
