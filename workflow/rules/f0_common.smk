# Which entries use F0 estimated from the mixture, and the F0 outputs (functions apart from rules);
# the rules are in f0.smk.
import shlex


def uses_mixture_f0():
    return config["f0_source"] == "mixture" or any(method_entry(m)["f0_source"] == "mixture" for m in ENABLED)


def f0_mixture_json():
    return shlex.quote(json.dumps(config.get("f0_mixture") or {}, sort_keys=True))


def mixture_training_entries():
    """The trained entries given mixture F0 (their training songs need whole-song tracks)."""
    keys = ("data", "small_fraction", "small_seed")
    entries = [method_entry(m) for m in ENABLED
               if trainable(m) and not METHODS[m].get("checkpoint_from") and method_entry(m)["f0_source"] == "mixture"]
    return shlex.quote(json.dumps([{k: e[k] for k in keys if k in e} for e in entries], sort_keys=True))


def mixture_examples(wildcards):
    return [f"results/data/{wildcards.dataset}/examples/J{J}_test.csv" for J in config["J"]]


def f0_outputs():
    """Added to the final outputs only when some entry is given F0 from the mixture."""
    if not uses_mixture_f0():
        return []
    return [f"results/tables/{DATASET}/f0_accuracy.md", f"results/figures/{DATASET}/f0_accuracy.png"]
