"""F0 utilities: release annotations onto the hop grid, pYIN, score-derived F0, duplicate checks.

Every F0 track of a prepared dataset lives on one grid: frame ``k`` at
``k * HOP / SAMPLE_RATE`` seconds (hop 256 at 16 kHz), 0 Hz = unvoiced. The
three sources a run can pick (``f0_source``) share the file naming of ``f0/``:

* ``truth`` -> ``f0/``       the dataset's own annotation (written by the converter)
* ``pyin``  -> ``f0_pyin/``  librosa.pyin on each isolated voice (cached: existing files are kept)
* ``score`` -> ``f0_score/`` the aligned notes of ``score/``, MIDI -> Hz, 0 between notes
* ``mixture`` -> ``f0_mixture/`` estimated from the *mixture* (multi-F0 salience of Cuesta,
  McFee & Gómez 2020 + voice assignment, :mod:`choirbench.data_prep.voice_assignment`), the
  paper's condition: no isolated voice is looked at. See :func:`make_mixture_f0` for which
  mixture each track comes from.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from choirbench import HOP, PARTS, SAMPLE_RATE, ChoirbenchError
from choirbench.io import read_notes, read_release_f0, read_wav, write_csv, write_f0, write_text
from choirbench.params import resolve_params

log = logging.getLogger(__name__)

PYIN_DEFAULTS = {
    "frame_length": 1024,
    # per-part search range in Hz: the sung range of each part with a margin
    # (Bach10's bassoon and violin stay inside the B and S ranges)
    "fmin_hz": {"S": 180.0, "A": 130.0, "T": 90.0, "B": 55.0},
    "fmax_hz": {"S": 1200.0, "A": 900.0, "T": 600.0, "B": 420.0},
}
F0_SOURCE_DIRS = {"truth": "f0", "pyin": "f0_pyin", "score": "f0_score", "mixture": "f0_mixture"}


def n_frames_for(n_samples: int) -> int:
    """Frames on the hop grid covering ``n_samples`` (centred frames, as librosa.pyin returns)."""
    return n_samples // HOP + 1


def midi_to_hz(midi):
    midi = np.asarray(midi, dtype=np.float64)
    return np.where(midi > 0, 440.0 * 2.0 ** ((midi - 69.0) / 12.0), 0.0)


def cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1200 log2(a / b) where both are voiced, NaN elsewhere."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    out = np.full(np.broadcast(a, b).shape, np.nan)
    both = (a > 0) & (b > 0)
    out[both] = 1200.0 * np.log2(a[both] / b[both])
    return out


# ----------------------------------------------------------------------------- release annotations

def read_f0_table(path: Path, *, duration_s: float | None = None, audio=None,
                  confidence_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a release's F0 annotation: ``time, f0[, confidence]`` in any of , ; tab or space.

    The strict reader of :func:`choirbench.io.read_release_f0`, whose rules every
    F0 file follows: a header line is optional; an empty cell stays in its column;
    unvoiced frames are 0, negative (Sonic Visualiser's pYIN), NaN or empty
    (librosa.pyin through pandas), all read as 0; voiced values must lie in
    40-2000 Hz; with ``duration_s`` (the stem ``audio``'s length) the time axis
    must fit the recording. ``confidence_threshold`` unvoices frames below it.
    Returns (times [T] s, f0_hz [T], confidence [T] or None).
    """
    return read_release_f0(path, duration_s=duration_s, audio=audio, confidence_threshold=confidence_threshold)


