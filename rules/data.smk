if config["data"]["source"] == "world":

    rule world:
        """Draw the embedded world's pools (SFT, held-out, RL) and benchmarks, disjoint, with an audit."""
        output:
            pools=expand("{R}/data/{pool}.parquet", R=R, pool=POOLS),
            benchmarks=expand("{R}/data/benchmarks/{benchmark}.parquet", R=R, benchmark=WORLD_BENCHMARKS),
            audit=f"{R}/data/audit.json",
        params:
            settings=as_json({"world": config["world"], "seed": config["seed"]}),
            outdir=lambda w, output: os.path.dirname(output.audit),
        log:
            f"{LOGS}/data/world.log",
        conda:
            "../envs/train.yaml"
        resources:
            **job_resources("data"),
        shell:
            "quagmire world --settings {params.settings:q} --out-dir {params.outdir} > {log} 2>&1"

else:

    include: "data_hub.smk"


rule subset:
    """One SFT subset: random, shortest, longest or mix N of the pool, by response length in tokens."""
    input:
        pool=f"{R}/data/sft.parquet",
        tokenizer=f"{R}/models/tokenizer",
    output:
        f"{R}/data/subsets/{{strategy}}-{{n}}.parquet",
    params:
        seed=config["seed"],
    log:
        f"{LOGS}/data/subset-{{strategy}}-{{n}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("data"),
    shell:
        "quagmire subset --pool {input.pool} --tokenizer {input.tokenizer} --strategy {wildcards.strategy} "
        "--n {wildcards.n} --seed {params.seed} --out {output} > {log} 2>&1"


rule benchmark:
    """One real benchmark (MATH-500, AIME, ...) in the shared schema, with its manifest (source, sha256, counts)."""
    input:
        benchmark_source,
    output:
        data=f"{R}/data/benchmarks/{{benchmark}}.parquet",
        manifest=f"{R}/data/benchmarks/{{benchmark}}.parquet.manifest.json",
    wildcard_constraints:
        benchmark=one_of(REAL_BENCHMARKS),
    params:
        settings=benchmark_settings,
    log:
        f"{LOGS}/data/benchmark-{{benchmark}}.log",
    conda:
        "../envs/grade.yaml"
    resources:
        **job_resources("data"),
    shell:
        "quagmire benchmark --name {wildcards.benchmark} --settings {params.settings:q} --out {output.data} "
        "> {log} 2>&1"
