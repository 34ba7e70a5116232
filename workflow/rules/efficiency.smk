# Finding 2 as a curve (config `data_efficiency`): each listed -full entry trained on shares of the
# training songs, scored on the J-voice test excerpts; points whose songs equal an existing model's
# (the base entry's at 100 %, a -small entry's) reuse it, the others train here. And the frugality
# table: per method entry, parameters, training audio, time, memory and an energy estimate.
#   snakemake --cores 2 data_efficiency
#   snakemake --cores 2 frugality


rule data_efficiency:
    input:
        efficiency_outputs(),


rule frugality:
    input:
        frugality_outputs(),


localrules:
    efficiency_entry,
    efficiency_plan,


wildcard_constraints:
    point="|".join(map(re.escape, EFFICIENCY_BASE)) if EFFICIENCY_BASE else "(?!)",


rule efficiency_entry:
    priority: 100
    output:
        "results/efficiency/{dataset}/entries/{point}.json",
    params:
        content=lambda w: snapshot_text({"id": w.point, **efficiency_entry(w.point)}),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/efficiency/{dataset}/entries/{point}.log",
    shell:
        "choirbench snapshot --json {params.content:q} --out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


# which trained model each point is: decided on the songs each share picks (the manifest's durations)
checkpoint efficiency_plan:
    priority: 100
    input:
        "results/data/{dataset}/manifest.csv",
    output:
        "results/efficiency/{dataset}/plan.json",
    params:
        points=json.dumps(EFFICIENCY_POINTS, sort_keys=True),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/efficiency/{dataset}/plan.log",
    shell:
        "choirbench efficiency-plan --data results/data/{wildcards.dataset} --points {params.points:q} "
        "--out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule efficiency_train:
    priority: 50
    message:
        "Training {wildcards.point} (seed {wildcards.seed}, J={wildcards.J}) for the data-efficiency curve"
    input:
        manifest="results/data/{dataset}/manifest.csv",
        valid="results/data/{dataset}/examples/J{J}_valid.csv",
        entry="results/efficiency/{dataset}/entries/{point}.json",
        f0=efficiency_f0_input,
    output:
        model="results/efficiency/{dataset}/models/{point}/seed{seed}/J{J}/model.pt",
        log_csv="results/efficiency/{dataset}/models/{point}/seed{seed}/J{J}/train_log.csv",
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/efficiency/{dataset}/train/{point}/seed{seed}/J{J}.log",
    benchmark:
        "results/benchmarks/efficiency/{dataset}/train/{point}/seed{seed}/J{J}.tsv"
    threads: config["compute"]["train_threads"]
    resources:
        gpu=config["compute"]["gpus_per_training"],
        mem_mb=config["compute"]["train_mem_mb"],
        runtime=config["compute"]["train_runtime_min"],
    shell:
        "choirbench train --data results/data/{wildcards.dataset} --method-config {input.entry} "
        "--valid {input.valid} --seed {wildcards.seed} --J {wildcards.J} --threads {threads} "
        "--out results/efficiency/{wildcards.dataset}/models/{wildcards.point}/seed{wildcards.seed}/J{wildcards.J} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule efficiency_separate:
    message:
        "Separating the J={wildcards.J} test excerpts with {wildcards.point} (seed {wildcards.seed})"
    input:
        examples="results/data/{dataset}/examples/J{J}_test.csv",
        entry="results/efficiency/{dataset}/entries/{point}.json",
        checkpoint=lambda w: f"results/efficiency/{w.dataset}/models/{w.point}/seed{w.seed}/"
        f"J{efficiency_train_J(w.point)}/model.pt",
        f0=efficiency_f0_input,
    output:
        directory("results/efficiency/{dataset}/estimates/{point}/seed{seed}/J{J}"),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/efficiency/{dataset}/separate/{point}/seed{seed}/J{J}.log",
    benchmark:
        "results/benchmarks/efficiency/{dataset}/separate/{point}/seed{seed}/J{J}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "choirbench separate-set --data results/data/{wildcards.dataset} --examples {input.examples} "
        "--method-config {input.entry} --checkpoint {input.checkpoint} --threads {threads} --out {output} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule efficiency_evaluate:
    message:
        "Scoring {wildcards.point} (seed {wildcards.seed}, J={wildcards.J}) for the data-efficiency curve"
    input:
        examples="results/data/{dataset}/examples/J{J}_test.csv",
        estimates="results/efficiency/{dataset}/estimates/{point}/seed{seed}/J{J}",
    output:
        "results/efficiency/{dataset}/metrics/{point}/seed{seed}/J{J}.parquet",
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/efficiency/{dataset}/evaluate/{point}/seed{seed}/J{J}.log",
    benchmark:
        "results/benchmarks/efficiency/{dataset}/evaluate/{point}/seed{seed}/J{J}.tsv"
    params:
        excerpt_s=config["examples"]["excerpt_s"],
        metrics=f"--metrics {' '.join(EFFICIENCY['metrics'])}" if EFFICIENCY["metrics"] else "",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "choirbench evaluate --data results/data/{wildcards.dataset} --examples {input.examples} "
        "--estimates {input.estimates} --dataset {wildcards.dataset} --method {wildcards.point} "
        "--seed {wildcards.seed} --J {wildcards.J} --excerpt-s {params.excerpt_s} {params.metrics} --out {output} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule efficiency_curve:
    message:
        "The data-efficiency curve of {wildcards.dataset}"
    input:
        plan="results/efficiency/{dataset}/plan.json",
        metrics=efficiency_metrics,
    output:
        csv="results/tables/{dataset}/data_efficiency_curve.csv",
        md="results/tables/{dataset}/data_efficiency_curve.md",
        figure=report(
            "results/figures/{dataset}/data_efficiency.png",
            caption="../report/data_efficiency.rst",
            category="3 Figures",
        ),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/efficiency/{dataset}/curve.log",
    benchmark:
        "results/benchmarks/efficiency/{dataset}/curve.tsv"
    params:
        J=EFFICIENCY_J,
    shell:
        "choirbench efficiency-curve --plan {input.plan} --metrics {input.metrics} --J {params.J} "
        "--tables-out results/tables/{wildcards.dataset} --figure {output.figure} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule frugality_table:
    message:
        "The frugality table of {wildcards.dataset}: parameters, training data, time, memory, energy"
    input:
        lambda w: frugality_inputs(w.dataset),
    output:
        csv="results/tables/{dataset}/frugality.csv",
        md="results/tables/{dataset}/frugality.md",
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/frugality/{dataset}.log",
    benchmark:
        "results/benchmarks/frugality/{dataset}.tsv"
    params:
        spec=lambda w: json.dumps(frugality_spec(w.dataset), sort_keys=True),
    shell:
        "choirbench frugality --data results/data/{wildcards.dataset} --spec {params.spec:q} "
        "--out results/tables/{wildcards.dataset} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
