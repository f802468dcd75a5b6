rule recipes_table:
    """One row per SFT recipe (subset, N, epochs, lr, comparison levels), for tables and figures."""
    output:
        in_report(f"{R}/tables/recipes.csv", "recipes"),
    params:
        settings=recipes_settings,
    log:
        f"{LOGS}/analysis/recipes.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire recipes --settings {params.settings:q} --out {output} > {log} 2>&1"


rule tidy_table:
    """Every run x stage x benchmark x metric, plus generalization losses: the one table figures read."""
    input:
        metrics=metrics_files,
        genloss=genloss_files,
    output:
        in_report(f"{R}/tables/tidy.csv", "tidy"),
    params:
        evals=metrics_pairs,
        genloss=genloss_pairs,
    log:
        f"{LOGS}/analysis/tidy.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire table --eval {params.evals} --genloss {params.genloss} --out {output} > {log} 2>&1"


rule predictors:
    """Predictors of post-RL accuracy (post-SFT score, generalization loss, pass@large k, both): R², ρ."""
    input:
        tidy=f"{R}/tables/tidy.csv",
        recipes=f"{R}/tables/recipes.csv",
    output:
        quality=in_report(f"{R}/tables/predictors.csv", "predictors"),
        values=in_report(f"{R}/tables/predictor_values.csv", "predictor_values"),
        sweep=in_report(f"{R}/tables/passk_sweep.csv", "passk_sweep_table"),
    params:
        settings=predictor_settings,
    log:
        f"{LOGS}/analysis/predictors.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire predictors --tidy {input.tidy} --recipes {input.recipes} --settings {params.settings:q} "
        "--values {output.values} --sweep {output.sweep} --out {output.quality} > {log} 2>&1"


rule predictor_cost:
    """What each predictor costs (samples, SFT checkpoints, RL steps) beside its held-out-half R² and ρ."""
    input:
        tidy=f"{R}/tables/tidy.csv",
        recipes=f"{R}/tables/recipes.csv",
        grades=sft_grade_files,
        rl=recipe_rl_dirs,
        along=f"{R}/tables/loss_along_sft.csv",
    output:
        csv=f"{R}/tables/predictor_cost.csv",
        md=in_report(f"{R}/tables/predictor_cost.md", "predictor_cost"),
    params:
        grades=sft_grade_pairs,
        rl=recipe_rl_pairs,
        settings=predictor_cost_settings,
    log:
        f"{LOGS}/analysis/predictor_cost.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire predictor-cost --tidy {input.tidy} --recipes {input.recipes} --grades {params.grades} "
        "--rl {params.rl} --loss-along-sft {input.along} --settings {params.settings:q} --out {output.csv} "
        "--out-md {output.md} > {log} 2>&1"


rule findings:
    """The paper's claims (a)-(e), each checked against this study's tables: reproduced, not reproduced or not
    applicable, with the numbers it rests on."""
    input:
        tidy=f"{R}/tables/tidy.csv",
        recipes=f"{R}/tables/recipes.csv",
        predictors=f"{R}/tables/predictors.csv",
    output:
        md=in_report(f"{R}/tables/findings.md", "findings"),
        json=f"{R}/tables/findings.json",
    log:
        f"{LOGS}/analysis/findings.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire findings --tidy {input.tidy} --recipes {input.recipes} --predictors {input.predictors} "
        "--out-md {output.md} --out-json {output.json} > {log} 2>&1"


rule rank:
    """SFT candidates ranked before RL: the generalization-loss filter, the ranking by pass@large k, a predicted
    post-RL score with its interval, and the ranking's quality by leave-one-out over the runs with RL results."""
    input:
        tidy=f"{R}/tables/tidy.csv",
        recipes=f"{R}/tables/recipes.csv",
        calibration=calibration_input,  # analysis.rank.calibration_csv (read through the settings), if given
        along=f"{R}/tables/loss_along_sft.csv",
    output:
        csv=f"{R}/tables/ranking.csv",
        md=in_report(f"{R}/tables/ranking.md", "ranking"),
        json=f"{R}/tables/ranking_quality.json",
        figure=in_report(f"{R}/figures/ranking.png", "ranking_figure"),
    params:
        settings=lambda w: as_json({k: study_config(w)["analysis"][k] for k in ("k_large", "rank")}),
        plots=plot_settings,
    log:
        f"{LOGS}/analysis/rank.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire rank --tidy {input.tidy} --recipes {input.recipes} --settings {params.settings:q} "
        "--plot-settings {params.plots:q} --out-csv {output.csv} --out-md {output.md} --out-json {output.json} "
        "--out-figure {output.figure} --loss-steps {input.along} > {log} 2>&1"


rule plot:
    """One figure, drawn from the tidy table alone (a plot change never retrains a model)."""
    input:
        tidy=f"{R}/tables/tidy.csv",
        recipes=f"{R}/tables/recipes.csv",
    output:
        figure_in_report(f"{R}/figures/{{figure}}.{{ext}}"),
    params:
        settings=plot_settings,
    wildcard_constraints:
        figure=FIGURE_NAMES,
        ext=r"png|pdf|svg",
    log:
        f"{LOGS}/figures/{{figure}}.{{ext}}.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire plot --figure {wildcards.figure} --tidy {input.tidy} --recipes {input.recipes} "
        "--settings {params.settings:q} --out {output} > {log} 2>&1"
