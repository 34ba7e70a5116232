"""Evaluation speed: the metrics of one 4-s SATB excerpt, choirbench vs museval, one core.

    OMP_NUM_THREADS=1 python benchmarks/bench_evaluation.py [--repeats 5]

Prints seconds per excerpt for museval's BSS Eval v4 and for choirbench's
(the same values, checked here), SI-SDR, the magnitude metrics (spectral SNR,
spectral SI-SNR, MCD), the whole ``score_example`` (every metric of the long
table, SI-SDRi included), and its cost relative to BSS Eval + SI-SDR alone
(what evaluation computed before the magnitude metrics and SI-SDRi).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from choirbench.evaluation.evaluate import score_example  # noqa: E402
from choirbench.evaluation.metrics import bss_eval_v4, magnitude_metrics, si_sdr  # noqa: E402
from choirbench.evaluation.museval_ref import museval_metrics  # noqa: E402

SR = 16_000


def excerpt(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(4 * SR) / SR
    refs = np.stack([sum(np.sin(2 * np.pi * k * f * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)) * t) / k
                         for k in range(1, 15)) for f in (523.0, 392.0, 262.0, 131.0)])
    refs += 0.01 * rng.standard_normal(refs.shape)
    ests = 0.8 * refs + 0.15 * refs.sum(0) / 4 + 0.02 * rng.standard_normal(refs.shape)
    return refs, ests


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    refs, ests = excerpt()
    metrics = museval_metrics()
    t_ref, ref = timed(lambda: metrics.bss_eval(refs[..., None], ests[..., None], window=SR, hop=SR,
                                                compute_permutation=False, framewise_filters=False,
                                                bsseval_sources_version=False), args.repeats)
    t_ours, ours = timed(lambda: bss_eval_v4(refs, ests, SR, SR), args.repeats)
    t_si, _ = timed(lambda: si_sdr(refs, ests, SR, SR), args.repeats)
    magnitude_metrics(refs, ests, SR, SR)  # first call builds (and caches) the mel filterbank
    t_mag, _ = timed(lambda: magnitude_metrics(refs, ests, SR, SR), args.repeats)
    t_all, _ = timed(lambda: score_example(refs, ests, SR, refs.sum(0)), args.repeats)
    diff = max(float(np.nanmax(np.abs(np.asarray(r) - ours[m])))
               for r, m in zip(ref[:4], ("SDR", "ISR", "SIR", "SAR")))
    print(f"one 4-s SATB excerpt, 1 thread, median of {args.repeats}")
    print(f"  museval bss_eval v4        {t_ref:7.3f} s")
    print(f"  choirbench bss_eval_v4     {t_ours:7.3f} s   ({t_ref / t_ours:.1f}x faster)")
    print(f"  choirbench SI-SDR          {t_si:7.4f} s")
    print(f"  both metrics (choirbench)  {t_ours + t_si:7.3f} s   (goal <= 0.5 s)")
    print(f"  magnitude metrics          {t_mag:7.3f} s")
    print(f"  every metric (score_example) {t_all:5.3f} s   ({t_all / (t_ours + t_si):.2f}x BSS Eval + SI-SDR)")
    print(f"  max |difference| to museval: {diff:.2e} dB")


if __name__ == "__main__":
    main()
