# Tables, figures and the HTML report (written by `snakemake --report` when the run succeeds).


def training_settings():
    """JSON for `choirbench tables --training`: each trainable entry's trained model, its step budget
    and patience (resolved with the method's defaults) and the J of the model used at each test J
    (train_J), for the claims' convergence notes."""
    from choirbench.params import resolve_params

    out = {}
    for m in ENABLED:
        if trainable(m):
            entry = trained_by(m)
            params = resolve_params(get_method(METHODS[entry]["model"]).defaults,
                                    METHODS[entry].get("params") or {}, f"methods.{entry}.params")
            out[m] = {"trained_by": entry, "steps": params.get("steps"), "patience": params.get("patience"),
                      "model_J": {str(J): model_J(m, J) for J in config["J"]}}  # which train log each J rests on
    return json.dumps(out, sort_keys=True)


rule tables:
    message:
        "Aggregating the results of {wildcards.dataset} into tables"
    input:
        metrics=lambda w: metric_tables(w.dataset),
        logs=lambda w: train_logs(w.dataset),
    output:
        tables=report(
            expand("results/tables/{{dataset}}/J{J}.md", J=config["J"]),
            caption="../report/tables.rst",
            category="Tables",
        ),
        efficiency=report(
            "results/tables/{dataset}/data_efficiency.md",
            caption="../report/data_efficiency.rst",
            category="Tables",
        ),
        claims=report(
            "results/tables/{dataset}/claims.md",
            caption="../report/claims.rst",
            category="Tables",
        ),
        summary="results/tables/{dataset}/summary.csv",
    params:
        training=training_settings(),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/tables/{dataset}.log",
    shell:
        "choirbench tables --dataset {wildcards.dataset} --metrics {input.metrics} "
        "--train-logs {input.logs} --training '{params.training}' "
        "--out results/tables/{wildcards.dataset} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule boxplots:
    message:
        "Drawing the box plots of {wildcards.dataset}"
    input:
        lambda w: metric_tables(w.dataset),
    output:
        report(
            expand("results/figures/{{dataset}}/boxplot_J{J}.png", J=config["J"]),
            caption="../report/boxplots.rst",
            category="Figures",
        ),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/figures/{dataset}_boxplots.log",
    shell:
        "choirbench figures --dataset {wildcards.dataset} --metrics {input} "
        "--out results/figures/{wildcards.dataset} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule training_curves:
    message:
        "Drawing the training curves of {wildcards.dataset}"
    input:
        lambda w: train_logs(w.dataset),
    output:
        report(
            "results/figures/{dataset}/training_curves.png",
            caption="../report/training_curves.rst",
            category="Figures",
        ),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/figures/{dataset}_curves.log",
    shell:
        "choirbench figures --dataset {wildcards.dataset} --train-logs {input} "
        "--curves {output} --out results/figures/{wildcards.dataset} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule interpret:
    message:
        "Drawing what {wildcards.method} believes a voice is made of"
    input:
        "results/estimates/{dataset}/{method}/seed{seed}/J4",
    output:
        report(
            "results/figures/{dataset}/parameters_{method}_seed{seed}.png",
            caption="../report/interpret.rst",
            category="Figures",
        ),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/figures/{dataset}_parameters_{method}_seed{seed}.log",
    shell:
        "choirbench interpret --estimates {input} --out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


onsuccess:
    # only after a run of the whole benchmark (`all`, the default target), not of single files;
    # a report that cannot be written fails the run, with its cause on the console
    if config["report"] and set(workflow.dag_settings.targets) <= {"all"}:
        import subprocess
        from snakemake.exceptions import WorkflowError

        _extra = [a for f in workflow.overwrite_configfiles for a in ("--configfile", str(f))]
        _log = Path("results/logs/report.log")
        _log.parent.mkdir(parents=True, exist_ok=True)
        with _log.open("w") as _out:
            _done = subprocess.run(
                [sys.executable, "-m", "snakemake", "--nolock", "all", "--report", "results/report.html", *_extra],
                stdout=_out,
                stderr=subprocess.STDOUT,
            )
        if _done.returncode != 0 or not Path("results/report.html").is_file():
            _cause = [line for line in _log.read_text().splitlines() if line.strip()][-4:]
            raise WorkflowError(f"the report was not written (full log: {_log}):\n" + "\n".join(_cause))
