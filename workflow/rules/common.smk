# Config validation, per-step config snapshots and the target list.
import json
import re
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

from choirbench import ChoirbenchError
from choirbench.config_check import check_config
from choirbench.registry import get as get_method
from choirbench.harness import ENTRY_DEFAULTS, trained_J

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
    """The entry with every default filled in: ENTRY_DEFAULTS, then the run's F0 source and excerpt length."""
    return {**ENTRY_DEFAULTS, "f0_source": config["f0_source"], "excerpt_s": config["examples"]["excerpt_s"],
            **METHODS[method]}


def f0_input(wildcards):
    """The derived F0 a method entry is given, when it is not the dataset's own (`truth`)."""
    source = method_entry(wildcards.method)["f0_source"]
    return [] if source == "truth" else f"results/data/{wildcards.dataset}/f0_{source}/.complete"


def trainable(method):
    return get_method(METHODS[method]["model"]).trainable


def trained_by(method):
    """The entry whose checkpoint this one uses (itself, or its checkpoint_from)."""
    return METHODS[method].get("checkpoint_from") or method


def train_J_of(method):
    """The entry's own `train_J`: "per_J" or a number."""
    return method_entry(method)["train_J"]


def model_J(method, J):
    """The J of the model `method` separates J-voice mixtures with. An entry that trains: its
    train_J decides (per_J -> J, a number -> that one). An entry with checkpoint_from: a source
    with a fixed train_J has that one model only; a per-J source lends the model its own train_J
    picks (so `train_J: 4` there tests the source's 4-voice model at every J, at no training cost)."""
    source = trained_by(method)
    if train_J_of(source) != "per_J":
        return int(train_J_of(source))
    return trained_J({"train_J": train_J_of(method)}, int(J))


def models_J(method, test_J):
    """The J of every model `method` trains or uses for the `test_J` mixtures."""
    return sorted({model_J(method, J) for J in test_J})


def model_path(dataset, method, seed, J):
    """The checkpoint `method` (an entry, or one with checkpoint_from) separates J-voice mixtures with:
    results/models/{dataset}/{training entry}/seed{seed}/J{J trained for}/model.pt (train_J: per_J ->
    the J-voice model; train_J: 4 -> the J4 model for every J). Every consumer asks here."""
    return f"results/models/{dataset}/{trained_by(method)}/seed{seed}/J{model_J(method, J)}/model.pt"


def checkpoint_input(wildcards):
    if not trainable(wildcards.method):
        return []
    return model_path(wildcards.dataset, wildcards.method, wildcards.seed, wildcards.J)


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
    """The training seeds of an entry: those of the entry that trains its model (its own `seeds`, else the
    run's); untrained methods run once, with the run's first seed."""
    if not trainable(method):
        return config["seeds"][:1]
    return method_entry(trained_by(method))["seeds"] or config["seeds"]


def metric_tables(dataset):
    return [
        f"results/metrics/{dataset}/{m}/seed{s}/J{J}.parquet"
        for m in ENABLED
        for s in seeds_of(m)
        for J in config["J"]
    ]


def trained_models(methods, test_J):
    """(entry that trains, J trained for) of every model that `methods` use at the test J's `test_J`."""
    return sorted({(trained_by(m), J) for m in methods if trainable(m) for J in models_J(m, test_J)})


def train_logs(dataset):
    """The training logs of every model the run trains (per entry, seed and J trained for)."""
    return [f"results/models/{dataset}/{m}/seed{s}/J{J}/train_log.csv"
            for m, J in trained_models(ENABLED, config["J"]) for s in seeds_of(m)]


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