def to_hop_grid(times: np.ndarray, f0_hz: np.ndarray, n_frames: int, *, max_gap_s: float | None = None) -> np.ndarray:
    """An annotation on any time grid -> the hop-256 grid, nearest neighbour in time.

    Nearest neighbour keeps voicing boundaries sharp. A grid frame farther than
    ``max_gap_s`` from every annotated time is unvoiced: this covers both the
    span outside the annotation and tables that list voiced frames only (as
    Sonic Visualiser exports do). Default gap: 1.5 x the median annotation step,
    at least half a hop (so a dense annotation never leaves a grid frame empty).
    """
    times = np.asarray(times, dtype=np.float64)
    f0_hz = np.asarray(f0_hz, dtype=np.float64)
    out = np.zeros(n_frames)
    if len(times) == 0 or n_frames <= 0:
        return out
    if max_gap_s is None:
        step = float(np.median(np.diff(times))) if len(times) > 1 else HOP / SAMPLE_RATE
        max_gap_s = max(1.5 * step, 0.5 * HOP / SAMPLE_RATE)
    grid = np.arange(n_frames) * HOP / SAMPLE_RATE
    right = np.clip(np.searchsorted(times, grid), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    nearest = np.where(np.abs(times[left] - grid) <= np.abs(times[right] - grid), left, right)
    close = np.abs(times[nearest] - grid) <= max_gap_s
    out[close] = f0_hz[nearest[close]]
    return out


# ----------------------------------------------------------------------------- pYIN

def pyin_f0(audio: np.ndarray, part: str, params: dict | None = None, n_frames: int | None = None) -> np.ndarray:
    """librosa.pyin on one isolated 16 kHz voice, on the hop grid, 0 where unvoiced."""
    import librosa

    params = resolve_params(PYIN_DEFAULTS, params or {}, where="pyin")
    if part not in PARTS:
        raise ChoirbenchError(f"unknown part {part!r} (expected one of {PARTS})")
    audio = np.asarray(audio, dtype=np.float32)
    n_frames = n_frames_for(len(audio)) if n_frames is None else n_frames
    if not np.any(audio):
        return np.zeros(n_frames)
    f0, voiced, _ = librosa.pyin(audio, fmin=float(params["fmin_hz"][part]), fmax=float(params["fmax_hz"][part]),
                                 sr=SAMPLE_RATE, frame_length=int(params["frame_length"]), hop_length=HOP,
                                 center=True)
    f0 = np.where(voiced & np.isfinite(f0), f0, 0.0)
    out = np.zeros(n_frames)
    out[: min(n_frames, len(f0))] = f0[:n_frames]
    return out


# ----------------------------------------------------------------------------- score F0

def notes_to_f0(notes: np.ndarray, n_frames: int) -> np.ndarray:
    """Aligned notes [n, 3] (onset_s, offset_s, midi) -> F0 on the hop grid, 0 between notes."""
    times = np.arange(n_frames) * HOP / SAMPLE_RATE
    f0 = np.zeros(n_frames)
    for onset, offset, midi in np.asarray(notes, float).reshape(-1, 3):
        if midi > 0:
            f0[(times >= onset) & (times < offset)] = midi_to_hz(midi)
    return f0


# ----------------------------------------------------------------------------- duplicates

def same_annotation(a: np.ndarray, b: np.ndarray, *, tol_cents: float = 1.0, min_share: float = 0.98) -> bool:
    """True when two tracks are copies of each other where both are voiced.

    Two singers of one part never agree within 1 cent on almost every frame;
    a copied file does (possibly with different lengths or voicing at the edges).
    """
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], float), np.asarray(b[:n], float)
    both = (a > 0) & (b > 0)
    voiced = max(int((a > 0).sum()), int((b > 0).sum()))
    if voiced == 0 or both.sum() < 0.5 * voiced:
        return False
    return float(np.mean(np.abs(cents(a[both], b[both])) <= tol_cents)) >= min_share


def duplicate_groups(tracks: dict) -> list[list]:
    """Groups (size >= 2) of keys whose tracks are copies of each other, keys in sorted order."""
    keys = sorted(tracks)
    groups, seen = [], set()
    for i, key in enumerate(keys):
        if key in seen:
            continue
        group = [key] + [other for other in keys[i + 1:]
                         if other not in seen and same_annotation(tracks[key], tracks[other])]
        if len(group) > 1:
            groups.append(group)
            seen.update(group)
    return groups


