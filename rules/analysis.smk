rule recipes_table:
    """One row per SFT recipe (subset, N, epochs, lr, comparison levels), for tables and figures."""
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    output:
        f"{R}/tables/recipes.csv",
    params:
        settings=as_json({name: recipe_settings(config, name) for name in RECIPES}),
    log:
        f"{LOGS}/analysis/recipes.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire recipes --settings {params.settings:q} --out {output} > {log} 2>&1"


rule tidy_table:
    """Every run x stage x benchmark x metric, plus generalization losses: the one table figures read."""
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    input:
        metrics=[f"{R}/eval/{stage}/{run}/metrics.json" for stage, run in evaluated_models()],
        genloss=expand("{R}/genloss/{recipe}.json", R=R, recipe=RECIPES),
    output:
        f"{R}/tables/tidy.csv",
    params:
        evals=" ".join(f"{stage}:{run}={R}/eval/{stage}/{run}/metrics.json" for stage, run in evaluated_models()),
        genloss=" ".join(f"{recipe}={R}/genloss/{recipe}.json" for recipe in RECIPES),
    log:
        f"{LOGS}/analysis/tidy.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire table --eval {params.evals} --genloss {params.genloss} --out {output} > {log} 2>&1"


rule predictors:
    """Predictors of post-RL accuracy (post-SFT score, generalization loss, pass@large k, both): R², ρ."""
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    input:
        tidy=f"{R}/tables/tidy.csv",
        recipes=f"{R}/tables/recipes.csv",
    output:
        quality=f"{R}/tables/predictors.csv",
        values=f"{R}/tables/predictor_values.csv",
        sweep=f"{R}/tables/passk_sweep.csv",
    params:
        settings=as_json({**config["analysis"], "seed": config["seed"]}),
    log:
        f"{LOGS}/analysis/predictors.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire predictors --tidy {input.tidy} --recipes {input.recipes} --settings {params.settings:q} "
        "--values {output.values} --sweep {output.sweep} --out {output.quality} > {log} 2>&1"


rule plot:
    """One figure, drawn from the tidy table alone (a plot change never retrains a model)."""
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    input:
        tidy=f"{R}/tables/tidy.csv",
        recipes=f"{R}/tables/recipes.csv",
    output:
        f"{R}/figures/{{figure}}.{{ext}}",
    params:
        settings=as_json({k: v for k, v in config["plots"].items() if k != "figures"}),
    wildcard_constraints:
        figure="|".join(FIGURES),
        ext=r"png|pdf|svg",
    log:
        f"{LOGS}/figures/{{figure}}.{{ext}}.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire plot --figure {wildcards.figure} --tidy {input.tidy} --recipes {input.recipes} "
        "--settings {params.settings:q} --out {output} > {log} 2>&1"
