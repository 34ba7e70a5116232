# Trained models on other test sets, no retraining (config `test_sets`): every method entry of the
# run separates the test split of each extra dataset, the trained ones with the checkpoints trained
# on the main `dataset`; then the usual evaluate / tables / figures commands. Paths carry both names,
# so they never meet the main run's (nor a run whose main dataset is the test set):
#   results/testsets/{test_set}/J{J}_test.csv                                  the excerpts
#   results/estimates/{test_set}/from_{dataset}/{method}/seed{seed}/J{J}/      separations
#   results/metrics/{test_set}/from_{dataset}/{method}/seed{seed}/J{J}.parquet scores
#   results/tables/{test_set}/from_{dataset}/, results/figures/{test_set}/from_{dataset}/
#   results/tables/{dataset}/test_sets.{md,csv}   sf's gap over nmf2 and the U-Net on every test set


rule test_sets:
    input:
        test_set_outputs(),


rule test_set_examples:
    priority: 100
    message:
        "Choosing the J={wildcards.J} test excerpts of the extra test set {wildcards.test_set}"
    input:
        "results/data/{test_set}/examples/J{J}_test.csv",
    output:
        "results/testsets/{test_set}/J{J}_test.csv",
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/testsets/{test_set}/J{J}_examples.tsv"
    log:
        "results/logs/testsets/{test_set}/J{J}_examples.log",
    params:
        max_examples=lambda w: TEST_SETS[w.test_set]["max_examples"],
    shell:
        "choirbench robustness-examples --examples {input} --max-examples {params.max_examples} --out {output} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule test_set_separate:
    message:
        "Separating the J={wildcards.J} excerpts of {wildcards.test_set} with {wildcards.method} "
        "(seed {wildcards.seed}, trained on {wildcards.dataset})"
    input:
        examples="results/testsets/{test_set}/J{J}_test.csv",
        entry="results/config/{dataset}/methods/{method}.json",
        checkpoint=lambda w: trained_model(w.dataset, w.method, w.seed, w.J),
        f0=lambda w: f0_input(SimpleNamespace(dataset=w.test_set, method=w.method)),
    output:
        directory("results/estimates/{test_set}/from_{dataset}/{method}/seed{seed}/J{J}"),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/testsets/{test_set}/from_{dataset}/{method}/seed{seed}/J{J}_separate.log",
    benchmark:
        "results/benchmarks/testsets/{test_set}/from_{dataset}/{method}/seed{seed}/J{J}_separate.tsv"
    params:
        checkpoint=lambda w, input: f"--checkpoint {input.checkpoint}" if input.checkpoint else "",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "choirbench separate-set --data results/data/{wildcards.test_set} --examples {input.examples} "
        "--method-config {input.entry} {params.checkpoint} --threads {threads} --out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule test_set_evaluate:
    message:
        "Scoring {wildcards.method} on {wildcards.test_set} (seed {wildcards.seed}, J={wildcards.J})"
    input:
        examples="results/testsets/{test_set}/J{J}_test.csv",
        estimates="results/estimates/{test_set}/from_{dataset}/{method}/seed{seed}/J{J}",
    output:
        "results/metrics/{test_set}/from_{dataset}/{method}/seed{seed}/J{J}.parquet",
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/testsets/{test_set}/from_{dataset}/{method}/seed{seed}/J{J}_evaluate.log",
    benchmark:
        "results/benchmarks/testsets/{test_set}/from_{dataset}/{method}/seed{seed}/J{J}_evaluate.tsv"
    params:
        excerpt_s=config["examples"]["excerpt_s"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "choirbench evaluate --data results/data/{wildcards.test_set} --examples {input.examples} "
        "--estimates {input.estimates} --dataset {wildcards.test_set} --method {wildcards.method} "
        "--seed {wildcards.seed} --J {wildcards.J} --excerpt-s {params.excerpt_s} --out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


# tables and box plots: one rule per test set (each has its own J list)
for _name, _spec in TEST_SETS.items():

    rule:
        name:
            f"test_set_tables_{_name}"
        message:
            f"Aggregating the results of {DATASET}'s models on {_name} into tables"
        input:
            metrics=test_set_metric_tables(_name),
            logs=test_set_train_logs(_name),
        output:
            tables=report(
                [f"results/tables/{_name}/from_{DATASET}/J{J}.md" for J in _spec["J"]],
                caption="../report/test_sets.rst",
                category="Test sets",
            ),
            efficiency=f"results/tables/{_name}/from_{DATASET}/data_efficiency.md",
            claims=report(
                f"results/tables/{_name}/from_{DATASET}/claims.md",
                caption="../report/test_sets.rst",
                category="Test sets",
            ),
            summary=f"results/tables/{_name}/from_{DATASET}/summary.csv",
        params:
            training=training_settings(),
            label=_name,
            out=lambda w, output: str(Path(output.summary).parent),
        conda:
            "../envs/choirbench.yaml"
        log:
            f"results/logs/testsets/{_name}/from_{DATASET}/tables.log",
        shell:
            "choirbench tables --dataset {params.label} --metrics {input.metrics} "
            "--train-logs {input.logs} --training '{params.training}' "
            "--out {params.out} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"

    rule:
        name:
            f"test_set_boxplots_{_name}"
        message:
            f"Drawing the box plots of {DATASET}'s models on {_name}"
        input:
            test_set_metric_tables(_name),
        output:
            report(
                [f"results/figures/{_name}/from_{DATASET}/boxplot_J{J}.png" for J in _spec["J"]],
                caption="../report/test_sets.rst",
                category="Test sets",
            ),
        params:
            label=_name,
            out=lambda w, output: str(Path(output[0]).parent),
        conda:
            "../envs/choirbench.yaml"
        log:
            f"results/logs/testsets/{_name}/from_{DATASET}/boxplots.log",
        shell:
            "choirbench figures --dataset {params.label} --metrics {input} "
            "--out {params.out} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


if GAP_PLAN:

    rule test_set_gaps:
        message:
            f"sf's gap over its baselines on every test set of {DATASET}'s models"
        input:
            [
                f"results/metrics/{DATASET}/{m}/seed{s}/J{GAP_PLAN[0]}.parquet"
                for m in GAP_PLAN[1] + GAP_PLAN[2]
                for s in seeds_of(m)
            ],
            [test_set_metric_tables(t, GAP_PLAN[1] + GAP_PLAN[2], [GAP_PLAN[0]]) for t in TEST_SETS],
        output:
            md=report(
                f"results/tables/{DATASET}/test_sets.md",
                caption="../report/test_sets.rst",
                category="Test sets",
            ),
            csv=f"results/tables/{DATASET}/test_sets.csv",
        params:
            J=GAP_PLAN[0],
            sf=" ".join(GAP_PLAN[1]),
            baselines=" ".join(GAP_PLAN[2]),
            main=DATASET,
            out=lambda w, output: output.csv[: -len(".csv")],
        conda:
            "../envs/choirbench.yaml"
        log:
            f"results/logs/testsets/{DATASET}_gaps.log",
        shell:
            "choirbench test-set-gaps --metrics {input} --main {params.main} --sf {params.sf} "
            "--baselines {params.baselines} --J {params.J} --out {params.out} "
            "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
