"""The paper-size training step under two torch installs, side by side (issue 16).

    python benchmarks/torch_versions.py --python /venv-a/bin/python --python /venv-b/bin/python [--runs 3]

Each interpreter must have choirbench importable (``pip install -e .`` in its venv). The runs
alternate between the interpreters (A, B, A, B, ...) so that the machine's drift hits both alike;
every figure comes from a fresh process (`bench_sf.WORKER`). Prints, per torch version and
configuration, the median and range of seconds per step and of peak resident memory, and the
ratio of each version's median to the first one's.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sf import PAPER_CPU, run  # noqa: E402

# (label, precision, glibc mmap threshold in MB: 0 = glibc's own sliding threshold, micro-batch: 0 = whole)
CONFIGS = [("fp32", "fp32", 0, 0), ("bf16", "bf16", 0, 0), ("bf16+mmap16", "bf16", 16, 0),
           (f"paper.yaml: {PAPER_CPU[1]}+micro{PAPER_CPU[4]}", PAPER_CPU[1], PAPER_CPU[3], PAPER_CPU[4])]


def version(python: str) -> str:
    out = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def step(python: str, precision: str, mmap_mb: int, micro: int, threads: int, steps: int) -> dict:
    args = {"kind": "step", "config": "paper", "precision": precision, "supervised": False,
            "threads": threads, "steps": steps, "mmap_mb": mmap_mb, "micro": micro}
    return run(args, python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", required=True, help="an interpreter (give two or more)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--only", action="append", help="measure only the configuration with this label")
    opts = parser.parse_args()
    versions = [version(p) for p in opts.python]
    results: dict[tuple[str, str], list[dict]] = {}
    configs = [c for c in CONFIGS if not opts.only or c[0] in opts.only]
    for label, precision, mmap_mb, micro in configs:
        for i in range(opts.runs):
            for python, ver in zip(opts.python, versions):
                r = step(python, precision, mmap_mb, micro, opts.threads, opts.steps)
                results.setdefault((label, ver), []).append(r)
                print(f"  run {i + 1} {label:12s} torch {ver:12s} {r['s_per_step']:.2f} s/step "
                      f"{r['peak_gb']:.2f} GB", flush=True)
    print(f"\npaper step (batch 15 x J 4 x 4 s), {opts.threads} threads, {opts.runs} runs each, "
          f"median [min-max]; ratio = median / torch {versions[0]}'s")
    print("| config | torch | s/step | ratio | peak GB | ratio | meets 3 s / 2 GB |")
    print("|---|---|---|---|---|---|---|")
    for label, *_ in configs:
        base = results[(label, versions[0])]
        b_s = statistics.median(r["s_per_step"] for r in base)
        b_m = statistics.median(r["peak_gb"] for r in base)
        for ver in versions:
            rs = results[(label, ver)]
            s = [r["s_per_step"] for r in rs]
            m = [r["peak_gb"] for r in rs]
            meets = "yes" if statistics.median(s) <= 3 and statistics.median(m) <= 2 else "no"
            print(f"| {label} | {ver} | {statistics.median(s):.2f} [{min(s):.2f}-{max(s):.2f}] | "
                  f"{statistics.median(s) / b_s:.2f} | {statistics.median(m):.2f} [{min(m):.2f}-{max(m):.2f}] | "
                  f"{statistics.median(m) / b_m:.2f} | {meets} |")


if __name__ == "__main__":
    main()
