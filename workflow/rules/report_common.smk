# Helpers of the report's rules (workflow/rules/report.smk): what the tables rule is told about
# training, and which pages the report shows. Functions only (Snakemake's lint: no rules here).


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


def f0_twins():
    """Entry given mixture F0 -> its enabled twin given the annotated F0: the same method, params, excerpt
    length, train_J and training set (of the entry that trained its model), F0 source aside. What the
    tables rule's f0_cost table compares."""

    def key(m):
        entry, source = method_entry(m), method_entry(trained_by(m))
        training = {k: source[k] for k in ("data", "small_fraction", "small_seed", "train_parts")}
        return json.dumps([entry["model"], entry.get("params") or {}, entry["excerpt_s"], entry["train_J"], training],
                          sort_keys=True)

    truth = {}
    for m in ENABLED:
        if method_entry(m)["f0_source"] == "truth":
            truth.setdefault(key(m), m)
    return {m: truth[key(m)] for m in ENABLED
            if method_entry(m)["f0_source"] == "mixture" and key(m) in truth}


F0_TWINS = f0_twins()


def report_audio_J():
    """The J of the excerpts the report plays (report_audio.J, default the largest J of the run)."""
    J = config["report_audio"].get("J") or max(config["J"])
    if J not in config["J"]:
        sys.exit(f"choirbench: error: report_audio.J: {J} is not one of the run's J {config['J']}")
    return J


REPORT_AUDIO_J = report_audio_J()


def report_markdown(dataset):
    """The tables rendered as pages: J tables, data efficiency, and robustness / F0 accuracy / the
    data-efficiency curve / frugality when run."""
    extra = [p for p in robustness_outputs() + f0_outputs() + efficiency_outputs() + frugality_outputs()
             if p.endswith(".md") and p.startswith(f"results/tables/{dataset}/")]
    names = [f"J{J}" for J in config["J"]] + ["data_efficiency"] + ["f0_cost"] * bool(F0_TWINS)
    names += [Path(p).stem for p in extra]
    return [f"results/report/{dataset}/tables/{name}.html" for name in names]


def report_estimates(dataset):
    """method -> the estimates of its first seed for the excerpts the report plays."""
    return {m: f"results/estimates/{dataset}/{m}/seed{seeds_of(m)[0]}/J{REPORT_AUDIO_J}" for m in ENABLED}


def listen_pages(dataset):
    """One page per excerpt and voice: Snakemake shows an HTML item as a data URI, which Chromium caps at 2 MiB."""
    return expand("results/report/{dataset}/listen_J{J}_{n}_v{voice}.html", dataset=dataset, J=REPORT_AUDIO_J,
                  n=range(1, config["report_audio"]["excerpts"] + 1), voice=range(1, REPORT_AUDIO_J + 1))


def report_pages(dataset):
    return [
        f"results/report/{dataset}/claims.html",
        *report_markdown(dataset),
        *listen_pages(dataset),
        f"results/report/{dataset}/provenance.html",
    ]
