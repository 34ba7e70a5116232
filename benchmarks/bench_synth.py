"""Speed and realism of the synth-chorales singing synthesiser.

    python benchmarks/bench_synth.py            # per-voice speed + realism on one chorale (~1 min)
    python benchmarks/bench_synth.py --full     # also: build the default dataset with 2 workers (minutes)

Prints absolute figures and ratios against a baseline measured in the same run
(a vectorised 40-harmonic oscillator bank on the same F0 track: the cheapest
possible voice, and the signal model the synthesiser must not be).
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from choirbench import HOP, SAMPLE_RATE  # noqa: E402
from choirbench.data_prep import synth_chorales as synth  # noqa: E402
from choirbench.params import resolve_params  # noqa: E402

MELODY = [0, 2, 4, 5, 7, 5, 4, 2, 0, 4, 7, 12, 7, 4, 2, 0]
TONIC = {"S": 67, "A": 60, "T": 55, "B": 43}


def oscillator_bank(f0_frames: np.ndarray, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    f0 = np.interp(t, np.arange(len(f0_frames)) * HOP / SAMPLE_RATE, f0_frames)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    out = np.zeros(n)
    for h in range(1, 41):
        out += np.where(h * f0 < 7500, np.sin(h * phase) / h, 0.0)
    return out


def speed(oversample: int, repeats: int = 2) -> None:
    synth.sing_phrase("S", [67], [1], oversample=oversample)   # warm caches (tables, filters)
    for part in "SATB":
        melody = [TONIC[part] + k for k in MELODY] * 2
        best_cpu, audio, f0 = np.inf, None, None
        for _ in range(repeats):
            start = time.process_time()
            audio, f0, _, _ = synth.sing_phrase(part, melody, [1.0] * len(melody), vowels="aeiou" * 7,
                                                oversample=oversample, seed=1)
            best_cpu = min(best_cpu, time.process_time() - start)
        start = time.process_time()
        oscillator_bank(f0, len(audio))
        bank_cpu = time.process_time() - start
        dur = len(audio) / SAMPLE_RATE
        print(f"  oversample {oversample} part {part}: {dur:5.1f} s of voice in {best_cpu:5.2f} s CPU = "
              f"{dur / best_cpu:6.1f}x real time per core  (oscillator bank {dur / bank_cpu:6.1f}x; "
              f"synth costs {best_cpu / bank_cpu:4.1f}x the bank)")


def realism(root: Path, label: str) -> None:
    import librosa

    from choirbench.data_prep.prepared import read_manifest
    from choirbench.io import read_f0, read_wav
    ranges = {"S": (200, 1100), "A": (140, 800), "T": (90, 600), "B": (60, 400)}
    manifest = read_manifest(root)
    song = sorted(manifest["song"].unique())[0]
    rows = manifest[(manifest["song"] == song) & (manifest["singer"] == "1")]
    for row in rows.itertuples():
        audio, _ = read_wav(root / row.audio)
        truth = read_f0(root / row.f0)
        est, voiced, _ = librosa.pyin(audio, fmin=ranges[row.part][0], fmax=ranges[row.part][1], sr=SAMPLE_RATE,
                                      frame_length=1024, hop_length=HOP)
        n = min(len(est), len(truth))
        est, voiced, truth = est[:n], voiced[:n], truth[:n]
        both = voiced & (truth > 0)
        cents = 1200 * np.abs(np.log2(est[both] / truth[both]))
        print(f"  {song} {row.part}1 ({len(audio) / SAMPLE_RATE:.0f} s, {label}): pYIN within 25 cents on "
              f"{np.mean(cents < 25):.3f} of frames both voiced; V/UV agreement {np.mean(voiced == (truth > 0)):.3f}")


def build(params: dict, label: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    start = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    synth.prepare(out, params)
    wall = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (children.ru_utime - cpu_before.ru_utime + children.ru_stime - cpu_before.ru_stime
           + own.ru_utime - self_before.ru_utime + own.ru_stime - self_before.ru_stime)
    import pandas as pd
    manifest = pd.read_csv(out / "manifest.csv")
    audio_s = manifest["duration_s"].sum()
    songs = manifest.groupby("song")["duration_s"].first()
    print(f"  {label}: {len(songs)} pieces ({songs.sum() / 60:.1f} min of music, {audio_s / 3600:.2f} h of stems) "
          f"in {wall:.0f} s wall, {cpu:.0f} s CPU with {params['workers']} workers "
          f"({audio_s / cpu:.0f}x real time per core); load average now {os.getloadavg()[0]:.1f}")
    for split in ("train", "valid", "test"):
        sel = manifest[manifest["split"] == split].groupby("song")["duration_s"].first()
        if len(songs) > 1:
            print(f"    {split}: {len(sel)} pieces, {sel.sum() / 60:.1f} min per singer combination")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="build the default dataset (takes minutes)")
    args = parser.parse_args()
    print(f"synth-chorales benchmark (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print("one voice, single thread:")
    for oversample in (4, 8):
        speed(oversample)
    print("one chorale, 4 singers per part, defaults otherwise:")
    one = resolve_params(synth.DEFAULTS, {"pieces_list": {"test": ["bwv26.6"]}, "workers": 1}, "bench")
    realism(build(one, "bwv26.6, room on"), "room on")
    realism(build({**one, "room": False, "singers_per_part": 1, "preview": False}, "bwv26.6, dry"), "dry")
    if args.full:
        print("default dataset:")
        build(resolve_params(synth.DEFAULTS, {}, "bench"), "defaults")


if __name__ == "__main__":
    main()
