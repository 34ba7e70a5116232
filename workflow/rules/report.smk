# Tables, figures and the HTML report (written by `snakemake --report` when the run succeeds).


rule tables:
    message:
        "Aggregating the results of {wildcards.dataset} into tables"
    input:
        metrics=lambda w: metric_tables(w.dataset),
        logs=lambda w: train_logs(w.dataset),
    output:
        # shown in the report as HTML pages (rules report_claims, report_table)
        tables=expand("results/tables/{{dataset}}/J{J}.md", J=config["J"]),
        efficiency="results/tables/{dataset}/data_efficiency.md",
        claims="results/tables/{dataset}/claims.md",
        summary="results/tables/{dataset}/summary.csv",
        # what F0 from the mixture costs, when an entry is given it beside a truth-F0 twin
        f0_cost=["results/tables/{dataset}/f0_cost.md"] if F0_TWINS else [],
    params:
        training=training_settings(),
        verdicts=json.dumps(config.get("verdicts") or {}, sort_keys=True),
        f0_pairs=f"--f0-pairs '{json.dumps(F0_TWINS, sort_keys=True)}'" if F0_TWINS else "",
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/tables/{dataset}.tsv"
    log:
        "results/logs/tables/{dataset}.log",
    shell:
        "choirbench tables --dataset {wildcards.dataset} --metrics {input.metrics} "
        "--train-logs {input.logs} --training '{params.training}' --verdicts '{params.verdicts}' {params.f0_pairs} "
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
            category="3 Figures",
        ),
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/figures/{dataset}_boxplots.tsv"
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
            category="3 Figures",
        ),
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/figures/{dataset}_curves.tsv"
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
            category="3 Figures",
        ),
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/figures/{dataset}_parameters_{method}_seed{seed}.tsv"
    log:
        "results/logs/figures/{dataset}_parameters_{method}_seed{seed}.log",
    shell:
        "choirbench interpret --estimates {input} --out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


# The report's pages: Snakemake shows an HTML or image item inline, any other file as a download link,
# so the claims and tables are rendered to HTML; categories are sorted by name, hence the numbers.


rule report_claims:
    message:
        "Rendering the claims of {wildcards.dataset} for the report"
    input:
        "results/tables/{dataset}/claims.md",
    output:
        report("results/report/{dataset}/claims.html", caption="../report/claims.rst", category="1 Claims"),
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/report/{dataset}_claims.tsv"
    log:
        "results/logs/report/{dataset}_claims.log",
    shell:
        "choirbench report-pages --markdown {input} --out results/report/{wildcards.dataset} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule report_table:
    message:
        "Rendering table {wildcards.table} of {wildcards.dataset} for the report"
    input:
        "results/tables/{dataset}/{table}.md",
    output:
        report(
            "results/report/{dataset}/tables/{table}.html",
            caption="../report/table_page.rst",
            category="2 Tables",
            labels={"table": "{table}"},
        ),
    wildcard_constraints:
        table=r"J[1-4]|data_efficiency|data_efficiency_curve|f0_cost|frugality|robustness|f0_accuracy",
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/report/{dataset}_{table}.tsv"
    log:
        "results/logs/report/{dataset}_{table}.log",
    shell:
        "choirbench report-pages --markdown {input} --out results/report/{wildcards.dataset}/tables "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule report_listen:
    message:
        "Audio players and a spectrogram panel of {wildcards.dataset} for the report"
    input:
        examples=f"results/data/{{dataset}}/examples/J{REPORT_AUDIO_J}_test.csv",
        estimates=lambda w: list(report_estimates(w.dataset).values()),
    output:
        listen=report(
            expand("results/report/{{dataset}}/listen_J{J}_{n}_v{voice}.html", J=REPORT_AUDIO_J,
                   n=range(1, config["report_audio"]["excerpts"] + 1), voice=range(1, REPORT_AUDIO_J + 1)),
            caption="../report/listen.rst",
            category="4 Listen",
        ),
        spectrogram=report(
            f"results/report/{{dataset}}/spectrogram_J{REPORT_AUDIO_J}.png",
            caption="../report/spectrogram.rst",
            category="4 Listen",
        ),
    params:
        estimates=lambda w: " ".join(f"{m}={d}" for m, d in report_estimates(w.dataset).items()),
        excerpts=config["report_audio"]["excerpts"],
        J=REPORT_AUDIO_J,
        excerpt_s=config["examples"]["excerpt_s"],
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/report/{dataset}_listen.tsv"
    log:
        "results/logs/report/{dataset}_listen.log",
    shell:
        "choirbench report-pages --data results/data/{wildcards.dataset} --examples {input.examples} "
        "--estimates {params.estimates} --J {params.J} --excerpts {params.excerpts} "
        "--excerpt-s {params.excerpt_s} --out results/report/{wildcards.dataset} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule report_provenance:
    message:
        "Recording the provenance of the {wildcards.dataset} run for the report"
    output:
        report("results/report/{dataset}/provenance.html", caption="../report/provenance.rst",
               category="5 Provenance"),
    params:
        # a param: the page is rewritten when the config changes (Snakemake's params rerun-trigger)
        config=snapshot_text(config),
    conda:
        "../envs/choirbench.yaml"
    benchmark:
        "results/benchmarks/report/{dataset}_provenance.tsv"
    log:
        "results/logs/report/{dataset}_provenance.log",
    shell:
        "choirbench report-pages --config-json {params.config:q} --out results/report/{wildcards.dataset} "
        "> {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


onsuccess:
    # only after a run of the whole benchmark (`all`, the default target), not of single files;
    # a report that cannot be written fails the run, with its cause on the console
    if config["report"] and set(workflow.dag_settings.targets) <= {"all"}:
        import subprocess
        from snakemake.exceptions import WorkflowError

        # one --configfile with every file: Snakemake keeps only the last of repeated --configfile options
        _files = [str(f) for f in workflow.overwrite_configfiles]
        _extra = ["--configfile", *_files] if _files else []
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
