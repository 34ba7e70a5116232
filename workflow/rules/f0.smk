# F0 estimated from the mixture (`f0_source: mixture`) and its accuracy.
# Cached in results/data/{dataset}/f0_mixture/ (data_prep/f0.py make_mixture_f0):
# every test and validation excerpt from its own mixture, and the training songs of the trained
# mixture-F0 entries from whole-song mixtures (one per singer rank). The knobs (config block
# `f0_mixture`) and those entries are passed as JSON, so that a change reruns the step.


rule derive_f0_mixture:
    priority: 100
    message:
        "Estimating each voice's F0 from the whole-song mixtures of {wildcards.dataset} (cached per file)"
    input:
        manifest="results/data/{dataset}/manifest.csv",
        test=mixture_examples,
        valid="results/data/{dataset}/examples/J4_valid.csv",
    output:
        "results/data/{dataset}/f0_mixture/.complete",
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/f0/{dataset}_mixture.log",
    benchmark:
        "results/benchmarks/f0/{dataset}_mixture.tsv"
    params:
        knobs=f0_mixture_json(),
        train=mixture_training_entries(),
    # one thread: a 2-thread job only starts when both of a 2-core run's cores are free at once, which the
    # greedy scheduler, filling every freed core with a 1-thread job, let happen only at the end of the
    # default run (and the mixture-F0 training and separations after it ran alone there)
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    shell:
        "choirbench f0 --data results/data/{wildcards.dataset} --source mixture --params {params.knobs} "
        "--examples {input.test} {input.valid} --train-entries {params.train} "
        "--threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule f0_accuracy:
    message:
        "Scoring the mixture F0 of {wildcards.dataset} against its annotation"
    input:
        f0="results/data/{dataset}/f0_mixture/.complete",
        test=mixture_examples,
    output:
        table=report(
            "results/tables/{dataset}/f0_accuracy.md",
            caption="../report/f0_accuracy.rst",
            category="Tables",
        ),
        csv="results/tables/{dataset}/f0_accuracy.csv",
        figure=report(
            "results/figures/{dataset}/f0_accuracy.png",
            caption="../report/f0_accuracy.rst",
            category="Figures",
        ),
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/f0/{dataset}_accuracy.tsv"
    log:
        "results/logs/f0/{dataset}_accuracy.log",
    shell:
        "choirbench f0-accuracy --data results/data/{wildcards.dataset} --dataset {wildcards.dataset} --examples {input.test} "
        "--out results/tables/{wildcards.dataset}/f0_accuracy --figure {output.figure} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
