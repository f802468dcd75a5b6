# Paper level (a paper config only): outputs that span the studies, read from each study's predictor table.
# Fits are made once, per study (rule predictors); these rules only lay them side by side.


rule paper_tables:
    """The paper's predictor tables (Tables 1-4): a row per model, dataset and instance level, R² and Spearman."""
    input:
        predictors=paper_study_files("predictors.csv"),
    output:
        csv=in_report("results/{paper}/tables/paper_predictors.csv", "paper_predictors", subcategory="{paper}"),
        md=in_report("results/{paper}/tables/paper_tables.md", "paper_tables", subcategory="{paper}"),
    params:
        studies=paper_study_pairs,
        labels=paper_labels,
    log:
        "logs/{paper}/paper/tables.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **paper_resources(),
    shell:
        "quagmire paper-tables --study {params.studies} --label {params.labels} --out-csv {output.csv} "
        "--out-md {output.md} > {log} 2>&1"


rule paper_figure:
    """The models side by side: how well each predictor tracks post-RL accuracy in each study."""
    input:
        predictors=paper_study_files("predictors.csv"),
    output:
        in_report("results/{paper}/figures/model_comparison.{ext}", "model_comparison", subcategory="{paper}"),
    params:
        studies=paper_study_pairs,
        labels=paper_labels,
        settings=paper_plot_settings,
    wildcard_constraints:
        ext=r"png|pdf|svg",
    log:
        "logs/{paper}/paper/model_comparison.{ext}.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **paper_resources(),
    shell:
        "quagmire paper-figure --study {params.studies} --label {params.labels} --settings {params.settings:q} "
        "--out {output} > {log} 2>&1"


rule paper_ranking:
    """The ranking's leave-one-out quality of every study side by side, and pooled (fits stay per study)."""
    input:
        quality=paper_study_files("ranking_quality.json"),
    output:
        md=in_report("results/{paper}/tables/paper_ranking.md", "paper_ranking", subcategory="{paper}"),
        json="results/{paper}/tables/paper_ranking.json",
    params:
        studies=paper_quality_pairs,
        labels=paper_labels,
    log:
        "logs/{paper}/paper/ranking.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/analysis.yaml"
    resources:
        **paper_resources(),
    shell:
        "quagmire paper-ranking --study {params.studies} --label {params.labels} --out-md {output.md} "
        "--out-json {output.json} > {log} 2>&1"
