# choirbench: prepare data -> run every method -> evaluate -> tables, figures, report.
# Usage: snakemake --cores 8 all [--configfile config/paper.yaml]


# config/config.yaml is the default; a --configfile replaces it (rather than being merged into it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/snapshots.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/methods.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report_common.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/robustness_common.smk"
include: "workflow/rules/robustness.smk"
include: "workflow/rules/f0_common.smk"
include: "workflow/rules/f0.smk"
include: "workflow/rules/testsets_common.smk"
include: "workflow/rules/testsets.smk"
include: "workflow/rules/efficiency_common.smk"
include: "workflow/rules/efficiency.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        robustness_outputs(),
        f0_outputs(),
        report_pages(DATASET),
        test_set_outputs(),
        efficiency_outputs(),
        frugality_outputs(),