def agreement(reference: np.ndarray, estimate: np.ndarray, tol_cents: float = 50.0) -> float:
    """Share of frames voiced in ``reference`` where ``estimate`` is voiced and within ``tol_cents``."""
    n = min(len(reference), len(estimate))
    ref, est = np.asarray(reference[:n], float), np.asarray(estimate[:n], float)
    voiced = ref > 0
    if not voiced.any():
        return 0.0
    diff = cents(ref, est)
    return float(np.mean(np.nan_to_num(np.abs(diff[voiced]), nan=np.inf) <= tol_cents))


def replace_duplicate_f0(song: str, f0: dict, audio: dict, pyin_params: dict | None = None) -> dict:
    """Re-estimate copied F0 annotations of one song with pYIN (warning for each).

    ``f0`` and ``audio`` map (part, singer) -> arrays. Within each part, tracks
    that are copies of each other are grouped; the annotation stays with the
    singer whose own pYIN agrees with it best, the others get pYIN tracks.
    Returns a new dict; the input is not modified.
    """
    out = dict(f0)
    for part in PARTS:
        tracks = {key: track for key, track in f0.items() if key[0] == part}
        for group in duplicate_groups(tracks):
            estimates = {key: pyin_f0(audio[key], part, pyin_params, n_frames=len(f0[key])) for key in group}
            keeper = max(group, key=lambda key: agreement(f0[key], estimates[key]))
            for key in group:
                if key != keeper:
                    log.warning("%s: F0 annotation of %s%s is a copy of %s%s's; re-estimated with pYIN",
                                song, key[0], key[1], keeper[0], keeper[1])
                    out[key] = estimates[key]
    return out


# ----------------------------------------------------------------------------- F0 sources of a prepared dataset

def make_f0(root: Path, source: str, params: dict | None = None, *, songs: list[str] | None = None,
            examples: list[Path] = ()) -> int:
    """Write ``root/f0_pyin/``, ``root/f0_score/`` or ``root/f0_mixture/`` for every manifest row.

    Same file names as ``f0/``. pYIN and mixture tracks are cached: files that
    already exist are kept (mixture tracks only while their knobs are unchanged).
    ``songs`` and ``examples``: which songs and excerpt lists get mixture F0
    (:func:`make_mixture_f0`).
    Returns the number of files written. ``truth`` needs nothing (the converter
    wrote ``f0/``).
    """
    from choirbench.data_prep.prepared import read_manifest

    root = Path(root)
    if source not in F0_SOURCE_DIRS:
        raise ChoirbenchError(f"unknown f0_source {source!r} (expected one of {sorted(F0_SOURCE_DIRS)})")
    if source == "truth":
        return 0
    if source == "mixture":
        return make_mixture_f0(root, params, songs=songs, examples=examples)
    manifest = read_manifest(root)
    out_dir = root / F0_SOURCE_DIRS[source]
    written = 0
    rows = list(manifest.itertuples())
    for row in _progress(rows, f"F0 ({source})"):
        target = out_dir / str(row.song) / f"{row.part}{row.singer}.csv"
        if target.is_file():
            continue
        audio, _ = read_wav(root / row.audio)
        n_frames = n_frames_for(len(audio))
        if source == "pyin":
            track = pyin_f0(audio, row.part, params, n_frames=n_frames)
        else:
            score = root / "score" / str(row.song) / f"{row.part}.csv"
            if not score.is_file():
                raise ChoirbenchError(f"{score}: f0_source 'score' needs aligned notes, but this dataset has "
                                      f"none for song {row.song!r} part {row.part}")
            track = notes_to_f0(read_notes(score), n_frames)
        write_f0(target, track)
        written += 1
    log.info("%s: wrote %d %s F0 file(s) to %s", root, written, source, out_dir)
    return written


