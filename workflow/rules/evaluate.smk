# Evaluation: one long Parquet table per (dataset, method, seed, J).


rule evaluate:
    message:
        "Scoring {wildcards.method} (seed {wildcards.seed}, J={wildcards.J}): BSS Eval v4 + SI-SDR"
    input:
        examples="results/data/{dataset}/examples/J{J}_test.csv",
        estimates="results/estimates/{dataset}/{method}/seed{seed}/J{J}",
    output:
        "results/metrics/{dataset}/{method}/seed{seed}/J{J}.parquet",
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/evaluate/{dataset}/{method}/seed{seed}/J{J}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{method}/seed{seed}/J{J}.tsv"
    params:
        excerpt_s=config["examples"]["excerpt_s"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "choirbench evaluate --data results/data/{wildcards.dataset} --examples {input.examples} "
        "--estimates {input.estimates} --dataset {wildcards.dataset} --method {wildcards.method} "
        "--seed {wildcards.seed} --J {wildcards.J} --excerpt-s {params.excerpt_s} --out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
