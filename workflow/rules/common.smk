# Config validation, per-step config snapshots and the target list.
import json
import re
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

from choirbench import ChoirbenchError
from choirbench.config_check import check_config
from choirbench.methods import get as get_method

min_version("8.0")


validate(config, "../schemas/config.schema.yaml")

# Everything the schema cannot check, now rather than when a job runs: method params typed and
# ranged against the methods' defaults, dataset knobs, `dataset`/`run`/`checkpoint_from` naming
# entries, and every name that becomes a path or a shell word (see choirbench/config_check.py).
try:
    check_config(config)
except ChoirbenchError as _err:
    sys.exit(f"choirbench: error: {_err}")  # one line naming the config key, no traceback

DATASET = config["dataset"]
METHODS = config["methods"]
ENABLED = config["run"] or list(METHODS)


wildcard_constraints:
    dataset="|".join(map(re.escape, config["datasets"])),
    method="|".join(map(re.escape, METHODS)) if METHODS else "NONE",
    seed=r"\d+",
    J=r"[1-4]",
    split="train|valid|test",
    source="pyin|score",


def snapshot_text(content):
    """A step's config as canonical JSON: a rule's `params`, so a snapshot is rewritten (and the steps
    after it rerun) exactly when its content changes."""
    return json.dumps(content, indent=2, sort_keys=True) + "\n"


def method_entry(method):
    entry = dict(METHODS[method])
    entry.setdefault("f0_source", config["f0_source"])
    entry.setdefault("excerpt_s", config["examples"]["excerpt_s"])
    return entry


def f0_input(wildcards):
    """The derived F0 a method entry is given, when it is not the dataset's own (`truth`)."""
    source = method_entry(wildcards.method)["f0_source"]
    return [] if source == "truth" else f"results/data/{wildcards.dataset}/f0_{source}/.complete"


def trainable(method):
    return get_method(METHODS[method]["model"]).trainable


def trained_by(method):
    """The entry whose checkpoint this one uses (itself, or its checkpoint_from)."""
    return METHODS[method].get("checkpoint_from") or method


def checkpoint_input(wildcards):
    if not trainable(wildcards.method):
        return []
    return f"results/models/{wildcards.dataset}/{trained_by(wildcards.method)}/seed{wildcards.seed}/model.pt"


def dataset_block(name):
    """A dataset's config; a combined one takes `prefer_sources` when `prefer_if_exists` is present
    (the paper trains on the commercial BC/BQ set when the user has it, else on the public stand-in)."""
    block = dict(config["datasets"][name])
    if block.get("kind", name) == "combine":
        preferred = block.pop("prefer_sources", None)
        marker = block.pop("prefer_if_exists", "")
        if preferred and marker and Path(marker).expanduser().exists():
            block["sources"] = preferred
    return block


def source_manifests(dataset):
    """A combined dataset needs its sources prepared first."""
    block = dataset_block(dataset)
    if block.get("kind", dataset) != "combine":
        return []
    return [f"results/data/{s['dataset']}/manifest.csv" for s in block.get("sources", [])]


def singer_option():
    singer = config["examples"]["singer"]
    if not singer:
        return ""
    return f"--singer '{json.dumps(singer)}'" if isinstance(singer, dict) else f"--singer {singer}"


def seeds_of(method):
    return config["seeds"] if trainable(method) else config["seeds"][:1]


def metric_tables(dataset):
    return [
        f"results/metrics/{dataset}/{m}/seed{s}/J{J}.parquet"
        for m in ENABLED
        for s in seeds_of(m)
        for J in config["J"]
    ]


def train_logs(dataset):
    trained = sorted({trained_by(m) for m in ENABLED if trainable(m)})
    return [f"results/models/{dataset}/{m}/seed{s}/train_log.csv" for m in trained for s in config["seeds"]]


def final_outputs():
    return [
        expand("results/tables/{dataset}/J{J}.md", dataset=DATASET, J=config["J"]),
        expand("results/figures/{dataset}/boxplot_J{J}.png", dataset=DATASET, J=config["J"]),
        f"results/tables/{DATASET}/data_efficiency.md",
        f"results/tables/{DATASET}/claims.md",
        [f"results/figures/{DATASET}/training_curves.png"] if train_logs(DATASET) else [],
        [
            f"results/figures/{DATASET}/parameters_{m}_seed{config['seeds'][0]}.png"
            for m in ENABLED
            if METHODS[m]["model"] == "sf" and 4 in config["J"]
        ],
    ]
