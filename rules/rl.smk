rule grpo:
    """GRPO from an SFT checkpoint (or the base model) with a binary math-verify correctness reward."""
    input:
        model=rl_parent,
        prompts=f"{R}/data/rl.parquet",
    output:
        directory(f"{R}/rl/{{run}}"),
    params:
        settings=as_json(config["rl"]),
        sharding=config["sft"]["sharding"],
    threads: config["threads"]
    log:
        f"{LOGS}/rl/{{run}}.log",
    conda:
        GRPO_ENV
    resources:
        **job_resources("rl"),
    shell:
        "quagmire grpo --model {input.model} --prompts {input.prompts} --settings {params.settings:q} "
        "--out {output} --threads {threads} --gpus {resources.gpu} --sharding {params.sharding} > {log} 2>&1"
