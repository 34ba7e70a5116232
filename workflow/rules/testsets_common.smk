# The extra test sets' settings and target lists (functions apart from rules); the rules are in testsets.smk.
from types import SimpleNamespace

from choirbench.config_check import check_dataset_blocks, check_name

GAP_J = 4
"""The gaps table's J (the paper's headline J); the largest J common to all test sets when absent."""
GAP_BASELINE_MODELS = ("nmf2", "unet")
"""Per model, the first entry run (in config order) is sf's baseline in the gaps table."""


def trained_model(dataset, method, seed, J):
    """The checkpoint a test-set separation uses: the one the main run's `separate` uses for the
    same (dataset, method, seed, J: one model per J where the entry trains per J); [] for an
    untrained method."""
    return model_path(dataset, method, seed, J) if trainable(method) else []


def _test_set_error(message):
    sys.exit(f"choirbench: error: {message}")  # one line naming the config key, no traceback


def _test_sets():
    """{name: {"J", "max_examples", "methods"}} from config `test_sets`, checked (one line per problem)."""
    out = {}
    for i, item in enumerate(config.get("test_sets") or []):
        key = f"test_sets[{i}]"
        entry = {"dataset": item} if isinstance(item, str) else dict(item)
        name = entry["dataset"]
        try:
            check_name(name, key)
        except ChoirbenchError as err:
            _test_set_error(err)
        if name not in config["datasets"]:
            _test_set_error(f"config key {key} names {name!r}, which has no entry under 'datasets' "
                            f"(known: {', '.join(sorted(config['datasets']))})")
        if name == DATASET:
            _test_set_error(f"config key {key} names {name!r}, the run's own dataset (its test split is the main run)")
        if name in out:
            _test_set_error(f"config key {key} names {name!r} a second time")
        methods = entry.get("methods") or [m for m in ENABLED if method_entry(m)["f0_source"] != "mixture"]
        for j, m in enumerate(methods):
            if m not in ENABLED:
                _test_set_error(f"config key {key}.methods[{j}] names {m!r}, which is not run (see `run` and `methods`)")
            if method_entry(m)["f0_source"] == "mixture":
                _test_set_error(f"config key {key}.methods[{j}]: {m!r} is given F0 from the mixture, which is not "
                                "derived for an extra test set (its F0 step needs the dataset's validation split)")
        out[name] = {"J": entry.get("J") or config["J"], "max_examples": entry.get("max_examples", 0),
                     "methods": methods}
    try:
        check_dataset_blocks(config, list(out))
    except ChoirbenchError as err:
        _test_set_error(err)
    return out


TEST_SETS = _test_sets()


wildcard_constraints:
    test_set="|".join(map(re.escape, TEST_SETS)) if TEST_SETS else "NONE",


def test_set_metric_tables(test_set, methods=None, Js=None):
    spec = TEST_SETS[test_set]
    return [
        f"results/metrics/{test_set}/from_{DATASET}/{m}/seed{s}/J{J}.parquet"
        for m in spec["methods"]
        if methods is None or m in methods
        for s in seeds_of(m)
        for J in (Js or spec["J"])
    ]


def test_set_train_logs(test_set):
    """The main run's training logs of the models this test set uses (per entry, seed and J trained for)."""
    spec = TEST_SETS[test_set]
    return [f"results/models/{DATASET}/{m}/seed{s}/J{J}/train_log.csv"
            for m, J in trained_models(spec["methods"], spec["J"]) for s in seeds_of(m)]


def _gap_plan():
    """(J, sf entries, baseline entries) of the gaps table, or None when there is nothing to compare."""
    common = set(config["J"]).intersection(*(spec["J"] for spec in TEST_SETS.values()))
    if not TEST_SETS or not common:
        return None
    J = GAP_J if GAP_J in common else max(common)
    sf = [m for m in ENABLED if METHODS[m]["model"] == "sf"]
    baselines = [next(m for m in ENABLED if METHODS[m]["model"] == model)
                 for model in GAP_BASELINE_MODELS if any(METHODS[m]["model"] == model for m in ENABLED)]
    return (J, sf, baselines) if sf and baselines else None


GAP_PLAN = _gap_plan()


def test_set_outputs():
    """What `all` asks for: each test set's tables and box plots, and the gaps table."""
    out = []
    for name, spec in TEST_SETS.items():
        out += [f"results/tables/{name}/from_{DATASET}/J{J}.md" for J in spec["J"]]
        out += [f"results/tables/{name}/from_{DATASET}/claims.md"]
        out += [f"results/figures/{name}/from_{DATASET}/boxplot_J{J}.png" for J in spec["J"]]
    if GAP_PLAN:
        out.append(f"results/tables/{DATASET}/test_sets.md")
    return out
