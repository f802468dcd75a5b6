# SFT candidates the study did not train (`candidates:`): each checkpoint brought in once (a local folder hard-linked,
# or a pinned hub snapshot), checked and hashed like a hub base model; each candidate's own held-out set read like an
# SFT source. From there they go through the same rules as a recipe: sampling, grading and scoring at stage
# `candidate` (rules/eval.smk), generalization loss (rules/genloss.smk), the tidy table and the ranking.


rule candidate_model:
    """An SFT candidate's checkpoint (local folder or pinned hub snapshot), checked, with its lineage."""
    output:
        directory(f"{R}/candidates/{{candidate}}"),
    wildcard_constraints:
        candidate=CANDIDATE_NAMES,
    params:
        settings=candidate_settings,
    log:
        f"{LOGS}/candidates/{{candidate}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("data"),  # a copy or a download and checks: no GPU
    shell:
        "quagmire candidate-model --name {wildcards.candidate} --settings {params.settings:q} --out {output} "
        "> {log} 2>&1"


rule heldout_set:
    """A candidate's own held-out set (local JSONL/Parquet or pinned hub dataset) in the SFT data schema."""
    input:
        heldout_set_input,
    output:
        data=f"{R}/data/heldout_sets/{{heldout_set}}.parquet",
        manifest=f"{R}/data/heldout_sets/{{heldout_set}}.parquet.manifest.json",
    wildcard_constraints:
        heldout_set=HELDOUT_SET_NAMES,
    params:
        settings=heldout_set_settings,
        where=heldout_set_where,
    log:
        f"{LOGS}/data/heldout_set-{{heldout_set}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("data"),
    shell:
        "quagmire source --kind sft --settings {params.settings:q} --where {params.where:q} --out {output.data} "
        "> {log} 2>&1"
