# The base model of a study: a pinned hub snapshot or local copy (base_model.source: hub), or the embedded
# study's tokenizer and tiny model built and pre-trained in the DAG (base_model.source: embedded).


rule base_model:
    """The pre-trained base model (pinned hub snapshot or local copy), checked, with its tokenizer and lineage."""
    output:
        model=directory(f"{R}/models/base"),
        tokenizer=directory(f"{R}/models/tokenizer"),
    wildcard_constraints:
        study=HUB_MODEL_STUDIES,
    params:
        settings=base_model_settings,
    log:
        f"{LOGS}/models/base_model.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("data"),  # a download and checks: no GPU
    shell:
        "quagmire base-model --settings {params.settings:q} --out {output.model} "
        "--tokenizer-out {output.tokenizer} > {log} 2>&1"


rule tokenizer:
    """The study's tokenizer (character-level for the embedded world), saved in Hugging Face format."""
    output:
        directory(f"{R}/models/tokenizer"),
    wildcard_constraints:
        study=EMBEDDED_MODEL_STUDIES,
    log:
        f"{LOGS}/models/tokenizer.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("data"),
    shell:
        "quagmire tokenizer --out {output} > {log} 2>&1"


rule pretrain:
    """Build the tiny Llama-style base model in code and pre-train it (facts and direct answers only)."""
    input:
        tokenizer=f"{R}/models/tokenizer",
    output:
        directory(f"{R}/models/base"),
    wildcard_constraints:
        study=EMBEDDED_MODEL_STUDIES,
    params:
        settings=pretrain_settings,
    threads: setting("threads")
    log:
        f"{LOGS}/models/pretrain.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("train"),
    shell:
        "quagmire pretrain --tokenizer {input.tokenizer} --settings {params.settings:q} --out {output} "
        "--threads {threads} > {log} 2>&1"
