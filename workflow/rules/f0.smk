# F0 estimated from the mixture (`f0_source: mixture`) and its accuracy.
# The mixture F0 of a dataset is derived once per whole-song mixture and cached in
# results/data/{dataset}/f0_mixture/ (see choirbench/data_prep/f0.py make_mixture_f0);
# its knobs are the config block `f0_mixture`, passed as JSON so that a change reruns the step.
import shlex


def uses_mixture_f0():
    return config["f0_source"] == "mixture" or any(method_entry(m)["f0_source"] == "mixture" for m in ENABLED)


def f0_mixture_json():
    return shlex.quote(json.dumps(config.get("f0_mixture") or {}, sort_keys=True))


def f0_outputs():
    """Added to the final outputs only when some entry is given F0 from the mixture."""
    if not uses_mixture_f0():
        return []
    return [f"results/tables/{DATASET}/f0_accuracy.md", f"results/figures/{DATASET}/f0_accuracy.png"]


rule derive_f0_mixture:
    message:
        "Estimating each voice's F0 from the whole-song mixtures of {wildcards.dataset} (cached per file)"
    input:
        manifest="results/data/{dataset}/manifest.csv",
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
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    shell:
        "choirbench f0 --data results/data/{wildcards.dataset} --source mixture --params {params.knobs} "
        "--threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule f0_accuracy:
    message:
        "Scoring the mixture F0 of {wildcards.dataset} against its annotation"
    input:
        "results/data/{dataset}/f0_mixture/.complete",
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
    log:
        "results/logs/f0/{dataset}_accuracy.log",
    shell:
        "choirbench f0-accuracy --data results/data/{wildcards.dataset} --dataset {wildcards.dataset} --split test "
        "--out results/tables/{wildcards.dataset}/f0_accuracy --figure {output.figure} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
