rule genloss:
    """Generalization loss: SFT loss of the saved post-SFT checkpoint on the held-out split (a candidate's: on the
    held-out set it names)."""
    input:
        model=genloss_model,
        heldout=genloss_heldout,
    output:
        in_report(f"{R}/genloss/{{recipe}}.json", "genloss"),
    params:
        max_length=setting("genloss", "max_length"),
        batch_size=setting("genloss", "batch_size"),
    threads: setting("threads")
    log:
        f"{LOGS}/genloss/{{recipe}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("genloss"),
    shell:
        "quagmire genloss --model {input.model} --heldout {input.heldout} --max-length {params.max_length} "
        "--batch-size {params.batch_size} --out {output} --threads {threads} > {log} 2>&1"
