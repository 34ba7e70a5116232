"""Long recordings and batched separation (issue 13 item 5).

1. Peak memory (max RSS of the process, via ``resource.getrusage`` of a child) of ``choirbench separate``
   on a synthetic SATB mixture with a known F0 (``--f0``), for mixture, nmf1, nmf2, unet and sf (the
   trained methods with a checkpoint trained here for 2 steps on a tiny dataset; the oracle needs the true
   voices and cannot separate a recording): whole-file processing (``--block-s`` longer than the input,
   i.e. the code path before blocking) against blocks (each method's default block and overlap).
   Whole-file memory grows with the input (it is about 10 GB for sf on 10 minutes, more than this machine
   can spare), so it is measured on ``--whole-s`` recordings and extrapolated to the long one linearly from
   two lengths; blocks are measured on the long one itself. ``--nmf-iterations`` caps the NMFs' iterations
   (memory does not depend on it; time does).
2. Speed: the CPU-default sf (untrained weights: speed does not depend on them) on 4-s SATB excerpts
   with 2 threads, excerpt by excerpt (the loop ``separate-set`` ran before) against
   :meth:`Method.separate_batch` in batches of ``--batch``, both with the parameters export
   ``separate-set`` writes; and the paper-size sf on one thread. ``--baseline REV`` measures the same
   in a child process on the code of git revision REV (e.g. the commit before a speed-up), on the
   same excerpts in the same run, and prints the ratios and the largest |difference| between the
   voices the two versions separate.

Usage (prints two tables)::

    nice python benchmarks/bench_separate.py --long-s 600 --whole-s 30 60
    nice python benchmarks/bench_separate.py --skip-memory --baseline 34dd30a
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from choirbench import HOP, SAMPLE_RATE

METHODS = ("mixture", "nmf1", "nmf2", "unet", "sf")
TINY = {"sf": {"encoder_hidden": 16, "embedding": 16, "decoder_hidden": 16, "steps": 2, "batch_size": 2,
               "valid_every": 1, "checkpoint_every": 1, "excerpt_s": 1.0, "max_valid_examples": 1,
               "device": "cpu"},
        "unet": {"steps": 2, "batch_size": 2, "valid_every": 1, "checkpoint_every": 1, "max_valid_examples": 1,
                 "device": "cpu"}}


def write_recording(folder: Path, seconds: float) -> tuple[Path, Path]:
    """A SATB mixture of harmonic voices with vibrato and notes changing every 1.4 s, and its F0 CSV."""
    from choirbench.io import write_wav

    n = int(seconds * SAMPLE_RATE)
    frames = np.arange(n // HOP)
    f0 = np.stack([np.full(len(frames), f) * 2 ** (2 / 12 * ((frames // 90 + j) % 3 == 0))
                   * (1 + 0.012 * np.sin(2 * np.pi * 5.5 * frames * HOP / SAMPLE_RATE + j))
                   for j, f in enumerate([523.0, 349.0, 262.0, 131.0])])
    x = np.zeros(n, np.float32)
    for track in f0:  # block by block: the benchmark itself must not need gigabytes
        for a in range(0, n, 60 * SAMPLE_RATE):
            b = min(n, a + 60 * SAMPLE_RATE)
            per_sample = np.repeat(track, HOP)[a:b]
            phase = 2 * np.pi * np.cumsum(np.r_[np.repeat(track, HOP)[:a].sum() if a else 0.0, per_sample])[1:]
            x[a:b] += sum(0.1 / h * np.sin(h * phase / SAMPLE_RATE) for h in range(1, 8)).astype(np.float32)
    mix = folder / f"mix_{seconds:g}s.wav"
    write_wav(mix, x / np.abs(x).max() * 0.9, SAMPLE_RATE)
    table = folder / f"f0_{seconds:g}s.csv"
    with open(table, "w") as fh:
        fh.write("time_s,S,A,T,B\n")
        for i in range(f0.shape[1]):
            fh.write(f"{i * HOP / SAMPLE_RATE:.4f}," + ",".join(f"{v:.3f}" for v in f0[:, i]) + "\n")
    return mix, table


def train_tiny(folder: Path) -> dict[str, Path]:
    """Checkpoints of sf and unet trained 2 steps on a tiny prepared dataset (memory and speed only)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import make_tiny_dataset

    from choirbench.data_prep.prepared import make_examples
    from choirbench.io import write_csv
    from choirbench import harness

    data = make_tiny_dataset(folder / "data", seconds=4.0)
    valid = folder / "valid.csv"
    write_csv(valid, make_examples(data, 4, "valid", seed=0, skip_first=False, excerpt_s=1.0, max_examples=1))
    out = {}
    for name, params in TINY.items():
        entry = folder / f"{name}.json"
        entry.write_text(json.dumps({"id": f"{name}-tiny", "model": name, "excerpt_s": 1.0, "params": params}))
        out[name] = harness.train(data, harness.read_entry(entry), 0, folder / f"run_{name}", valid)
        out[f"{name}_entry"] = entry
    return out


