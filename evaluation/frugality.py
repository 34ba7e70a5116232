"""What each method entry costs: parameters, training data, time, memory and an energy estimate.

The raw timings are the Snakemake benchmark files every computing rule writes
(``results/benchmarks/{train,separate}/...tsv``; columns ``s`` wall-clock seconds, ``cpu_time``
CPU seconds of the job's processes, ``max_rss`` peak resident memory in MB).

Per entry: training sums over every model the entry trains (seeds x the J of its models) and
also gives the mean per model; an entry with ``checkpoint_from`` trains nothing (its training is
its source's row). Separation: the real-time factor is the summed wall time of the separation jobs
over the seconds of test audio they separated (excerpts x excerpt length); the wall time includes
each job's start-up (importing torch, loading the model), so short test lists overstate it.

Energy (an estimate, not a measurement), after the Green Algorithms model (Lannelongue, Grealey
and Inouye, "Green Algorithms: quantifying the carbon footprint of computation", Adv. Sci. 2021):
``E = (CPU-seconds x W per core + peak RSS in GB x wall seconds x W per GB) x PUE``, with the
tool's defaults of 12 W per core for an unspecified CPU and 0.3725 W per GB of memory; peak RSS
stands in for the memory reserved (a lower bound), PUE is 1 for a desktop machine.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from choirbench import ChoirbenchError
from choirbench.data_prep.prepared import read_examples, read_manifest
from choirbench.evaluation.efficiency import training_song_minutes
from choirbench.evaluation.tables import to_markdown
from choirbench.io import write_csv, write_text

ENERGY_DEFAULTS = {"watts_per_core": 12.0, "watts_per_gb": 0.3725, "pue": 1.0}
COLUMNS = ["entry", "model", "trained_by", "parameters", "models_trained", "train_audio_min",
           "train_wall_min", "train_wall_min_per_model", "train_cpu_min", "train_cpu_min_per_model",
           "train_peak_rss_mb", "train_energy_wh", "separated_audio_min", "separate_wall_s", "separate_cpu_s",
           "separate_rtf", "separate_peak_rss_mb", "separate_energy_wh"]


def read_benchmark(path: Path) -> dict:
    """Wall seconds, CPU seconds and peak RSS (MB) of one Snakemake benchmark file (first repeat)."""
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: benchmark file not found")
    try:
        frame = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ChoirbenchError(f"{path}: not a Snakemake benchmark file ({err})") from None
    missing = {"s", "cpu_time", "max_rss"} - set(frame.columns)
    if missing or frame.empty:
        raise ChoirbenchError(f"{path}: not a Snakemake benchmark file (no rows or no column "
                              f"{', '.join(sorted(missing)) or 's'})")
    row = frame.iloc[0]
    value = {k: pd.to_numeric(row[c], errors="coerce") for k, c in
             (("wall_s", "s"), ("cpu_s", "cpu_time"), ("rss_mb", "max_rss"))}
    if not value["wall_s"] >= 0:
        raise ChoirbenchError(f"{path}: column 's' is {row['s']!r}, not a number of seconds")
    return {k: float(v) for k, v in value.items()}


def energy_wh(bench: dict, energy: dict) -> float:
    """Green Algorithms energy of one job in watt-hours (see the module docstring); a job whose CPU
    time or RSS was not measured (NaN) counts as its wall time on one core and no memory."""
    cpu_s = bench["cpu_s"] if math.isfinite(bench["cpu_s"]) else bench["wall_s"]
    rss_gb = bench["rss_mb"] / 1024 if math.isfinite(bench["rss_mb"]) else 0.0
    joules = (cpu_s * energy["watts_per_core"] + rss_gb * bench["wall_s"] * energy["watts_per_gb"]) * energy["pue"]
    return joules / 3600.0


def count_parameters(entry_json: Path, checkpoint: Path) -> int:
    """Learnable parameters of a trained model: the entry's method with the checkpoint loaded."""
    from choirbench.harness import load_method, read_entry  # here: the harness imports torch

    method = load_method(read_entry(Path(entry_json)), Path(checkpoint))
    module = getattr(method, "model", None)
    if module is None or not hasattr(module, "parameters"):
        raise ChoirbenchError(f"{checkpoint}: the {method.name} method holds no torch model to count")
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def _max(values) -> float:
    values = [v for v in values if math.isfinite(v)]
    return max(values) if values else math.nan


