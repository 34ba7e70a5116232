"""What the default run's extra test sets (config `test_sets`) cost, in wall-clock seconds.

The extra cost is: preparing each extra test set (for synth-chorales-nasal, rendering the 5 test
pieces) and, per test set, one separation and one scoring job per (method entry, seed, J), then its
tables, box plots and the gaps table. Inference does not depend on how long a model was trained, so
the trained entries here get checkpoints of the default size trained for 2 steps on a tiny
synthetic set (this step is not timed); the test sets, their knobs and every other method knob are
config/config.yaml's.

    python benchmarks/test_set_cost.py [--cores 2] [--work /tmp/test_set_cost]

Prints the seconds of each stage, the sum of the per-job seconds of the test-set rules (from their
Snakemake benchmark files) and the stages' share of the default run's 60-minute budget.
"""
from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 60 * 60
MAIN = "synth-tiny"


def measure_config() -> dict:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    from choirbench.registry import get

    config["datasets"][MAIN] = {"kind": "synth-chorales", "pieces": {"train": 2, "valid": 1, "test": 1},
                                "truncate_quarters": 32, "singers_per_part": 1, "preview": False, "seed": 0}
    config["dataset"] = MAIN
    methods = {}
    for name, entry in config["methods"].items():
        entry = copy.deepcopy(entry)
        if entry.get("f0_source") == "mixture":
            continue  # not run on extra test sets
        cls = get(entry["model"])
        if cls.trainable:  # checkpoint_from entries too: their training knobs must be their model's
            entry["data"] = "full"
            short = {"steps": 2, "valid_every": 1, "checkpoint_every": 1, "max_valid_examples": 1}
            entry["params"] = {**entry.get("params", {}), **{k: v for k, v in short.items() if k in cls.defaults}}
        methods[name] = entry
    config["methods"] = methods
    config["J"] = sorted({J for t in config["test_sets"] for J in (t.get("J", config["J"]) if isinstance(t, dict)
                                                                     else config["J"])})
    config["robustness"] = {"enabled": False}
    config["report"] = False
    return config


def snakemake(work: Path, cores: int, *targets: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), *targets], cwd=work,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"snakemake {' '.join(targets)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--work", default="/tmp/test_set_cost")
    parser.add_argument("--reuse", action="store_true", help="keep --work's trained models (untimed part)")
    args = parser.parse_args()
    work = Path(args.work)
    if not args.reuse:
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(work / "workflow", ignore_errors=True)
    (work / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", work)
    shutil.copytree(ROOT / "workflow", work / "workflow")
    config = measure_config()
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    names = [t["dataset"] if isinstance(t, dict) else t for t in config["test_sets"]]

    # untimed: the main side (checkpoints, main metrics the gaps table reads)
    from choirbench.registry import get
    main_tables = [f"results/metrics/{MAIN}/{m}/seed{s}/J{J}.parquet" for m, e in config["methods"].items()
                   for s in (config["seeds"] if get(e["model"]).trainable else config["seeds"][:1])
                   for J in config["J"]]
    snakemake(work, args.cores, *main_tables)
    stages = {}
    stages["prepare " + ", ".join(names)] = snakemake(
        work, args.cores, *[f"results/data/{n}/manifest.csv" for n in names])
    stages["separate + evaluate + tables"] = snakemake(work, args.cores, "test_sets")
    jobs = sorted((work / "results" / "benchmarks" / "testsets").rglob("*.tsv"))
    per_job = pd.concat([pd.read_csv(p, sep="\t").assign(kind=p.stem.split("_")[-1]) for p in jobs])
    total = sum(stages.values())
    print(f"extra test sets of config/config.yaml ({', '.join(names)}), {args.cores} cores:")
    for stage, seconds in stages.items():
        print(f"  {stage}: {seconds:.0f} s wall")
    for kind, group in per_job.groupby("kind"):
        print(f"  {kind} jobs: {len(group)}, {group['s'].sum():.0f} s summed, {group['s'].median():.1f} s median")
    print(f"  total {total:.0f} s wall = {total / BUDGET_S:.1%} of the default run's 60-min budget")


if __name__ == "__main__":
    main()