MIXTURE_STAMP = ".f0_mixture.json"
"""Per song folder: the knobs its mixture F0 tracks were estimated with (a change re-estimates them)."""


def song_mixtures(rows) -> list[dict[str, str]]:
    """The mixtures whose F0 serve a song's manifest rows: one {part: singer} per singer rank.

    Mixture ``k`` takes each part's ``k``-th singer (sorted ids; a part with fewer
    singers repeats its own from the first), so every (part, singer) is in exactly
    one mixture where it is the part's own ``k``-th singer. With CSD-like data
    (singers 1..4 in every part) mixture ``k`` is singer ``k`` of every part.
    """
    singers = {p: sorted(rows.loc[rows["part"] == p, "singer"].astype(str)) for p in PARTS}
    singers = {p: s for p, s in singers.items() if s}
    n = max((len(s) for s in singers.values()), default=0)
    return [{p: s[k % len(s)] for p, s in singers.items()} for k in range(n)]


def make_mixture_f0(root: Path, params: dict | None = None, *, songs: list[str] | None = None,
                    examples: list[Path] = ()) -> int:
    """``root/f0_mixture/``: each voice's F0 estimated from a mixture, never from an isolated voice.

    Two kinds of tracks, both estimated by multi-F0 salience + voice assignment
    (``params``: the ``f0_mixture`` config block, see
    :data:`choirbench.data_prep.voice_assignment.ASSIGN_DEFAULTS`):

    * every excerpt of the lists ``examples`` (the test and validation lists):
      from the excerpt's own mixture of its J voices, i.e. exactly the signal a
      method separates, into ``excerpts/{example_id}.csv`` (``time_s`` plus one
      column per voice, the excerpt's frames) with the salience peaks next to it
      (``excerpts/{example_id}_peaks.npz``, scored by
      :mod:`choirbench.evaluation.f0_accuracy`);
    * the songs ``songs`` (None = all; the training songs of mixture-F0 entries)
      for the training sampler, which cuts random excerpts: for each song and
      singer rank ``k`` (:func:`song_mixtures`) the whole-song mixture of the
      ``k``-th singer of every part, into ``{song}/{part}{singer}.csv`` like
      the other sources. Limit: a training excerpt of J < 4 voices, or one that
      pairs singers of different ranks, gets tracks assigned in another mixture
      of the same song (same notes and timing; its own singers' intonation only
      where the ranks agree).

    Cached: files are kept while their knobs are unchanged (a stamp per song
    folder and one for ``excerpts/``). Returns the number of F0 files written.
    """
    import json

    from choirbench.data_prep.prepared import load_example, read_examples, read_manifest
    from choirbench.data_prep.voice_assignment import ASSIGN_DEFAULTS, estimate_salience_f0

    root = Path(root)
    params = resolve_params(ASSIGN_DEFAULTS, params or {}, where="f0_mixture")
    stamp_text = json.dumps(params, sort_keys=True) + "\n"
    manifest = read_manifest(root)
    out_dir = root / F0_SOURCE_DIRS["mixture"]
    written = 0
    known = sorted(manifest["song"].astype(str).unique())
    if songs is not None and set(songs) - set(known):
        raise ChoirbenchError(f"{root}: no songs {sorted(set(songs) - set(known))} in the manifest")
    for song in _progress(known if songs is None else sorted(songs), "F0 (mixture, songs)"):
        rows = manifest[manifest["song"].astype(str) == song]
        folder = out_dir / song
        fresh = _fresh(folder / MIXTURE_STAMP, stamp_text)
        for members in song_mixtures(rows):
            targets = {p: folder / f"{p}{s}.csv" for p, s in members.items()}
            if fresh and all(t.is_file() for t in targets.values()):
                continue
            stems = [read_wav(root / "audio" / song / f"{p}{s}.wav")[0] for p, s in members.items()]
            n = min(len(x) for x in stems)
            mixture = np.sum([x[:n] for x in stems], axis=0)
            f0, _ = estimate_salience_f0(mixture, SAMPLE_RATE, "".join(members), params, n_frames=n_frames_for(n))
            for j, target in enumerate(targets.values()):
                write_f0(target, f0[j])
                written += 1
        write_text(folder / MIXTURE_STAMP, stamp_text)
    folder = out_dir / "excerpts"
    fresh = _fresh(folder / MIXTURE_STAMP, stamp_text)
    for path in examples:
        rows = list(read_examples(path).itertuples())
        for row in _progress(rows, f"F0 (mixture, {Path(path).stem})"):
            target = excerpt_f0_path(root, row.example_id)
            if fresh and target.is_file():
                continue
            ex = load_example(root, row, f0_source="truth")      # the mixture only; its F0 is not used
            f0, peaks = estimate_salience_f0(ex.mixture, ex.sr, "".join(ex.parts), params, n_frames=ex.f0.shape[1])
            save_peaks(target.with_name(f"{row.example_id}_peaks.npz"), *peaks)
            write_csv(target, pd.DataFrame({"time_s": np.round(np.arange(f0.shape[1]) * HOP / SAMPLE_RATE, 6),
                                            **{p: np.round(track, 4) for p, track in zip(ex.parts, f0)}}))
            written += 1
    if examples:
        write_text(folder / MIXTURE_STAMP, stamp_text)
    log.info("%s: wrote %d mixture F0 file(s) to %s", root, written, out_dir)
    return written


