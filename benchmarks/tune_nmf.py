"""Choose nmf1's and nmf2's knobs on the validation split of the synthetic choir (not on any test data).

The defaults of both NMF baselines were once chosen on Bach10 instruments, including songs that
``config/bach10.yaml`` tests on. This script chooses them again on the *validation* split of
``synth-chorales`` (sung voices with vibrato), which no method is tested on, with a small grid:

* nmf1: harmonic band half-width (``harmonic_tolerance``, semitones) x Ewert & Mueller's flat onset
  templates (off, or active in [onset - 0.2 s, onset + 0.1 s]) x beta (1 = KL, 2 = squared error):
  4 x 2 x 2 = 16 settings.
* nmf2, in two stages (a full factorial would cost 3x more): (a) F0 band half-width
  (``f0_tolerance``, semitones) x number of filter shapes K (``n_filter_shapes``) at stopping
  tolerance 1e-2 (about the old fixed 30 iterations); (b) at the best (a) setting, smaller stopping
  tolerances (relative decrease of the IS divergence per iteration; at most ``iterations`` = 200).

Score: BSS Eval v4 SDR (choirbench.evaluation.metrics, museval's values) per voice over 1-s frames,
median over frames, then median over voices and excerpts per J; a setting's score is the mean over
the J values. Chosen per method: the cheapest setting (CPU time per excerpt) within ``MARGIN_DB``
(0.1 dB) of the best score. Written to ``--out`` (one row per setting; the chosen rows marked) and printed.

    python benchmarks/tune_nmf.py --data results/tuning/synth-valid --out results/tables/synth-chorales/nmf_tuning.csv

``--data`` is a prepared synth-chorales folder with a ``valid`` split (e.g. the default run's three
validation chorales: ``choirbench prepare --dataset synth-chorales --params P.json --out DIR`` with
``{"pieces_list": {"valid": ["bwv169.7", "bwv227.11", "bwv326"]}}``); the excerpt lists
``examples/J{J}_valid.csv`` are made when missing (seed 0, every voice voiced on >= 25 % of its frames,
``--max-examples`` per J). One thread; about 5 min CPU for 8 excerpts at J = 2 and 4 (BSS Eval is a third of it).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from choirbench import SAMPLE_RATE  # noqa: E402
from choirbench.data_prep.prepared import load_example, read_examples, write_examples  # noqa: E402
from choirbench.evaluation.metrics import bss_eval_v4  # noqa: E402
from choirbench.io import write_csv  # noqa: E402
from choirbench.registry import get  # noqa: E402

NMF1_GRID = {
    "harmonic_tolerance": [0.1, 0.25, 0.5, 1.0],
    "onset": [None, (0.2, 0.1)],      # None: no onset templates; else E&M's window (before_s, after_s)
    "beta": [1.0, 2.0],
}
NMF2_STAGE_A = {"f0_tolerance": [0.25, 0.5, 1.0], "n_filter_shapes": [4, 10]}
NMF2_STAGE_A_TOLERANCE = 1e-2
NMF2_STAGE_B = {"tolerance": [3e-3, 1e-3]}
NMF2_MAX_ITERATIONS = 200
MARGIN_DB = 0.1
"""Chosen: the cheapest setting (CPU time) whose score is within this of the best one's."""


def nmf1_settings() -> list[dict]:
    out = []
    for tol, onset, beta in itertools.product(*NMF1_GRID.values()):
        s = {"harmonic_tolerance": tol, "beta": beta, "onset_templates": onset is not None}
        if onset is not None:
            s.update(onset_before_s=onset[0], onset_after_s=onset[1])
        out.append(s)
    return out


def load_validation(root: Path, Js: list[int], max_examples: int) -> dict[int, list]:
    sets = {}
    for J in Js:
        path = root / "examples" / f"J{J}_valid.csv"
        if not path.is_file():
            write_examples(root, J, "valid", seed=0, min_voiced=0.25, max_examples=max_examples)
        rows = read_examples(path).head(max_examples)
        sets[J] = [load_example(root, row) for row in rows.itertuples()]
    return sets


