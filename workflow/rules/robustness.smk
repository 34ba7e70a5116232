# Robustness to F0 errors (the paper's finding 5): every F0-informed method entry separates the
# robustness excerpts once per corruption of the config's grid (F0 corrupted at test time only);
# tables, curves and the error size where each method stops beating the NMF baselines.
#   snakemake --cores 2 robustness


rule robustness:
    input:
        robustness_outputs(),


rule robustness_examples:
    priority: 100
    message:
        "Choosing the {wildcards.dataset} excerpts of the robustness study (J={wildcards.J})"
    input:
        "results/data/{dataset}/examples/J{J}_test.csv",
    output:
        "results/robustness/{dataset}/J{J}_test.csv",
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/robustness/{dataset}/J{J}_examples.tsv"
    log:
        "results/logs/robustness/{dataset}/J{J}_examples.log",
    params:
        max_examples=ROBUSTNESS["max_examples"],
    shell:
        "choirbench robustness-examples --examples {input} --max-examples {params.max_examples} --out {output} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


if ROBUSTNESS_CORRUPTIONS:

    # one job per method entry for all corruptions (separation, then scoring): the start-up
    # (importing torch, loading the model) is paid once, not once per grid point
    rule robustness_separate:
        message:
            "Separating the robustness excerpts with {wildcards.method}, once per F0 corruption"
        input:
            examples="results/robustness/{dataset}/J{J}_test.csv",
            entry=rules.separate.input.entry,
            checkpoint=lambda w: model_path(w.dataset, w.method, seeds_of(w.method)[0], w.J) if trainable(w.method) else [],
            f0=f0_input,
        output:
            [directory(f"results/robustness/{{dataset}}/{{method}}/{c}/J{{J}}") for c in ROBUSTNESS_CORRUPTIONS],
        conda:
            "../envs/choirbench.yaml"
        log:
            "results/logs/robustness/{dataset}/{method}/J{J}_separate.log",
        benchmark:
            "results/benchmarks/robustness/{dataset}/{method}/J{J}_separate.tsv"
        params:
            specs=" ".join(f"'{spec}'" for spec in ROBUSTNESS_CORRUPTIONS.values()),
            seed=ROBUSTNESS["seed"],
            checkpoint=lambda w, input: f"--checkpoint {input.checkpoint}" if input.checkpoint else "",
        threads: 1
        resources:
            mem_mb=4000,
            runtime=config["compute"]["train_runtime_min"],  # one job covers the whole grid: long, like training
        shell:
            "choirbench separate-set --data results/data/{wildcards.dataset} --examples {input.examples} "
            "--method-config {input.entry} {params.checkpoint} --threads {threads} --out {output} "
            "--f0-corruption {params.specs} --corruption-seed {params.seed} "
            "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


    rule robustness_evaluate:
        message:
            "Scoring {wildcards.method} with its F0 corrupted, once per corruption"
        input:
            examples="results/robustness/{dataset}/J{J}_test.csv",
            estimates=[f"results/robustness/{{dataset}}/{{method}}/{c}/J{{J}}" for c in ROBUSTNESS_CORRUPTIONS],
        output:
            [f"results/robustness/{{dataset}}/{{method}}/{c}/J{{J}}.parquet" for c in ROBUSTNESS_CORRUPTIONS],
        conda:
            "../envs/choirbench.yaml"
        log:
            "results/logs/robustness/{dataset}/{method}/J{J}_evaluate.log",
        benchmark:
            "results/benchmarks/robustness/{dataset}/{method}/J{J}_evaluate.tsv"
        params:
            seed=lambda w: seeds_of(w.method)[0],
            excerpt_s=config["examples"]["excerpt_s"],
            metrics=f"--metrics {' '.join(ROBUSTNESS['metrics'])}" if ROBUSTNESS["metrics"] else "",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=config["compute"]["train_runtime_min"],
        shell:
            "choirbench evaluate --data results/data/{wildcards.dataset} --examples {input.examples} "
            "--estimates {input.estimates} --dataset {wildcards.dataset} --method {wildcards.method} "
            "--seed {params.seed} --J {wildcards.J} --excerpt-s {params.excerpt_s} {params.metrics} --out {output} "
            "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule robustness_tables:
    message:
        "Robustness to F0 errors on {wildcards.dataset}: tables, curves, breaking points"
    input:
        metrics=lambda w: robustness_metric_tables(w.dataset),
        references=lambda w: robustness_references(w.dataset),
        examples=f"results/robustness/{{dataset}}/J{ROBUSTNESS_J}_test.csv",
    output:
        md=report(
            "results/tables/{dataset}/robustness.md",
            caption="../report/robustness.rst",
            category="Robustness",
        ),
        long="results/tables/{dataset}/robustness.csv",
        summary="results/tables/{dataset}/robustness_summary.csv",
        breaking="results/tables/{dataset}/robustness_breaking.csv",
        figures=report(
            expand("results/figures/{{dataset}}/robustness_{kind}.png", kind=robustness_kinds()),
            caption="../report/robustness.rst",
            category="Robustness",
        ),
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/robustness/{dataset}/tables.tsv"
    log:
        "results/logs/robustness/{dataset}/tables.log",
    params:
        baselines=[m for m in ROBUSTNESS_METHODS if METHODS[m]["model"] in NMF_MODELS],
    shell:
        "choirbench robustness --dataset {wildcards.dataset} --metrics {input.metrics} "
        "--references {input.references} --examples {input.examples} --baselines {params.baselines} "
        "--tables-out results/tables/{wildcards.dataset} --figures-out results/figures/{wildcards.dataset} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