def _fresh(stamp: Path, text: str) -> bool:
    if stamp.is_file() and stamp.read_text() == text:
        return True
    if stamp.parent.is_dir() and any(stamp.parent.glob("*.csv")):
        log.info("%s: f0_mixture knobs changed, re-estimating", stamp.parent)
    return False


def excerpt_f0_path(root: Path, example_id: str) -> Path:
    """Where the F0 estimated from an excerpt's own mixture lives."""
    return Path(root) / F0_SOURCE_DIRS["mixture"] / "excerpts" / f"{example_id}.csv"


def read_excerpt_f0(root: Path, example_id: str, parts: tuple[str, ...], n_frames: int) -> np.ndarray | None:
    """The F0 [J, n_frames] estimated from an excerpt's own mixture, or None when there is none.

    Raises :class:`ChoirbenchError` when the file does not match the excerpt.
    """
    from choirbench.io import read_f0_table

    path = excerpt_f0_path(root, example_id)
    if not path.is_file():
        return None
    _, f0, names = read_f0_table(path)
    if tuple(names) != tuple(parts) or f0.shape[1] != n_frames:
        raise ChoirbenchError(f"{path}: F0 of voices {names} x {f0.shape[1]} frames does not match the excerpt "
                              f"({''.join(parts)}, {n_frames} frames); delete it to re-estimate")
    return f0


def save_peaks(path: Path, times: np.ndarray, freqs: list[np.ndarray]) -> None:
    """Multi-F0 peaks (times [T] s, per-frame Hz arrays) as one ``.npz`` (flat Hz + counts), atomically."""
    from choirbench.io import atomic_path

    counts = np.array([len(f) for f in freqs], dtype=np.int32)
    flat = np.concatenate(freqs) if len(freqs) else np.zeros(0)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, times=np.asarray(times, float), counts=counts, freqs=flat.astype(np.float32))


def load_peaks(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Inverse of :func:`save_peaks`: (times [T] s, list of per-frame F0 arrays in Hz)."""
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: multi-F0 peaks not found (run `choirbench f0 --source mixture`)")
    with np.load(path, allow_pickle=False) as data:
        times, counts, flat = data["times"], data["counts"], data["freqs"].astype(np.float64)
    return times, np.split(flat, np.cumsum(counts)[:-1]) if len(counts) else []


def _progress(items, desc):
    import sys

    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=not sys.stderr.isatty() or len(items) < 8)
