rule sft:
    """Fine-tune the base model on one recipe's subset (TRL SFTTrainer, completion-only loss), keeping
    sft.snapshots weight-only snapshots along the way."""
    input:
        base=f"{R}/models/base",
        data=subset_file,
    output:
        model=in_report(directory(f"{R}/sft/{{recipe}}"), "sft_stats", patterns=["train_{record}.json"]),
        snapshots=directory(f"{R}/sft/{{recipe}}.snapshots"),  # beside the model: GRPO and evals never read it
    params:
        settings=sft_settings,
        sharding=setting("sft", "sharding"),
    threads: setting("threads")
    log:
        f"{LOGS}/sft/{{recipe}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("train", save_steps=sft_save("save_steps"), save_total_limit=sft_save("save_total_limit")),
    shell:
        "quagmire sft --base {input.base} --data {input.data} --settings {params.settings:q} "
        "--save-steps {resources.save_steps} --save-total-limit {resources.save_total_limit} "
        "--out {output.model} --snapshots {output.snapshots} --threads {threads} --gpus {resources.gpu} --sharding {params.sharding} > {log} 2>&1"