def peak_rss_mb(args: list[str], command: str = "separate") -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one ``choirbench COMMAND ARGS`` run in a fresh child process."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "choirbench.cli", command, *args],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def method_args(name: str, folder: Path, ckpt: dict, threads: int, nmf_iterations: int) -> list[str]:
    """The ``choirbench separate`` options that pick method ``name`` (a tiny checkpoint for sf and unet)."""
    base = ["--out", str(folder / f"out_{name}"), "--threads", str(threads)]
    if name in ckpt:
        return base + ["--method-config", str(ckpt[f"{name}_entry"]), "--checkpoint", str(ckpt[name])]
    base += ["--method", name]
    if name.startswith("nmf"):
        base += ["--params", json.dumps({"iterations": nmf_iterations})]
    return base


def mixture_f0_table(folder: Path, lengths: list[float], methods: list[str], threads: int,
                     nmf_iterations: int) -> None:
    """Peak RSS of the F0 step alone and of separation with the F0 estimated first (no ``--f0``).

    ``choirbench f0 MIX.wav --voices SATB --out f0.csv`` (issue 11: <= 1 GB for 10 minutes) and
    ``choirbench separate MIX.wav --method M --out DIR`` without ``--f0`` (issue 13: <= 1.5 GB), each
    in a fresh process, on the SATB recording of :func:`write_recording` of each length.
    """
    ckpt = train_tiny(folder) if {"unet", "sf"} & set(methods) else {}
    recordings = {s: write_recording(folder, s)[0] for s in lengths}
    heads = [f"{format(s / 60, 'g')} min" for s in lengths]
    print(f"\npeak RSS (MB) with the F0 estimated from the mixture (multi-F0 salience + pitch_sort), "
          f"{threads} threads; wall seconds in brackets")
    print(f"{'command':26s} " + " ".join(f"{h:>16s}" for h in heads))
    rows = [("f0", None)] + [("separate", name) for name in methods]
    for command, name in rows:
        cells = []
        for s in lengths:
            if command == "f0":
                args = [str(recordings[s]), "--voices", "SATB", "--out", str(folder / "f0_est.csv"),
                        "--threads", str(threads)]
            else:
                args = [str(recordings[s]), *method_args(name, folder, ckpt, threads, nmf_iterations)]
            rss, seconds = peak_rss_mb(args, command)
            cells.append(f"{rss:7.0f} ({seconds:5.0f})")
        label = "f0" if command == "f0" else f"separate {name} (no --f0)"
        print(f"{label:26s} " + " ".join(f"{c:>16s}" for c in cells), flush=True)


