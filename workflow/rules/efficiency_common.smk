# The data-efficiency curve's points and the frugality table's inputs (functions apart from rules, as
# Snakemake's lint asks); the rules are in efficiency.smk.

EFFICIENCY = config["data_efficiency"]
EFFICIENCY_J = EFFICIENCY["J"]
# entry keys that do not change what a model learns from given songs (the rest must agree for reuse)
_SUBSET_KEYS = ("data", "small_fraction", "small_seed", "train_J", "checkpoint_from", "threads", "seeds")


def efficiency_family(base):
    """The curve's family of a base entry: its name without `-full` (sf-us-full -> sf-us)."""
    return base[: -len("-full")] if base.endswith("-full") else base


def efficiency_point_name(base, fraction):
    """The entry name of a point (it must pass config_check.check_name, it becomes a path)."""
    return f"{base}_1song" if fraction == 0 else f"{base}_frac{fraction:g}"


def _efficiency_bases():
    bases = EFFICIENCY["entries"]
    for i, base in enumerate(bases):
        key = f"data_efficiency.entries[{i}]"
        if base not in METHODS:
            sys.exit(f"choirbench: error: config key {key}: {base!r} has no entry under 'methods'")
        entry = method_entry(base)
        if not trainable(base) or entry["checkpoint_from"] or entry["data"] != "full":
            sys.exit(f"choirbench: error: config key {key}: {base!r} must be a trained entry with data: full "
                     "and no checkpoint_from (the curve's 100 % point)")
    return bases


def _same_training_but_songs(base, other):
    """Whether `other` (a -small entry run) trains what `base` would on the same songs: same model,
    knobs, F0, excerpt length, parts and J of the model at the curve's J."""
    a, b = method_entry(base), method_entry(other)
    same = all(a[k] == b[k] for k in a if k not in _SUBSET_KEYS) and set(a) == set(b)
    return (same and trainable(other) and not b["checkpoint_from"] and b["data"] == "small"
            and model_J(other, EFFICIENCY_J) == model_J(base, EFFICIENCY_J)
            and set(EFFICIENCY["seeds"]) <= set(seeds_of(other)))  # it trains every seed the curve needs


def efficiency_points():
    """Every (base entry, fraction) point with the -small entries it may coincide with (decided on the
    songs by the `efficiency_plan` checkpoint, which needs the manifest's durations)."""
    if not EFFICIENCY["enabled"]:
        return []
    points = []
    for base in _efficiency_bases():
        candidates = [{"entry": m, "fraction": method_entry(m)["small_fraction"], "seed": method_entry(m)["small_seed"]}
                      for m in ENABLED if m != base and _same_training_but_songs(base, m)]
        for fraction in EFFICIENCY["fractions"]:
            points.append({"name": efficiency_point_name(base, fraction), "base": base,
                           "family": efficiency_family(base), "fraction": float(fraction),
                           "small_seed": EFFICIENCY["small_seed"], "candidates": candidates})
    names = [p["name"] for p in points]
    for name in names:
        try:
            check_name(name, "data_efficiency (a point's entry name)")
        except ChoirbenchError as err:
            sys.exit(f"choirbench: error: {err}")
        if name in METHODS:
            sys.exit(f"choirbench: error: config key data_efficiency: the point {name!r} is also an entry of 'methods'")
    if len(set(names)) != len(names):
        sys.exit("choirbench: error: config key data_efficiency.fractions: a fraction is listed twice")
    return points


EFFICIENCY_POINTS = efficiency_points()
EFFICIENCY_BASE = {p["name"]: p["base"] for p in EFFICIENCY_POINTS}


def efficiency_entry(point):
    """A point's own entry: its base's, trained on a share of the songs (harness.training_songs), for the
    J of the base's model at the curve's J."""
    base = EFFICIENCY_BASE[point]
    fraction = next(p["fraction"] for p in EFFICIENCY_POINTS if p["name"] == point)
    return {**method_entry(base), "data": "small", "small_fraction": fraction,
            "small_seed": EFFICIENCY["small_seed"], "train_J": model_J(base, EFFICIENCY_J)}