def frugality_table(spec: dict, data_root: Path, parameters: dict | None = None) -> pd.DataFrame:
    """One row per entry (:data:`COLUMNS`).

    ``spec``: ``{"excerpt_s", "energy": {...ENERGY_DEFAULTS}, "entries": {name: {"model", "trained_by",
    "config" (the training entry's JSON), "trainings": [{"seed", "J", "model", "benchmark"}],
    "separations": [{"seed", "J", "benchmark", "examples"}]}}}``. ``parameters``: trained_by ->
    parameter count, to skip loading the checkpoints (tests); else counted from the first model per J.
    """
    from choirbench.harness import read_entry, training_songs  # here: the harness imports torch

    energy = {**ENERGY_DEFAULTS, **(spec.get("energy") or {})}
    manifest = read_manifest(Path(data_root))
    minutes = None  # read when an entry trains: a test-only dataset (untrained methods) has no training songs
    counts = dict(parameters or {})
    rows = []
    for name, item in spec["entries"].items():
        row = {"entry": name, "model": item["model"], "trained_by": item.get("trained_by") or ""}
        trains = row["trained_by"] == name
        if row["trained_by"]:
            if row["trained_by"] not in counts:
                per_J = {}
                for t in item["trainings"]:
                    per_J.setdefault(t["J"], t["model"])
                found = {count_parameters(item["config"], path) for path in per_J.values()}
                counts[row["trained_by"]] = max(found) if found else math.nan
            row["parameters"] = counts[row["trained_by"]]
        else:
            row["parameters"] = 0
        if trains:
            minutes = training_song_minutes(manifest) if minutes is None else minutes
            songs = training_songs(Path(data_root), read_entry(Path(item["config"])))
            row["train_audio_min"] = float(minutes.sum() if songs is None else minutes[songs].sum())
            benches = [read_benchmark(t["benchmark"]) for t in item["trainings"]]
            n = len(benches)
            wall = sum(b["wall_s"] for b in benches) / 60
            cpu = sum(b["cpu_s"] for b in benches if math.isfinite(b["cpu_s"])) / 60
            row.update(models_trained=n, train_wall_min=wall, train_cpu_min=cpu,
                       train_wall_min_per_model=wall / n if n else math.nan,
                       train_cpu_min_per_model=cpu / n if n else math.nan,
                       train_peak_rss_mb=_max(b["rss_mb"] for b in benches),
                       train_energy_wh=sum(energy_wh(b, energy) for b in benches))
        elif not row["trained_by"]:
            row.update(models_trained=0, train_audio_min=0.0, train_wall_min=0.0, train_cpu_min=0.0,
                       train_energy_wh=0.0)
        audio_s = wall_s = cpu_s = 0.0
        seps = []
        for s in item["separations"]:
            b = read_benchmark(s["benchmark"])
            seps.append(b)
            audio_s += len(read_examples(Path(s["examples"]))) * float(spec["excerpt_s"])
            wall_s += b["wall_s"]
            cpu_s += b["cpu_s"] if math.isfinite(b["cpu_s"]) else 0.0
        row.update(separated_audio_min=audio_s / 60, separate_wall_s=wall_s, separate_cpu_s=cpu_s,
                   separate_rtf=wall_s / audio_s if audio_s > 0 else math.nan,
                   separate_peak_rss_mb=_max(b["rss_mb"] for b in seps),
                   separate_energy_wh=sum(energy_wh(b, energy) for b in seps))
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _num(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def frugality_markdown(frame: pd.DataFrame, energy: dict) -> str:
    energy = {**ENERGY_DEFAULTS, **(energy or {})}
    shown = pd.DataFrame({
        "entry": frame["entry"],
        "parameters": [_num(int(v), 0) if np.isfinite(v) else "—" for v in frame["parameters"].astype(float)],
        "training audio (min)": [_num(v, 1) for v in frame["train_audio_min"]],
        "models": [_num(v, 0) if np.isfinite(v) else "—" for v in frame["models_trained"].astype(float)],
        "training wall (min, total / per model)": [
            "—" if not np.isfinite(t) else f"{t:.1f} / {p:.1f}" if np.isfinite(p) else f"{t:.1f}"
            for t, p in zip(frame["train_wall_min"].astype(float), frame["train_wall_min_per_model"].astype(float))],
        "training CPU (min, total / per model)": [
            "—" if not np.isfinite(t) else f"{t:.1f} / {p:.1f}" if np.isfinite(p) else f"{t:.1f}"
            for t, p in zip(frame["train_cpu_min"].astype(float), frame["train_cpu_min_per_model"].astype(float))],
        "training peak RSS (MB)": [_num(v, 0) for v in frame["train_peak_rss_mb"].astype(float)],
        "training energy (Wh)": [_num(v, 2) for v in frame["train_energy_wh"].astype(float)],
        "separation RTF": [_num(v, 3) for v in frame["separate_rtf"].astype(float)],
        "separation peak RSS (MB)": [_num(v, 0) for v in frame["separate_peak_rss_mb"].astype(float)],
        "separation energy (Wh)": [_num(v, 3) for v in frame["separate_energy_wh"].astype(float)],
    })
    reused = [f"`{e}` uses the models of `{t}`" for e, t in zip(frame["entry"], frame["trained_by"]) if t and t != e]
    head = ("Frugality per method entry: learnable parameters per trained model, the training audio, the "
            "training cost summed over every model the entry trains (seeds x J models) and per model, peak memory "
            "(the largest peak RSS of any one job), the separation real-time factor (wall time of the separation "
            "jobs, start-up included, over the seconds of test audio separated) and an energy estimate: "
            f"(CPU-seconds x {energy['watts_per_core']:g} W per core + peak RSS (GB) x wall seconds x "
            f"{energy['watts_per_gb']:g} W per GB) x PUE {energy['pue']:g}, the Green Algorithms model and its "
            "defaults for an unspecified CPU (Lannelongue et al., Adv. Sci. 2021); an estimate, not a measurement. "
            "Timings from the Snakemake benchmark files (results/benchmarks/).\n\n")
    tail = ("\n" + "; ".join(reused) + " (its training is in that row).\n") if reused else ""
    return head + to_markdown(shown) + tail


def write_frugality(spec_json: str, data_root: Path, out_dir: Path) -> list[Path]:
    """frugality.{csv,md} under ``out_dir`` from the workflow's JSON spec (see :func:`frugality_table`)."""
    try:
        spec = json.loads(spec_json)
    except json.JSONDecodeError as err:
        raise ChoirbenchError(f"--spec: not valid JSON ({err})") from None
    frame = frugality_table(spec, Path(data_root))
    out_dir = Path(out_dir)
    write_csv(out_dir / "frugality.csv", frame)
    write_text(out_dir / "frugality.md", frugality_markdown(frame, spec.get("energy")))
    return [out_dir / "frugality.csv", out_dir / "frugality.md"]
