"""Speed and quality of the two NMF baselines on 4-s SATB excerpts, one CPU core.

Speed: median wall and process (CPU) time of ``separate`` on one 4-s SATB excerpt (after one warm-up
call), next to the ``oracle`` bound (STFT, masks, iSTFT) measured in the same run. Quality (when ../shared/data/bach10 is present):
plain SDR 10 log10(|s|^2 / |s - s_hat|^2) per voice over each 4-s excerpt, median over voices and
excerpts, against the ``mixture`` bound (mixture / J) and the ``oracle`` ratio mask.

    OMP_NUM_THREADS=1 python benchmarks/bench_nmf.py [--excerpts-per-song 3] [--set nmf2.n_fft=1024 ...]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from choirbench import HOP, SAMPLE_RATE  # noqa: E402
from choirbench.registry import get  # noqa: E402

BACH10 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bach10"
STEMS = ("violin", "clarinet", "saxphone", "bassoon")  # S, A, T, B (GTF0s rows in this order)


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    error = np.sum((reference - estimate) ** 2)
    return float(10 * np.log10(np.sum(reference ** 2) / max(error, 1e-20)))


def bach10_excerpt(song_dir: Path, start_s: float, seconds: float = 4.0):
    """Stems [4, N] at 16 kHz (mixture peak-normalised) and F0 [4, N // 256] in Hz from the GTF0s."""
    import librosa
    import scipy.io
    import soundfile

    stems = []
    for stem in STEMS:
        audio, sr = soundfile.read(song_dir / f"{song_dir.name}-{stem}.wav", dtype="float32",
                                   start=int(start_s * 44100), frames=int((seconds + 0.1) * 44100))
        stems.append(librosa.resample(audio, orig_sr=sr, target_sr=SAMPLE_RATE)[: int(seconds * SAMPLE_RATE)])
    stems = np.stack(stems)
    stems /= np.abs(stems.sum(axis=0)).max()
    midi = scipy.io.loadmat(song_dir / f"{song_dir.name}-GTF0s.mat")["GTF0s"]  # 10 ms hop, first centre 23 ms
    times = start_s + np.arange(stems.shape[1] // HOP) * HOP / SAMPLE_RATE
    index = np.clip(np.rint((times - 0.023) / 0.010).astype(int), 0, midi.shape[1] - 1)
    m = midi[:, index]
    f0 = np.where(m > 0, 440.0 * 2.0 ** ((m - 69.0) / 12.0), 0.0)
    return stems, f0


def synthetic_satb(seed: int = 0):
    """Four harmonic voices with vibrato and note changes, when Bach10 is not there."""
    rng = np.random.default_rng(seed)
    n = 4 * SAMPLE_RATE
    t_frames = np.arange(n // HOP) * HOP / SAMPLE_RATE
    f0 = np.zeros((4, n // HOP))
    stems = np.zeros((4, n))
    for j, base in enumerate((72, 65, 60, 48)):
        midi = base + np.where(t_frames < 2.0, 0, rng.integers(-3, 4))
        f0[j] = 440 * 2 ** ((midi - 69) / 12) * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t_frames))
        f = np.interp(np.arange(n), np.arange(n // HOP) * HOP, f0[j])
        phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
        for k in range(1, 40):
            stems[j] += (k * f < 7900) * np.sin(k * phase + rng.uniform(0, 6.3)) / k
    stems /= np.abs(stems.sum(axis=0)).max()
    return stems.astype(np.float32), f0


def parse_sets(items):
    out: dict[str, dict] = {}
    for item in items or []:
        key, value = item.split("=", 1)
        method, knob = key.split(".", 1)
        out.setdefault(method, {})[knob] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--excerpts-per-song", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default="nmf1,nmf2")
    parser.add_argument("--set", nargs="*", help="method.knob=value overrides, e.g. nmf2.n_fft=1024")
    args = parser.parse_args()
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    overrides = parse_sets(args.set)
    names = args.methods.split(",")
    methods = {name: get(name)(overrides.get(name, {})) for name in names + ["mixture", "oracle"]}
    timed = ["oracle"] + names
    if "nmf1" in names:  # the scikit-learn solver, for the choice of solver (speed only)
        methods["nmf1/skl"] = get("nmf1")({**overrides.get("nmf1", {}), "solver": "sklearn"})
        timed.append("nmf1/skl")

    have_bach10 = BACH10.is_dir()
    stems, f0 = bach10_excerpt(sorted(BACH10.glob("[0-9]*"))[0], 4.0) if have_bach10 else synthetic_satb()
    mixture = stems.sum(axis=0).astype(np.float32)
    print(f"speed: one 4-s SATB excerpt ({'Bach10' if have_bach10 else 'synthetic'}), 1 thread, "
          f"median of {args.repeats} after a warm-up"
          " (cpu = process time: the one-core cost even when the machine is shared)")
    base_time = None
    for name in timed:
        extra = {"references": stems} if name == "oracle" else {}
        methods[name].separate(mixture, SAMPLE_RATE, f0, **extra)
        walls, cpus = [], []
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            methods[name].separate(mixture, SAMPLE_RATE, f0, **extra)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        wall, cpu = float(np.median(walls)), float(np.median(cpus))
        base_time = base_time or cpu
        print(f"  {name:8s} wall {wall:6.3f} s  cpu {cpu:6.3f} s  ({cpu / base_time:6.1f} x the oracle's "
              f"STFT + masks + iSTFT)")

    import soundfile

    if not have_bach10:
        print("quality: ../shared/data/bach10 not found, skipped")
        return
    scores: dict[str, list[float]] = {name: [] for name in ["mixture", "oracle"] + names}
    for song_dir in sorted(BACH10.glob("[0-9]*")):
        duration = soundfile.info(song_dir / f"{song_dir.name}-violin.wav").duration
        starts = np.linspace(2.0, duration - 5.0, args.excerpts_per_song)
        for start in starts:
            stems, f0 = bach10_excerpt(song_dir, float(start))
            mixture = stems.sum(axis=0).astype(np.float32)
            for name in scores:
                extra = {"references": stems} if name == "oracle" else {}
                estimate = methods[name].separate(mixture, SAMPLE_RATE, f0, **extra)
                scores[name].extend(sdr(stems[j], estimate[j]) for j in range(len(stems)))
    print(f"quality: Bach10, {args.excerpts_per_song} excerpts of 4 s per song, plain SDR (dB) per voice")
    for name, values in scores.items():
        v = np.asarray(values).reshape(-1, 4)
        per_voice = "  ".join(f"{p}={np.median(v[:, i]):5.2f}" for i, p in enumerate("SATB"))
        print(f"  {name:8s} median {np.median(v):6.2f}  (vs mixture {np.median(v) - np.median(scores['mixture']):+6.2f})"
              f"   {per_voice}")


if __name__ == "__main__":
    main()
