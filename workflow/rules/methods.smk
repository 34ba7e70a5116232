# Methods: generic training and separation rules over {method} and {seed}.


rule train:
    priority: 50
    message:
        "Training {wildcards.method} (seed {wildcards.seed}) for J={wildcards.J} on {wildcards.dataset}"
    input:
        manifest="results/data/{dataset}/manifest.csv",
        valid="results/data/{dataset}/examples/J{J}_valid.csv",  # validated on its own J
        entry="results/config/{dataset}/methods/{method}.json",
        f0=f0_input,
    output:
        model="results/models/{dataset}/{method}/seed{seed}/J{J}/model.pt",  # see model_path (common.smk)
        log_csv="results/models/{dataset}/{method}/seed{seed}/J{J}/train_log.csv",
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/train/{dataset}/{method}/seed{seed}/J{J}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{method}/seed{seed}/J{J}.tsv"
    threads: config["compute"]["train_threads"]
    resources:
        gpu=config["compute"]["gpus_per_training"],
        mem_mb=config["compute"]["train_mem_mb"],
        runtime=config["compute"]["train_runtime_min"],
    shell:
        "choirbench train --data results/data/{wildcards.dataset} --method-config {input.entry} "
        "--valid {input.valid} --seed {wildcards.seed} --J {wildcards.J} --threads {threads} "
        "--out results/models/{wildcards.dataset}/{wildcards.method}/seed{wildcards.seed}/J{wildcards.J} 2>&1 "
        # everything to the log; its progress lines (step, loss, validation loss, ETA) to the console too
        # (grep finding none is no failure; under pipefail the status is choirbench's)
        "| tee {log} | {{ grep --line-buffered ': progress ' >&2 || true; }} || (tail -n 3 {log} >&2; exit 1)"


rule separate:
    message:
        "Separating the J={wildcards.J} test excerpts with {wildcards.method} (seed {wildcards.seed})"
    input:
        examples="results/data/{dataset}/examples/J{J}_test.csv",
        entry="results/config/{dataset}/methods/{method}.json",
        checkpoint=checkpoint_input,
        f0=f0_input,
    output:
        directory("results/estimates/{dataset}/{method}/seed{seed}/J{J}"),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/separate/{dataset}/{method}/seed{seed}/J{J}.log",
    benchmark:
        "results/benchmarks/separate/{dataset}/{method}/seed{seed}/J{J}.tsv"
    params:
        checkpoint=lambda w, input: f"--checkpoint {input.checkpoint}" if input.checkpoint else "",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "choirbench separate-set --data results/data/{wildcards.dataset} --examples {input.examples} "
        "--method-config {input.entry} {params.checkpoint} --threads {threads} --out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
