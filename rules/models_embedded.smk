# The embedded study's own tokenizer and tiny base model, built in the DAG (base_model.source: embedded).


rule tokenizer:
    """The study's tokenizer (character-level for the embedded world), saved in Hugging Face format."""
    output:
        directory(f"{R}/models/tokenizer"),
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
    params:
        settings=as_json(
            {
                "model": {k: v for k, v in config["base_model"].items() if k not in ("source", "pretrain")},
                "pretrain": config["base_model"]["pretrain"],
                "seed": config["seed"],
            }
        ),
    threads: config["threads"]
    log:
        f"{LOGS}/models/pretrain.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("train"),
    shell:
        "quagmire pretrain --tokenizer {input.tokenizer} --settings {params.settings:q} --out {output} "
        "--threads {threads} > {log} 2>&1"
