# Data of a study: the embedded world's pools and benchmarks (data.source: world), or hub training data with
# audited filters and a held-out split (data.source: hub, rules/data_hub.smk); then SFT subsets and the registry
# benchmarks. Both sources write the same files: data/{sft,heldout,rl}.parquet and data/benchmarks/<name>.parquet.


rule world:
    """Draw the embedded world's pools (SFT, held-out, RL) and benchmarks, disjoint, with an audit."""
    output:
        pools=expand("{R}/data/{pool}.parquet", R=R, pool=POOLS),
        benchmarks=f"{R}/data/world_benchmarks.parquet",
        audit=in_report(f"{R}/data/audit.json", "audit"),
    wildcard_constraints:
        study=WORLD_STUDIES,
    params:
        settings=world_settings,
        outdir=lambda w, output: os.path.dirname(output.audit),
    log:
        f"{LOGS}/data/world.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("data"),
    shell:
        "quagmire world --settings {params.settings:q} --out-dir {params.outdir} > {log} 2>&1"


rule world_benchmark:
    """One benchmark of the embedded world, from the file its `world` job drew them all into."""
    input:
        f"{R}/data/world_benchmarks.parquet",
    output:
        f"{R}/data/benchmarks/{{benchmark}}.parquet",
    wildcard_constraints:
        study=WORLD_STUDIES,
        benchmark=WORLD_BENCHMARK_NAMES,
    log:
        f"{LOGS}/data/world_benchmark-{{benchmark}}.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/grade.yaml"
    resources:
        **job_resources("data"),
    shell:
        "quagmire world-benchmark --world {input} --name {wildcards.benchmark} --out {output} > {log} 2>&1"


rule subset:
    """One SFT subset: random, shortest, longest or mix N of the pool, by response length in tokens."""
    input:
        pool=f"{R}/data/sft.parquet",
        tokenizer=f"{R}/models/tokenizer",
    output:
        f"{R}/data/subsets/{{strategy}}-{{n}}.parquet",
    params:
        seed=setting("seed"),
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
        manifest=in_report(f"{R}/data/benchmarks/{{benchmark}}.parquet.manifest.json", "benchmark_manifest"),
    wildcard_constraints:
        benchmark=REAL_BENCHMARK_NAMES,
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
