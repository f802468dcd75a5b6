rule sft:
    """Fine-tune the base model on one recipe's subset (TRL SFTTrainer, completion-only loss)."""
    input:
        base=f"{R}/models/base",
        data=subset_file,
    output:
        directory(f"{R}/sft/{{recipe}}"),
    params:
        settings=sft_settings,
        sharding=config["sft"]["sharding"],
    threads: config["threads"]
    log:
        f"{LOGS}/sft/{{recipe}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("train"),
    shell:
        "quagmire sft --base {input.base} --data {input.data} --settings {params.settings:q} "
        "--out {output} --threads {threads} --gpus {resources.gpu} --sharding {params.sharding} > {log} 2>&1"
