# Data preparation: convert or generate a dataset, then write the fixed excerpt lists.


rule prepare_dataset:
    priority: 100
    message:
        "Preparing dataset {wildcards.dataset}"
    input:
        params="results/config/{dataset}/dataset.json",
        sources=lambda w: source_manifests(w.dataset),
    output:
        manifest="results/data/{dataset}/manifest.csv",
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/prepare/{dataset}.tsv"
    log:
        "results/logs/prepare/{dataset}.log",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "choirbench prepare --dataset {wildcards.dataset} --params {input.params} "
        "--out results/data/{wildcards.dataset} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule excerpt_list:
    priority: 100
    message:
        "Writing the {wildcards.split} excerpt list for J={wildcards.J} ({wildcards.dataset})"
    input:
        manifest="results/data/{dataset}/manifest.csv",
        params="results/config/{dataset}/examples.json",
    output:
        "results/data/{dataset}/examples/J{J}_{split}.csv",
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/examples/{dataset}/J{J}_{split}.tsv"
    log:
        "results/logs/examples/{dataset}/J{J}_{split}.log",
    params:
        seed=config["examples"]["seed"],
        excerpt_s=config["examples"]["excerpt_s"],
        keep_first="" if config["examples"]["skip_first"] else "--keep-first",
        singer=singer_option(),
        min_voiced=config["examples"]["min_voiced"],
        max_examples=lambda w: config["examples"]["max_examples"][w.split],
    shell:
        "choirbench examples --data results/data/{wildcards.dataset} --J {wildcards.J} "
        "--split {wildcards.split} --seed {params.seed} --excerpt-s {params.excerpt_s} {params.keep_first} "
        "{params.singer} --min-voiced {params.min_voiced} --max-examples {params.max_examples} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule derive_f0:
    priority: 100
    message:
        "Deriving the {wildcards.source} F0 of {wildcards.dataset} (cached per file)"
    input:
        manifest="results/data/{dataset}/manifest.csv",
    output:
        "results/data/{dataset}/f0_{source}/.complete",
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/f0/{dataset}_{source}.tsv"
    log:
        "results/logs/f0/{dataset}_{source}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    shell:
        "choirbench f0 --data results/data/{wildcards.dataset} --source {wildcards.source} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
