# Evaluation: n samples per problem, graded, scored. Sampling is always eval.shards sampling jobs, joined per
# benchmark by the grading job before it grades, for every study: with eval.shards 1 that is one shard, so the same
# rules serve every study. A sampling job covers one benchmark (`sample_shard`) or, with eval.sample_jobs:
# per_model, every benchmark of the model (`sample_model_shard`: the model is loaded once). The samples file is
# always written by the same code, and is the same for any shard count or job cut (calls are whole and each is
# seeded by its global index within its benchmark).


rule sample_shard:
    """One shard of a model's samples on one benchmark: whole backend calls, seeded by their global index."""
    input:
        model=model_dir,
        benchmark=f"{R}/data/benchmarks/{{benchmark}}.parquet",
    output:
        f"{R}/eval/{{stage}}/{{run}}/shards/{{benchmark}}.{{shard}}-of-{{shards}}.samples.parquet",
    wildcard_constraints:
        shard=r"\d+",
        shards=r"\d+",
    params:
        settings=sampling_settings,
    threads: setting("threads")
    log:
        f"{LOGS}/eval/{{stage}}/{{run}}/{{benchmark}}.{{shard}}-of-{{shards}}.sample.log",
    conda:
        SAMPLE_ENV
    resources:
        **job_resources("sample"),
    shell:
        "quagmire sample --model {input.model} --benchmark {input.benchmark} --settings {params.settings:q} "
        "--shard {wildcards.shard} --shards {wildcards.shards} --out {output} --threads {threads} > {log} 2>&1"


rule sample_model_shard:
    """One shard of a model's samples on every benchmark of the study, the model loaded once (eval.sample_jobs:
    per_model); the `grade` job splits it by benchmark."""
    input:
        model=model_dir,
        benchmarks=benchmark_files,
    output:
        f"{R}/eval/{{stage}}/{{run}}/model_shards/{{shard}}-of-{{shards}}.samples.parquet",
    wildcard_constraints:
        shard=r"\d+",
        shards=r"\d+",
    params:
        settings=sampling_settings,
        benchmarks=benchmark_pairs("benchmarks"),
    threads: setting("threads")
    log:
        f"{LOGS}/eval/{{stage}}/{{run}}/model.{{shard}}-of-{{shards}}.sample.log",
    conda:
        SAMPLE_ENV
    resources:
        **job_resources("sample"),
    shell:
        "quagmire sample-model --model {input.model} --benchmarks {params.benchmarks} "
        "--settings {params.settings:q} --shard {wildcards.shard} --shards {wildcards.shards} --out {output} "
        "--threads {threads} > {log} 2>&1"


rule grade:
    """Join a model's sample shards on one benchmark (fails unless every problem has n samples), then grade every
    sample with math-verify (gold first), hard timeout per item in worker processes. One job for both: the join
    alone was a process start per (model, benchmark), and only grading reads the samples file."""
    input:
        shards=shard_files,
        benchmark=f"{R}/data/benchmarks/{{benchmark}}.parquet",
    output:
        samples=f"{R}/eval/{{stage}}/{{run}}/{{benchmark}}.samples.parquet",
        grades=f"{R}/eval/{{stage}}/{{run}}/{{benchmark}}.grades.parquet",
    params:
        timeout=setting("eval", "grading_timeout_s"),
    threads: setting("eval", "grading_workers")
    log:
        f"{LOGS}/eval/{{stage}}/{{run}}/{{benchmark}}.grade.log",
    conda:
        "../envs/grade.yaml"
    resources:
        **job_resources("grade"),
    shell:
        "quagmire grade --shards {input.shards} --benchmark {input.benchmark} --samples {output.samples} "
        "--out {output.grades} --timeout {params.timeout} --workers {threads} > {log} 2>&1"


rule score:
    """avg@n, pass@k (k = 1, 2, 4, ..., n), maj@n and status counts per benchmark, plus the macro average; beside
    them the grading report (statuses, shares without a box, with several boxes, truncated; .json and .md)."""
    input:
        grades=grade_files,
    output:
        metrics=f"{R}/eval/{{stage}}/{{run}}/metrics.json",
        report=f"{R}/eval/{{stage}}/{{run}}/grading_report.json",
        report_md=in_report(f"{R}/eval/{{stage}}/{{run}}/grading_report.md", "grading_report"),
    params:
        grades=benchmark_pairs("grades"),
        extra_ks=per_study(lambda c: " ".join(str(k) for k in c["eval"]["extra_ks"])),
        bootstrap=setting("eval", "bootstrap"),
    log:
        f"{LOGS}/eval/{{stage}}/{{run}}/score.log",
    localrule: True  # cheap: runs on the submitting host, not as a cluster job
    conda:
        "../envs/grade.yaml"
    resources:
        **job_resources("analysis"),
    shell:
        "quagmire score --grades {params.grades} --extra-ks {params.extra_ks} --bootstrap {params.bootstrap} "
        "--out {output.metrics} --report {output.report} > {log} 2>&1"