def efficiency_train_J(point):
    return model_J(EFFICIENCY_BASE[point], EFFICIENCY_J)


def efficiency_f0_input(wildcards):
    source = method_entry(EFFICIENCY_BASE[wildcards.point])["f0_source"]
    return [] if source == "truth" else f"results/data/{wildcards.dataset}/f0_{source}/.complete"


def efficiency_plan(dataset):
    """The plan written by the `efficiency_plan` checkpoint (read once it exists)."""
    path = checkpoints.efficiency_plan.get(dataset=dataset).output[0]
    return json.loads(Path(path).read_text())["points"]


def efficiency_metric_path(dataset, entry, seed):
    """The metric table of an entry's model at the curve's J: a config entry's from the main run, a
    point's own from this study."""
    if entry in METHODS:
        return f"results/metrics/{dataset}/{entry}/seed{seed}/J{EFFICIENCY_J}.parquet"
    return f"results/efficiency/{dataset}/metrics/{entry}/seed{seed}/J{EFFICIENCY_J}.parquet"


def efficiency_metrics(wildcards):
    entries = dict.fromkeys(p["model_of"] for p in efficiency_plan(wildcards.dataset))
    return [efficiency_metric_path(wildcards.dataset, e, s) for e in entries for s in EFFICIENCY["seeds"]]


def efficiency_outputs():
    """What `data_efficiency` (and `all`) ask for; nothing when data_efficiency.enabled is false."""
    if not EFFICIENCY_POINTS:
        return []
    return [
        f"results/tables/{DATASET}/data_efficiency_curve.csv",
        f"results/tables/{DATASET}/data_efficiency_curve.md",
        f"results/figures/{DATASET}/data_efficiency.png",
    ]


# ------------------------------------------------------------------------------------ frugality


def _frugality_trainings(dataset, trainer):
    """(seed, J, model, benchmark) of every model `trainer` trains in this run (for itself and for the
    entries that use its checkpoints), as train_logs counts them."""
    Js = [J for m, J in trained_models(ENABLED, config["J"]) if m == trainer]
    return [{"seed": s, "J": J, "model": f"results/models/{dataset}/{trainer}/seed{s}/J{J}/model.pt",
             "benchmark": f"results/benchmarks/train/{dataset}/{trainer}/seed{s}/J{J}.tsv"}
            for s in seeds_of(trainer) for J in Js]


def frugality_spec(dataset):
    """The JSON `choirbench frugality` reads: per entry run, its trained models with their benchmark
    files, its separation jobs' benchmark files and excerpt lists, and the energy model."""
    entries = {}
    for m in ENABLED:
        trainer = trained_by(m) if trainable(m) else ""
        entries[m] = {
            "model": METHODS[m]["model"],
            "trained_by": trainer,
            "config": f"results/config/{dataset}/methods/{trainer}.json" if trainer else None,
            "trainings": _frugality_trainings(dataset, trainer) if trainer else [],
            "separations": [{"seed": s, "J": J,
                             "benchmark": f"results/benchmarks/separate/{dataset}/{m}/seed{s}/J{J}.tsv",
                             "examples": f"results/data/{dataset}/examples/J{J}_test.csv"}
                            for s in seeds_of(m) for J in config["J"]],
        }
    energy = {k: config["frugality"][k] for k in ("watts_per_core", "watts_per_gb", "pue")}
    return {"excerpt_s": config["examples"]["excerpt_s"], "energy": energy, "entries": entries}


def frugality_inputs(dataset):
    spec = frugality_spec(dataset)
    files = [f"results/data/{dataset}/manifest.csv"]
    for item in spec["entries"].values():
        files += [item["config"]] if item["config"] else []
        files += [t[k] for t in item["trainings"] for k in ("model", "benchmark")]
        files += [s[k] for s in item["separations"] for k in ("benchmark", "examples")]
    return list(dict.fromkeys(files))


def frugality_outputs():
    if not config["frugality"]["enabled"]:
        return []
    return [f"results/tables/{DATASET}/frugality.csv", f"results/tables/{DATASET}/frugality.md"]
