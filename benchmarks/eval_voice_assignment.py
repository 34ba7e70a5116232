"""Accuracy of F0 from the mixture: multi-pitch F of the salience peaks, per-voice RPA of both assigners.

    # real choir: a mix plus one stem per section; reference = pYIN on each stem
    python benchmarks/eval_voice_assignment.py --sections ../shared/data/csd_rossinyol_sections
    # a prepared dataset (e.g. synthetic chorales): the k-th singer of every part; reference = annotation
    python benchmarks/eval_voice_assignment.py --prepared results/data/synth-chorales --song bwv169.7 --seconds 30

Prints the multi-pitch precision/recall/F (mir_eval.multipitch) of the peaks at
``--threshold`` and, per assigner, raw pitch accuracy (50 cents), voicing recall
and false alarm per voice (mir_eval.melody), with the assigners' run time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SECTION_FILES = {"S": "soprano.wav", "A": "alto.wav", "T": "tenor.wav", "B": "bass.wav"}


def sections(folder: Path, seconds: float | None):
    from choirbench.data_prep.f0 import pyin_f0
    from choirbench.data_prep.release import resample_audio
    from choirbench.io import read_wav

    mix, sr = read_wav(folder / "mix.wav", sr=None)
    if seconds:
        mix = mix[: int(seconds * sr)]
    refs = {}
    for part, name in SECTION_FILES.items():
        stem, rate = read_wav(folder / name, sr=None)
        refs[part] = pyin_f0(resample_audio(stem[: len(mix) * rate // sr], rate), part)
    return mix, sr, refs


def prepared(root: Path, song: str, singer: str, seconds: float | None):
    from choirbench import HOP, PARTS, SAMPLE_RATE
    from choirbench.io import read_f0, read_wav

    stems = [read_wav(root / "audio" / song / f"{p}{singer}.wav")[0] for p in PARTS]
    n = min(len(x) for x in stems) if not seconds else int(seconds * SAMPLE_RATE)
    mix = np.sum([x[:n] for x in stems], axis=0)
    refs = {p: read_f0(root / "f0" / song / f"{p}{singer}.csv")[: n // HOP + 1] for p in PARTS}
    return mix, SAMPLE_RATE, refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", type=Path, help="folder with mix.wav and soprano/alto/tenor/bass.wav")
    parser.add_argument("--prepared", type=Path, help="prepared dataset folder")
    parser.add_argument("--song")
    parser.add_argument("--singer", default="1")
    parser.add_argument("--seconds", type=float, default=0.0, help="only the first seconds (0 = all)")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()

    from choirbench import HOP, SAMPLE_RATE
    from choirbench.data_prep import multif0
    from choirbench.data_prep.voice_assignment import assign_voices
    from choirbench.evaluation.f0_accuracy import multipitch_scores, voice_scores

    if args.sections:
        mix, sr, refs = sections(args.sections, args.seconds)
    elif args.prepared and args.song:
        mix, sr, refs = prepared(args.prepared, args.song, args.singer, args.seconds)
    else:
        parser.error("give --sections DIR or --prepared ROOT --song SONG")
    start = time.perf_counter()
    sal = multif0.salience(mix, sr)
    print(f"{len(mix) / sr:.1f} s of audio, salience in {time.perf_counter() - start:.1f} s")
    n = min(len(r) for r in refs.values())
    grid = np.arange(n) * HOP / SAMPLE_RATE
    ref_sets = [np.array([r[t] for r in refs.values() if r[t] > 0]) for t in range(n)]
    mp = multipitch_scores(grid, ref_sets, *multif0.peaks(sal, args.threshold))
    print(f"multi-pitch (peaks >= {args.threshold}): P {mp['precision']:.3f}  R {mp['recall']:.3f}  "
          f"F {mp['f_measure']:.3f}  chroma F {mp['chroma_f_measure']:.3f}")
    for assigner in ("pitch_sort", "voas"):
        start = time.perf_counter()
        f0 = assign_voices(sal, "SATB", {"assigner": assigner, "peak_threshold": args.threshold}, n_frames=n)
        elapsed = time.perf_counter() - start
        scores = {p: voice_scores(refs[p][:n], f0[j]) for j, p in enumerate("SATB")}
        cells = "  ".join(f"{p}: RPA {s['raw_pitch_accuracy']:.3f} VR {s['voicing_recall']:.2f} "
                          f"VFA {s['voicing_false_alarm']:.2f}" for p, s in scores.items())
        mean = np.nanmean([s["raw_pitch_accuracy"] for s in scores.values()])
        print(f"{assigner:10s} ({elapsed:5.1f} s)  {cells}  mean RPA {mean:.3f}")


if __name__ == "__main__":
    main()
