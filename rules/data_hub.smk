# Paper-scale data (data.source: hub): training sets read from pinned hub revisions or local files, filtered with a
# row-level audit, then the held-out split. Same downstream files as the embedded world: data/{sft,heldout,rl}.parquet.


rule source:
    """One training dataset in the shared schema, with its manifest (origin and revision or sha256, rows dropped)."""
    input:
        source_input,
    output:
        data=f"{R}/data/raw/{{kind}}-{{name}}.parquet",
        manifest=in_report(f"{R}/data/raw/{{kind}}-{{name}}.parquet.manifest.json", "source_manifest"),
    wildcard_constraints:
        study=HUB_DATA_STUDIES,
        kind="sft|rl",
    params:
        settings=source_settings,
        where=source_where,
    log:
        f"{LOGS}/data/source-{{kind}}-{{name}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("data"),
    shell:
        "quagmire source --kind {wildcards.kind} --settings {params.settings:q} --where {params.where:q} "
        "--out {output.data} > {log} 2>&1"


rule filter_sft:
    """Dedup, gold parses, decontamination against every benchmark, response length; audited row by row."""
    input:
        raw=sft_raw_file,
        benchmarks=benchmark_files,
        tokenizer=f"{R}/models/tokenizer",
    output:
        data=f"{R}/data/clean/sft.parquet",
        audit=f"{R}/data/clean/sft.audit.parquet",
        manifest=in_report(f"{R}/data/clean/sft.manifest.json", "filter_manifest"),
    wildcard_constraints:
        study=HUB_DATA_STUDIES,
    params:
        settings=filter_settings,
        benchmarks=benchmark_pairs("benchmarks"),
    threads: setting("data", "filters", "gold_workers")
    log:
        f"{LOGS}/data/filter-sft.log",
    conda:
        "../envs/grade.yaml"
    resources:
        **job_resources("data"),
    shell:
        "quagmire filter --raw {input.raw} --benchmarks {params.benchmarks} --tokenizer {input.tokenizer} "
        "--settings {params.settings:q} --workers {threads} --out {output.data} --audit {output.audit} "
        "--manifest {output.manifest} > {log} 2>&1"


rule split_heldout:
    """The held-out split for generalization loss, disjoint (by id and normalized prompt) from the SFT pool."""
    input:
        f"{R}/data/clean/sft.parquet",
    output:
        pool=f"{R}/data/sft.parquet",
        heldout=f"{R}/data/heldout.parquet",
    wildcard_constraints:
        study=HUB_DATA_STUDIES,
    params:
        size=setting("data", "heldout_size"),
        seed=setting("seed"),
    log:
        f"{LOGS}/data/split.log",
    conda:
        "../envs/train.yaml"
    resources:
        **job_resources("data"),
    shell:
        "quagmire split --data {input} --size {params.size} --seed {params.seed} --pool-out {output.pool} "
        "--heldout-out {output.heldout} > {log} 2>&1"


rule filter_rl:
    """The RL prompt sets, concatenated, deduplicated, gold-checked and decontaminated; audited row by row."""
    input:
        raw=rl_raw_files,
        benchmarks=benchmark_files,
        tokenizer=f"{R}/models/tokenizer",
    output:
        data=f"{R}/data/rl.parquet",
        audit=f"{R}/data/clean/rl.audit.parquet",
        manifest=in_report(f"{R}/data/clean/rl.manifest.json", "filter_manifest"),
    wildcard_constraints:
        study=HUB_DATA_STUDIES,
    params:
        settings=filter_settings,
        benchmarks=benchmark_pairs("benchmarks"),
    threads: setting("data", "filters", "gold_workers")
    log:
        f"{LOGS}/data/filter-rl.log",
    conda:
        "../envs/grade.yaml"
    resources:
        **job_resources("data"),
    shell:
        "quagmire filter --raw {input.raw} --benchmarks {params.benchmarks} --tokenizer {input.tokenizer} "
        "--settings {params.settings:q} --workers {threads} --out {output.data} --audit {output.audit} "
        "--manifest {output.manifest} > {log} 2>&1"
