"""Accuracy of the Late/Deep multi-F0 port: mir_eval.multipitch of its salience peaks against reference F0s.

Datasets (each skipped when absent):

* ``csd``: ../shared/data/csd_rossinyol_sections/ (Choral Singing Dataset, El Rossinyol: SATB section
  stems of 4 singers each and their mix, 22.05 kHz). Reference: pYIN (choirbench.data_prep.f0.pyin_f0)
  on each section stem resampled to 16 kHz, one F0 per section and frame (cached under --cache).
* ``dagstuhl``: ../shared/data/dagstuhl_excerpts/ (Dagstuhl ChoirSet, quartet B take 4, 1 s): the
  stereo-mix microphone (STM) against the manual F0 annotations of the four singers.
* ``bach10``: ../shared/data/bach10/ (violin, clarinet, saxophone, bassoon): the ground-truth F0s.
* ``synth``: a few test pieces of the default dataset's synthesiser (synth_chorales, 4 singers per
  part); reference: per part and frame the median F0 of its voiced singers (a section sings one pitch).

Metrics: mir_eval.multipitch.evaluate (precision, recall, accuracy, chroma variants; F = 2PR / (P + R)),
estimate resampled by mir_eval onto the reference's frames; one row per recording plus a frame-weighted
dataset mean (the totals' P, R, F). Usage::

    nice python benchmarks/eval_multif0.py [--datasets csd,dagstuhl,bach10,synth] [--threshold 0.5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from choirbench import HOP, PARTS, SAMPLE_RATE
from choirbench.data_prep import multif0
from choirbench.io import read_wav

# the shared data folder beside the checkout (../shared/data), else the project's usual place
SHARED = next((p for p in (Path(__file__).resolve().parents[1].parent / "shared" / "data", Path("/work/shared/data"))
               if p.is_dir()), Path("../shared/data"))


def evaluate(ref_times, ref_freqs, sal: multif0.Salience, threshold: float) -> dict:
    import mir_eval

    est_times, est_freqs = multif0.peaks(sal, threshold)
    scores = mir_eval.multipitch.evaluate(np.asarray(ref_times, float), [np.asarray(f, float) for f in ref_freqs],
                                          est_times, est_freqs)
    return {k: float(v) for k, v in scores.items()}


def frames_of(f0_tracks: np.ndarray) -> list[np.ndarray]:
    """[voices, T] F0 (0 = unvoiced) -> per frame the voiced F0s."""
    return [col[col > 0] for col in np.asarray(f0_tracks, float).T]


# ----------------------------------------------------------------------------- datasets

def csd(cache: Path):
    import librosa

    from choirbench.data_prep.f0 import pyin_f0

    root = SHARED / "csd_rossinyol_sections"
    if not (root / "mix.wav").is_file():
        return
    cache.mkdir(parents=True, exist_ok=True)
    tracks = []
    for part, name in zip(PARTS, ("soprano", "alto", "tenor", "bass")):
        path = cache / f"csd_rossinyol_pyin_{part}.npy"
        if not path.is_file():
            stem, sr = read_wav(root / f"{name}.wav", sr=None)
            np.save(path, pyin_f0(librosa.resample(stem, orig_sr=sr, target_sr=SAMPLE_RATE), part))
        tracks.append(np.load(path))
    n = min(len(t) for t in tracks)
    f0 = np.stack([t[:n] for t in tracks])
    yield "csd_rossinyol", np.arange(n) * HOP / SAMPLE_RATE, frames_of(f0), *read_wav(root / "mix.wav", sr=None)


def dagstuhl(cache: Path):
    base = SHARED / "dagstuhl_excerpts" / "dagstuhl_choirset"
    mix = base / "audio_wav_22050_mono" / "DCS_LI_QuartetB_Take04_Stereo_STM.wav"
    if not mix.is_file():
        return
    # the manual annotation of this excerpt covers five 5.8-ms frames (0.40-0.42 s): scored there only
    tables = [pd.read_csv(p, header=None).to_numpy(float) for p in sorted((base / "annotations_csv_F0_manual").glob("*.csv"))]
    grid = tables[0][:, 0]
    tracks = [np.interp(grid, t[:, 0], t[:, 1]) for t in tables]
    yield "dagstuhl_quartetB_take04_STM", grid, frames_of(np.stack(tracks)), *read_wav(mix, sr=None)


def bach10(cache: Path):
    from choirbench.data_prep.bach10 import read_gt_f0

    root = SHARED / "bach10"
    for folder in sorted(p for p in root.glob("[0-9][0-9]-*") if p.is_dir()):
        times, f0 = read_gt_f0(folder / f"{folder.name}-GTF0s.mat")
        yield f"bach10_{folder.name}", times, frames_of(f0), *read_wav(folder / f"{folder.name}.wav", sr=None)


def synth(cache: Path, n_pieces: int = 3):
    from choirbench.data_prep import synth_chorales as sc
    from choirbench.io import read_f0

    params = dict(sc.DEFAULTS, preview=False, workers=1)
    pieces = sc.choose_pieces(params)["test"][:n_pieces]
    root = cache / "synth_chorales"
    for piece in pieces:
        if not (root / "f0" / piece / "B4.csv").is_file():
            sc.render_piece(piece, "test", root, params)
        stems = sorted((root / "audio" / piece).glob("*.wav"))
        mix = sum(read_wav(p, sr=SAMPLE_RATE)[0] for p in stems)
        tracks = []
        for part in PARTS:
            singers = np.stack([read_f0(root / "f0" / piece / f"{part}{k}.csv")
                                for k in range(1, params["singers_per_part"] + 1)])
            voiced = singers > 0
            with np.errstate(invalid="ignore"):
                med = np.nanmedian(np.where(voiced, singers, np.nan), axis=0)
            tracks.append(np.where(voiced.any(axis=0), med, 0.0))
        f0 = np.stack(tracks)
        yield f"synth_{piece}", np.arange(f0.shape[1]) * HOP / SAMPLE_RATE, frames_of(f0), mix, SAMPLE_RATE


DATASETS = {"csd": csd, "dagstuhl": dagstuhl, "bach10": bach10, "synth": synth}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="csd,dagstuhl,bach10,synth")
    parser.add_argument("--threshold", type=float, default=multif0.DEFAULT_THRESHOLD)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("results/multif0_eval"))
    parser.add_argument("--out", type=Path, default=None, help="CSV of the per-recording scores")
    parser.add_argument("--synth-pieces", type=int, default=3, help="test pieces of synth-chorales to render")
    args = parser.parse_args(argv)
    rows = []
    for name in args.datasets.split(","):
        found = DATASETS[name](args.cache, args.synth_pieces) if name == "synth" else DATASETS[name](args.cache)
        for rec, ref_t, ref_f, audio, sr in found:
            started = time.perf_counter()
            sal = multif0.salience(audio, sr, threads=args.threads)
            elapsed = time.perf_counter() - started
            scores = evaluate(ref_t, ref_f, sal, args.threshold)
            n_ref = sum(len(f) for f in ref_f)
            row = {"dataset": name, "recording": rec, "seconds": len(audio) / sr, "ref_f0s": n_ref,
                   "P": scores["Precision"], "R": scores["Recall"], "Acc": scores["Accuracy"],
                   "chroma_P": scores["Chroma Precision"], "chroma_R": scores["Chroma Recall"],
                   "chroma_Acc": scores["Chroma Accuracy"], "rtf": elapsed / (len(audio) / sr)}
            for p, r, key in ((row["P"], row["R"], "F"), (row["chroma_P"], row["chroma_R"], "chroma_F")):
                row[key] = 2 * p * r / (p + r) if p + r > 0 else 0.0
            rows.append(row)
            print(f"{rec:45s} P={row['P']:.3f} R={row['R']:.3f} Acc={row['Acc']:.3f} F={row['F']:.3f} "
                  f"chromaF={row['chroma_F']:.3f}  ({row['seconds']:.0f} s, RTF {row['rtf']:.2f})", flush=True)
    if not rows:
        print("no dataset found", file=sys.stderr)
        return 1
    table = pd.DataFrame(rows)
    summary = table.groupby("dataset")[["P", "R", "Acc", "F", "chroma_P", "chroma_R", "chroma_Acc", "chroma_F"]].mean()
    print("\nmean over recordings per dataset:")
    print(summary.round(3).to_string())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
