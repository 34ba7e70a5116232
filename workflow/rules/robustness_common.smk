# The robustness study's settings and target lists (functions apart from rules, as Snakemake's lint asks);
# the rules are in robustness.smk.
from choirbench.data_prep.f0_corruption import grid_specs, parse_corruption

ROBUSTNESS = config["robustness"]
ROBUSTNESS_J = ROBUSTNESS["J"]
REFERENCE_MODELS = ("mixture", "oracle")  # bounds that do not read the F0: the curves' reference lines
NMF_MODELS = ("nmf1", "nmf2")


def _same_separation(a, b):
    """Whether entries a and b separate the robustness excerpts identically: same model, knobs, F0 and
    (trained) checkpoint at the study's J, e.g. sf-us-full and sf-us-full-J4 (which differ below J = 4 only)."""
    ea, eb = method_entry(a), method_entry(b)
    same_entry = all(ea.get(k) == eb.get(k) for k in ("model", "params", "f0_source", "excerpt_s"))
    if not same_entry or trainable(a) != trainable(b):
        return False
    return not trainable(a) or model_path("x", a, 0, ROBUSTNESS_J) == model_path("x", b, 0, ROBUSTNESS_J)


def robustness_methods():
    """The entries whose F0 is corrupted: `robustness.methods`, else every F0-informed entry run, less
    those that would repeat an earlier entry's separation exactly (see _same_separation)."""
    chosen = ROBUSTNESS["methods"]
    if not chosen:
        chosen = []
        for m in ENABLED:
            if METHODS[m]["model"] not in REFERENCE_MODELS and not any(_same_separation(m, c) for c in chosen):
                chosen.append(m)
    for m in chosen:
        if m not in ENABLED:
            raise ValueError(f"config: robustness.methods lists {m!r}, which is not run (see `run` and `methods`)")
        if METHODS[m]["model"] in REFERENCE_MODELS:
            raise ValueError(f"config: robustness.methods lists {m!r}, which does not read the F0")
    return chosen


# {directory label: spec} of every corruption on the grid (size 0 comes from the main run)
ROBUSTNESS_CORRUPTIONS = (
    {parse_corruption(s).label: s for s in grid_specs(ROBUSTNESS)} if ROBUSTNESS["enabled"] else {}
)
ROBUSTNESS_METHODS = robustness_methods() if ROBUSTNESS["enabled"] else []
if ROBUSTNESS["metrics"] and "SI-SDR" not in ROBUSTNESS["metrics"]:
    raise ValueError("config: robustness.metrics must include SI-SDR (the curves' metric) or be empty (every metric)")


def robustness_metric_tables(dataset):
    return [
        f"results/robustness/{dataset}/{m}/{c}/J{ROBUSTNESS_J}.parquet"
        for m in ROBUSTNESS_METHODS
        for c in ROBUSTNESS_CORRUPTIONS
    ]


def robustness_references(dataset):
    """The main run's tables of the same J and seed: the uncorrupted point and the bounds."""
    bounds = [m for m in ENABLED if METHODS[m]["model"] in REFERENCE_MODELS]
    return [
        f"results/metrics/{dataset}/{m}/seed{seeds_of(m)[0]}/J{ROBUSTNESS_J}.parquet"  # trained: the first seed
        for m in bounds + ROBUSTNESS_METHODS
    ]


def robustness_kinds():
    return list(dict.fromkeys(parse_corruption(s).kind for s in ROBUSTNESS_CORRUPTIONS.values()))


def robustness_outputs():
    """What `robustness` (and `all`) ask for; nothing when robustness.enabled is false."""
    if not ROBUSTNESS_CORRUPTIONS or not ROBUSTNESS_METHODS:
        return []
    return [
        f"results/tables/{DATASET}/robustness.md",
        f"results/tables/{DATASET}/robustness.csv",
        f"results/tables/{DATASET}/robustness_breaking.csv",
        *[f"results/figures/{DATASET}/robustness_{k}.png" for k in robustness_kinds()],
    ]