def score(method_id: str, params: dict, sets: dict[int, list]) -> dict:
    """Median SDR per J, their mean, CPU seconds per excerpt and (nmf2) mean iterations."""
    method = get(method_id)(params)
    row: dict = {}
    cpu, iterations, per_j = 0.0, [], []
    n = 0
    for J, examples in sets.items():
        values = []
        for e in examples:
            start = time.process_time()
            if method_id == "nmf2":
                parts = method.decompose(e.mixture, SAMPLE_RATE, e.f0, e.notes)
                iterations.append(parts["iterations"])
                estimate = method.reconstruct(parts, len(e.mixture))
            else:
                estimate = method.separate(e.mixture, SAMPLE_RATE, e.f0, e.notes)
            cpu += time.process_time() - start
            n += 1
            sdr = bss_eval_v4(e.voices, estimate, SAMPLE_RATE, SAMPLE_RATE)["SDR"]
            with np.errstate(all="ignore"):
                values.extend(np.nanmedian(np.where(np.isfinite(sdr), sdr, np.nan), axis=1))
        row[f"sdr_J{J}"] = float(np.nanmedian(values))
        per_j.append(row[f"sdr_J{J}"])
    row["sdr"] = float(np.mean(per_j))
    row["cpu_s_per_excerpt"] = cpu / max(n, 1)
    if iterations:
        row["iterations_mean"] = float(np.mean(iterations))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared synth-chorales folder with a valid split")
    parser.add_argument("--out", type=Path, default=Path("results/tables/synth-chorales/nmf_tuning.csv"))
    parser.add_argument("--J", default="2,4", help="voice counts to score, comma-separated")
    parser.add_argument("--max-examples", type=int, default=8, help="validation excerpts per J")
    parser.add_argument("--methods", default="nmf1,nmf2")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    sets = load_validation(args.data, [int(j) for j in args.J.split(",")], args.max_examples)
    print("validation excerpts:", {J: len(v) for J, v in sets.items()}, "from", args.data)
    rows = []

    def run(method_id: str, stage: str, settings: list[dict], base: dict | None = None) -> dict:
        """Score every setting; returns the best one's full parameters."""
        best = None
        for s in settings:
            params = {**(base or {}), **s}
            result = {"method": method_id, "stage": stage, "params": repr(dict(sorted(params.items()))),
                      **score(method_id, params, sets)}
            rows.append(result)
            print(f"  {method_id} {stage} {result['params']}: SDR {result['sdr']:.2f} dB  "
                  + "  ".join(f"{k}={v:.2f}" for k, v in result.items() if k.startswith("sdr_J"))
                  + f"  cpu {result['cpu_s_per_excerpt']:.2f} s"
                  + (f"  iterations {result['iterations_mean']:.0f}" if "iterations_mean" in result else ""),
                  flush=True)
            if best is None or result["sdr"] > best[1]:
                best = (params, result["sdr"])
        return best[0]

    methods = args.methods.split(",")
    if "nmf1" in methods:
        run("nmf1", "grid", nmf1_settings())
    if "nmf2" in methods:
        stage_a = [dict(zip(NMF2_STAGE_A, v), tolerance=NMF2_STAGE_A_TOLERANCE, iterations=NMF2_MAX_ITERATIONS)
                   for v in itertools.product(*NMF2_STAGE_A.values())]
        best_a = run("nmf2", "a", stage_a)
        run("nmf2", "b", [{"tolerance": t} for t in NMF2_STAGE_B["tolerance"] if t != NMF2_STAGE_A_TOLERANCE],
            base=best_a)
    table = pd.DataFrame(rows)
    table["chosen"] = False
    for method_id, group in table.groupby("method"):
        near = group[group["sdr"] >= group["sdr"].max() - MARGIN_DB]
        pick = near["cpu_s_per_excerpt"].idxmin()
        table.loc[pick, "chosen"] = True
        print(f"{method_id} chosen: {table.loc[pick, 'params']}")
    write_csv(args.out, table.round(3))
    print(f"wrote {args.out}")
    print(table.round(2).to_markdown(index=False))


if __name__ == "__main__":
    main()
