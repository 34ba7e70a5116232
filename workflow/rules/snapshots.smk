# Config snapshots: the part of the config each step reads, as JSON, per dataset. Written by rules
# (never while the Snakefile is parsed), so a dry run writes nothing and two configs that name
# different datasets never share a file. The content is a rule `params`: Snakemake's params
# rerun-trigger rewrites a snapshot exactly when its content changes, and the steps reading it follow.


localrules:
    dataset_snapshot,
    method_snapshot,
    examples_snapshot,


rule dataset_snapshot:
    output:
        "results/config/{dataset}/dataset.json",
    params:
        content=lambda w: snapshot_text(dataset_block(w.dataset)),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/config/{dataset}/dataset.log",
    shell:
        "choirbench snapshot --json {params.content:q} --out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule method_snapshot:
    output:
        "results/config/{dataset}/methods/{method}.json",
    params:
        # `seeds` picks which jobs run, not what one computes: left out, so changing it reruns nothing
        content=lambda w: snapshot_text({"id": w.method, **{k: v for k, v in method_entry(w.method).items()
                                                             if k != "seeds"}}),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/config/{dataset}/methods/{method}.log",
    shell:
        "choirbench snapshot --json {params.content:q} --out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule examples_snapshot:
    output:
        "results/config/{dataset}/examples.json",
    params:
        content=snapshot_text(config["examples"]),
    conda:
        "../envs/choirbench.yaml"
    log:
        "results/logs/config/{dataset}/examples.log",
    shell:
        "choirbench snapshot --json {params.content:q} --out {output} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
