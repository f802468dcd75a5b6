rule grpo:
    """GRPO from an SFT checkpoint (or the base model) with a binary math-verify correctness reward."""
    input:
        model=rl_parent,
        prompts=f"{R}/data/rl.parquet",
    output:
        in_report(directory(f"{R}/rl/{{run}}"), "grpo_stats", patterns=["train_{record}.json"]),
    params:
        settings=grpo_settings,
        sharding=setting("sft", "sharding"),
    threads: setting("threads")
    log:
        f"{LOGS}/rl/{{run}}.log",
    conda:
        GRPO_ENV
    resources:
        **job_resources(
            "rl",
            save_steps=setting("rl", "save_steps"),
            save_total_limit=setting("rl", "save_total_limit"),
            vllm_gpu_memory=per_study(lambda c: str(c["rl"]["vllm_gpu_memory_utilization"])),
        ),
    shell:
        "quagmire grpo --model {input.model} --prompts {input.prompts} --settings {params.settings:q} "
        "--save-steps {resources.save_steps} --save-total-limit {resources.save_total_limit} "
        "--vllm-gpu-memory {resources.vllm_gpu_memory} "
        "--out {output} --threads {threads} --gpus {resources.gpu} --sharding {params.sharding} > {log} 2>&1"
