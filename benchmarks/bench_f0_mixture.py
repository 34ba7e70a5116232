"""Cost of F0 from the mixture: multi-F0 salience, then each voice assigner, on one recording.

    python benchmarks/bench_f0_mixture.py [--wav MIX.wav] [--seconds 20] [--threads 2]

Prints CPU seconds (all threads) and wall seconds per second of audio for the
salience (the baseline), for the ``pitch_sort`` and ``voas`` assigners, and the
assigners' cost as a ratio of the salience's. Default audio: a synthetic
four-voice chord progression (no data needed). The workflow's extra cost for
``f0_source: mixture`` is (sum over whole-song mixtures of their duration) x
(salience + assigner) per second; ``choirbench f0 --source mixture`` logs
the total it wrote.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def synthetic(seconds: float, sr: int = 22_050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    chords = [(392.0, 293.7, 246.9, 98.0), (440.0, 349.2, 261.6, 87.3), (392.0, 329.6, 261.6, 130.8)]
    x = np.zeros_like(t)
    for k, chord in enumerate(chords * int(np.ceil(seconds / 3))):
        on = (t >= k) & (t < k + 1)
        for f in chord:
            x += on * sum(np.sin(2 * np.pi * h * f * t) / h for h in range(1, 10) if h * f < sr / 2)
    return (0.2 * x / np.max(np.abs(x))).astype(np.float32)


def measure(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wav", help="recording to use (default: a synthetic chord progression)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from choirbench.data_prep import multif0
    from choirbench.data_prep.voice_assignment import _voas_fast, assign_voices

    torch.set_num_threads(args.threads)
    if args.wav:
        from choirbench.io import read_wav

        audio, sr = read_wav(args.wav, sr=None)
        audio = audio[: int(args.seconds * sr)]
    else:
        sr = 22_050
        audio = synthetic(args.seconds, sr)
    seconds = len(audio) / sr
    _voas_fast()  # building the network is a one-off per process, not per recording
    sal, wall, cpu = measure(lambda: multif0.salience(audio, sr))
    print(f"{seconds:.1f} s of audio, {args.threads} torch threads")
    print(f"salience      : {cpu / seconds:6.3f} CPU s / s   {wall / seconds:6.3f} wall s / s   (baseline)")
    for assigner in ("pitch_sort", "voas"):
        _, a_wall, a_cpu = measure(lambda: assign_voices(sal, "SATB", {"assigner": assigner}))
        print(f"{assigner:14s}: {a_cpu / seconds:6.3f} CPU s / s   {a_wall / seconds:6.3f} wall s / s   "
              f"= {a_cpu / cpu:.3f} x salience")


if __name__ == "__main__":
    main()