def memory_table(folder: Path, long_s: float, whole_s: list[float], methods: list[str], threads: int,
                 nmf_iterations: int) -> None:
    ckpt = train_tiny(folder) if {"unet", "sf"} & set(methods) else {}
    recordings = {s: write_recording(folder, s) for s in sorted(set(whole_s) | {long_s})}
    print(f"\npeak RSS (MB) of `choirbench separate --f0`, {threads} threads; whole file at "
          f"{', '.join(f'{s:g}' for s in whole_s)} s, blocks at {long_s:g} s")
    print(f"{'method':8s} " + " ".join(f"{'whole ' + format(s, 'g') + ' s':>13s}" for s in whole_s)
          + f" {'MB/s whole':>10s} {'whole ' + format(long_s, 'g') + ' s (extrap.)':>24s}"
          f" {'blocks ' + format(long_s, 'g') + ' s':>14s} {'time (s)':>9s}")
    for name in methods:
        base = method_args(name, folder, ckpt, threads, nmf_iterations)
        whole = []
        for s in whole_s:
            mix, f0 = recordings[s]
            whole.append(peak_rss_mb([str(mix), "--f0", str(f0), "--block-s", "100000", *base])[0])
        mix, f0 = recordings[long_s]
        blocked, seconds = peak_rss_mb([str(mix), "--f0", str(f0), *base])
        slope = (whole[-1] - whole[0]) / (whole_s[-1] - whole_s[0]) if len(whole) > 1 else float("nan")
        print(f"{name:8s} " + " ".join(f"{w:13.0f}" for w in whole)
              + f" {slope:10.1f} {whole[-1] + slope * (long_s - whole_s[-1]):24.0f} {blocked:14.0f} {seconds:9.0f}",
              flush=True)


SPEED_ROWS = (("CPU default", 2), ("paper size", 1))
"""The speed table's rows: model size and threads."""


