"""Speed and memory of the Late/Deep multi-F0 salience (choirbench.data_prep.multif0).

Measures, in one run on the same deterministic test signal (a 4-voice choir-like texture: harmonic
tones with vibrato changing notes every 0.4-1.2 s over a -60 dB noise floor, 16 kHz):

* real-time factor (wall seconds / audio seconds) and CPU seconds per audio second of ``salience()``
  with ``impl="fast"`` (channels last, FFT convolutions along frequency) over ``--seconds`` of audio;
* the same for the straightforward port (``impl="direct"``: conv2d on every layer) over the first
  ``--baseline-seconds`` (it is ~5x slower), and how far the two maps differ there (outputs unchanged:
  max |difference| and the share of frames whose peaks are identical);
* peak resident memory (VmHWM) of a fresh process computing the salience of ``--memory-minutes``
  of audio, beside that of a process that only imports and loads the model;
* with ``--against REV`` (a git revision, as ``bench_separate.py --baseline REV`` takes; or the path of
  another version of ``data_prep/multif0.py``): that version's time on the same
  ``--seconds`` of audio in the same run, the ratio, how far its map is from this one's (max
  |difference|, share of frames with identical peaks), and its peak memory.

Usage (2 cores, as the issue asks)::

    nice python benchmarks/bench_multif0.py --threads 2 --seconds 180 --baseline-seconds 20 --memory-minutes 10
    python benchmarks/bench_multif0.py --threads 2 --seconds 180 --baseline-seconds 0 --against 34dd30a

``--seconds 0`` measures memory only; ``--baseline-seconds 0`` skips the direct port.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16_000


def choir_signal(seconds: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Deterministic 4-voice texture: per voice random notes in its range, 8 partials, vibrato."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n, dtype=np.float64)
    for low, high in ((60, 79), (53, 72), (48, 67), (40, 60)):  # MIDI ranges S, A, T, B
        f0 = np.empty(n)
        i = 0
        while i < n:
            length = int(rng.uniform(0.4, 1.2) * sr)
            f0[i: i + length] = 440.0 * 2 ** ((rng.integers(low, high) - 69) / 12)
            i += length
        f0 *= 2 ** (0.3 / 12 * np.sin(2 * np.pi * rng.uniform(4.5, 6) * np.arange(n) / sr))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        for k in range(1, 9):
            out += np.sin(k * phase) / k * (k * f0 < sr / 2 - 200)
    out = 0.1 * out / np.max(np.abs(out)) + 1e-4 * rng.standard_normal(n)
    return out.astype(np.float32)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that across exec,
    so a child would report its parent's peak."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def revision_file(rev: str) -> str:
    """``data_prep/multif0.py`` of git revision ``rev``, written to a temporary file (its path)."""
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(["git", "-C", str(root), "show", f"{rev}:data_prep/multif0.py"], check=True,
                          capture_output=True, text=True).stdout
    out = Path(tempfile.mkdtemp()) / f"multif0_{rev}.py"
    out.write_text(text)
    return str(out)


def load_multif0(path: str | None):
    """This checkout's multif0, or the version in the file ``path`` (it imports only choirbench modules)."""
    if not path:
        from choirbench.data_prep import multif0
        return multif0
    spec = importlib.util.spec_from_file_location("choirbench.data_prep._multif0_against", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def memory_child(minutes: float, threads: int, compute: bool, path: str | None = None) -> dict:
    multif0 = load_multif0(path)
    multif0._model()
    audio = choir_signal(minutes * 60) if compute else None
    if compute:
        multif0.salience(audio, SR, threads=threads)
    return {"max_rss_mb": peak_rss_mb()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--memory-minutes", type=float, default=10.0, help="0: skip the memory measurement")
    parser.add_argument("--against", default=None, metavar="REV|FILE",
                        help="another version of multif0.py (git revision or file) to time and compare (same run)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.against and not Path(args.against).is_file():
        args.against = revision_file(args.against)
    if args.child is not None:  # memory probe in a fresh process
        minutes, compute, path = args.child.split(",", 2)
        print(json.dumps(memory_child(float(minutes), args.threads, compute == "1", path or None)))
        return 0

    import torch

    from choirbench.data_prep import multif0

    torch.set_num_threads(args.threads)
    multif0._model()
    if args.seconds > 0:
        audio = choir_signal(args.seconds)
        multif0.salience(audio[: SR * 2], SR, threads=args.threads)  # warm-up: librosa filters, allocator
        speed(args, multif0, audio)
        if args.against:
            against(args, multif0, audio)
    if args.memory_minutes > 0:
        runs = [(args.memory_minutes, "0", ""), (args.memory_minutes, "1", "")]
        if args.against:
            runs.append((args.memory_minutes, "1", args.against))
        for minutes, compute, path in runs:
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--child",
                                  f"{minutes},{compute},{path}"], capture_output=True, text=True, check=True)
            rss = json.loads(out.stdout.strip().splitlines()[-1])["max_rss_mb"]
            what = f"salience of {minutes:g} min" if compute == "1" else "import + model only"
            print(f"peak RSS (VmHWM), {what}{' (--against)' if path else ''}: {rss:.0f} MB", flush=True)
    return 0


def against(args, multif0, audio) -> None:
    """Time the --against version on the same audio, then this one again (the ratio of one run)."""
    other = load_multif0(args.against)
    other._model()
    other.salience(audio[: SR * 2], SR, threads=args.threads)  # warm-up, as for this version
    old, owall, ocpu = timed(lambda: other.salience(audio, SR, threads=args.threads))
    new, nwall, ncpu = timed(lambda: multif0.salience(audio, SR, threads=args.threads))
    for name, wall, cpu in (("against", owall, ocpu), ("this", nwall, ncpu)):
        print(f"{name:8s} {args.seconds:6.0f} s audio: wall {wall:7.1f} s  RTF {wall / args.seconds:.3f}  "
              f"CPU {cpu / args.seconds:.3f} s per audio s", flush=True)
    print(f"speed-up this vs against on the same audio: wall x{owall / nwall:.2f}, CPU x{ocpu / ncpu:.2f}")
    _, po = multif0.peaks(old)
    _, pn = multif0.peaks(new)
    same = np.mean([np.array_equal(a, b) for a, b in zip(po, pn)])
    print(f"outputs: max |this - against| = {np.abs(old.map - new.map).max():.2e}, "
          f"frames with identical peaks {same:.4f}", flush=True)


def speed(args, multif0, audio) -> None:
    fast, wall, cpu = timed(lambda: multif0.salience(audio, SR, threads=args.threads))
    print(f"fast     {args.seconds:6.0f} s audio: wall {wall:7.1f} s  RTF {wall / args.seconds:.3f}  "
          f"CPU {cpu / args.seconds:.3f} s per audio s  ({args.threads} threads)", flush=True)
    if args.baseline_seconds <= 0:
        return
    part = audio[: int(args.baseline_seconds * SR)]
    base, bwall, bcpu = timed(lambda: multif0.salience(part, SR, threads=args.threads, impl="direct"))
    again, fwall, fcpu = timed(lambda: multif0.salience(part, SR, threads=args.threads))
    print(f"direct   {args.baseline_seconds:6.0f} s audio: wall {bwall:7.1f} s  RTF {bwall / args.baseline_seconds:.3f}  "
          f"CPU {bcpu / args.baseline_seconds:.3f} s per audio s", flush=True)
    print(f"fast     {args.baseline_seconds:6.0f} s audio: wall {fwall:7.1f} s  RTF {fwall / args.baseline_seconds:.3f}  "
          f"CPU {fcpu / args.baseline_seconds:.3f} s per audio s", flush=True)
    print(f"speed-up fast vs direct on the same audio: wall x{bwall / fwall:.1f}, CPU x{bcpu / fcpu:.1f}")
    diff = np.abs(base.map - again.map)
    _, pb = multif0.peaks(base)
    _, pf = multif0.peaks(again)
    same = np.mean([np.array_equal(a, b) for a, b in zip(pb, pf)])
    print(f"outputs: max |fast - direct| = {diff.max():.2e}, frames with identical peaks {same:.4f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