def speed_rows(n_excerpts: int, batch: int, voices_out: str | None = None, clock: str = "wall",
               threads: int | None = None) -> dict[str, tuple[float, float]]:
    """{row label: (loop, batched) seconds per 4-s excerpt}; the batched voices [B, J, N] of each row are
    saved to ``voices_out`` (npz, keys = labels) when given. ``clock`` "cpu" times with the process's CPU
    time (on a shared machine, where wall time measures the other jobs; meaningful with one thread);
    ``threads`` overrides every row's thread count.

    Imports nothing from this repository at module level, so that a child process can run it on the code
    of another revision (see :func:`baseline_rows`).
    """
    import torch

    from choirbench.methods.sf import PAPER_PARAMS, SourceFilter
    from choirbench.methods.sf_model import SourceFilterNet

    rng = np.random.default_rng(0)
    n = 4 * SAMPLE_RATE
    mixtures = rng.uniform(-0.5, 0.5, (n_excerpts, n)).astype(np.float32)
    f0 = np.stack([np.full((n // HOP,), f) for f in (523.0, 349.0, 262.0, 131.0)]).astype(np.float32)
    f0s = np.repeat(f0[None], n_excerpts, axis=0)
    now = time.process_time if clock == "cpu" else time.perf_counter
    rows, saved = {}, {}
    for label, row_threads in SPEED_ROWS:
        params = PAPER_PARAMS if label == "paper size" else {}
        arch = {k: v for k, v in params.items() if k in SourceFilter.defaults}
        method = SourceFilter({**arch, "device": "cpu"})
        torch.manual_seed(0)
        method.model = SourceFilterNet(method.architecture()).eval()
        torch.set_num_threads(threads or row_threads)
        method.separate_batch(mixtures[:2], SAMPLE_RATE, f0s[:2])  # warm-up
        t = now()
        for b in range(n_excerpts):
            method.separate_with_parameters(mixtures[b], SAMPLE_RATE, f0s[b])
        loop = (now() - t) / n_excerpts
        t = now()
        voices = [method.separate_batch(mixtures[a:a + batch], SAMPLE_RATE, f0s[a:a + batch])[0]
                  for a in range(0, n_excerpts, batch)]
        rows[label] = (loop, (now() - t) / n_excerpts)
        saved[label] = np.concatenate(voices)
    if voices_out:
        np.savez(voices_out, **saved)
    return rows


def baseline_rows(rev: str, n_excerpts: int, batch: int, voices_out: Path, clock: str = "wall",
                  threads: int | None = None) -> dict[str, tuple[float, float]]:
    """:func:`speed_rows` in a child process on the code of git revision ``rev``.

    The revision's tree is exported (``git archive``) to a temporary folder put first on the child's
    ``sys.path`` (the editable install's finder comes after it), with ``choirbench.methods`` and the other
    mapped packages linked in as ``pyproject.toml`` maps them.
    """
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(root), "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for name in ("methods", "data_prep", "evaluation"):
            os.symlink(Path(tmp) / name, Path(tmp) / "choirbench" / name)
        code = (f"import sys; sys.path.insert(0, {tmp!r}); sys.path.insert(1, {str(Path(__file__).parent)!r}); "
                "import json, bench_separate as b; import choirbench; "
                f"assert choirbench.__file__.startswith({tmp!r}), choirbench.__file__; "
                f"print(json.dumps(b.speed_rows({n_excerpts}, {batch}, {str(voices_out)!r}, {clock!r}, {threads!r})))")
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp)
    return json.loads(out.stdout.splitlines()[-1])


def speed_table(n_excerpts: int, batch: int, baseline: str | None = None, clock: str = "wall",
                threads: int | None = None) -> None:
    print(f"\nsf separation of 4-s SATB excerpts (with the parameters export), {n_excerpts} excerpts, batches of {batch}"
          + (", process CPU seconds" if clock == "cpu" else ""))
    with tempfile.TemporaryDirectory() as tmp:
        old = baseline_rows(baseline, n_excerpts, batch, Path(tmp) / "old.npz", clock, threads) if baseline else {}
        new = speed_rows(n_excerpts, batch, str(Path(tmp) / "new.npz"), clock, threads)
        diffs = {}
        if baseline:
            with np.load(Path(tmp) / "old.npz") as a, np.load(Path(tmp) / "new.npz") as b:
                diffs = {k: (float(np.abs(a[k] - b[k]).max()), float(np.abs(a[k]).max())) for k in a.files}
    print(f"{'model':12s} {'code':>8s} {'threads':>7s} {'loop s/excerpt':>15s} {'batch s/excerpt':>16s} "
          f"{'excerpts/s':>11s} {'loop/batch':>10s}")
    for label, row_threads in SPEED_ROWS:
        for code, rows in (("baseline", old), ("current", new)):
            if label in rows:
                loop, batched = rows[label]
                print(f"{label:12s} {code:>8s} {threads or row_threads:7d} {loop:15.3f} {batched:16.3f} {1 / batched:11.1f} "
                      f"{loop / batched:10.2f}", flush=True)
    for label, _ in SPEED_ROWS:
        if label in old:
            (old_loop, old_batch), (loop, batched) = old[label], new[label]
            print(f"{label}: baseline/current {old_loop / loop:.2f}x (loop), {old_batch / batched:.2f}x (batch); "
                  f"max |voices current - baseline| {diffs[label][0]:.3g} (voices' peak {diffs[label][1]:.3g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-s", type=float, default=600.0, help="length of the long recording (seconds)")
    parser.add_argument("--whole-s", type=float, nargs="+", default=[30.0, 60.0],
                        help="lengths for whole-file processing (its memory grows with the input)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nmf-iterations", type=int, default=3)
    parser.add_argument("--excerpts", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--baseline", metavar="REV", help="also time the code of this git revision (same run, child "
                                                          "process) and compare its separated voices")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="speed: wall time, or the process's CPU time (a shared machine; use with --speed-threads 1)")
    parser.add_argument("--speed-threads", type=int, help="speed: this many threads for every row (default 2 and 1)")
    parser.add_argument("--mixture-f0", type=float, nargs="*", metavar="SECONDS",
                        help="only the table of peak memory with the F0 estimated from the mixture (`choirbench f0`, "
                             "`separate` without --f0) at these lengths, e.g. 60 120 600")
    args = parser.parse_args()
    if args.mixture_f0:
        with tempfile.TemporaryDirectory() as tmp:
            mixture_f0_table(Path(tmp), args.mixture_f0, args.methods, args.threads, args.nmf_iterations)
        return
    if not args.skip_speed:
        speed_table(args.excerpts, args.batch, args.baseline, args.clock, args.speed_threads)
    if not args.skip_memory:
        with tempfile.TemporaryDirectory() as tmp:
            memory_table(Path(tmp), args.long_s, args.whole_s, args.methods, args.threads, args.nmf_iterations)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
