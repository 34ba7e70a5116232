"""The prepared dataset format every dataset is converted to (see DESIGN.md).

::

    results/data/{dataset}/
      manifest.csv          song, part, singer, split, audio, f0, duration_s
      audio/{song}/{part}{singer}.wav   mono 16 kHz
      f0/{song}/{part}{singer}.csv      time_s,f0_hz on the hop-256 grid
      score/{song}/{part}.csv           onset_s,offset_s,midi (optional)
      examples/J{J}_{split}.csv         example_id, song, parts, singers, start_s

Parts of one song are time-aligned, so a mixture is the sum of one singer per
part. This module reads and checks that format and cuts excerpts from it; it
knows nothing about where a dataset came from.
"""
from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from choirbench import EXCERPT_SECONDS, HOP, PARTS, SAMPLE_RATE, ChoirbenchError
from choirbench.io import audio_info, read_f0, read_notes, read_wav, write_csv

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["song", "part", "singer", "split", "audio", "f0", "duration_s"]
SPLITS = ("train", "valid", "test")
F0_DIRS = {"truth": "f0", "pyin": "f0_pyin", "score": "f0_score", "mixture": "f0_mixture"}
"""Where each F0 source lives inside a prepared dataset (``noisy`` is derived at load time)."""


@dataclass
class Example:
    """One excerpt: J time-aligned voices, their mixture, F0 and (optional) notes."""

    example_id: str
    mixture: np.ndarray          # [N]
    voices: np.ndarray           # [J, N], scaled like the mixture
    f0: np.ndarray               # [J, T] Hz, 0 = unvoiced, T = N // HOP
    parts: tuple[str, ...]
    notes: list[np.ndarray] | None  # per voice [n, 3] onset_s, offset_s, midi relative to the excerpt
    sr: int = SAMPLE_RATE


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Song names and singer ids become folder, file and excerpt names: letters, digits, '.', '-', '_'."""


def read_manifest(root: Path) -> pd.DataFrame:
    """Read and check ``manifest.csv`` of a prepared dataset.

    Checks the columns, parts, splits, that song names and singer ids are safe
    in paths (they name folders, files and excerpts), that no (song, part,
    singer) appears twice and that durations are positive numbers. Errors name
    the manifest, the line and the column.
    """
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise ChoirbenchError(f"{path}: manifest not found (run `choirbench prepare` first)")
    try:
        frame = pd.read_csv(path, dtype={"singer": str, "song": str})
    except Exception as err:  # pandas raises many types for malformed CSV
        raise ChoirbenchError(f"{path}: unreadable manifest CSV ({err})") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ChoirbenchError(f"{path}: missing columns {missing}")
    bad_parts = sorted(set(frame["part"]) - set(PARTS), key=str)
    if bad_parts:
        raise ChoirbenchError(f"{path}: unknown parts {bad_parts} (expected S, A, T, B)")
    bad_splits = sorted(set(frame["split"]) - set(SPLITS), key=str)
    if bad_splits:
        raise ChoirbenchError(f"{path}: unknown splits {bad_splits} (expected {SPLITS})")
    for column in ("song", "singer"):
        bad = [i for i, name in enumerate(frame[column]) if not (isinstance(name, str) and NAME.fullmatch(name))]
        if bad:
            raise ChoirbenchError(f"{path}, line {bad[0] + 2}, column {column!r}: {frame[column].iloc[bad[0]]!r} "
                                  f"is not a valid name (letters, digits, '.', '-' and '_'; it names folders and files)")
    twice = frame.duplicated(["song", "part", "singer"]).to_numpy().nonzero()[0]
    if twice.size:
        row = frame.iloc[twice[0]]
        raise ChoirbenchError(f"{path}, line {twice[0] + 2}: song {row['song']!r} part {row['part']} singer "
                              f"{row['singer']!r} is listed twice")
    duration = pd.to_numeric(frame["duration_s"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~(duration > 0))
    if bad.size:
        raise ChoirbenchError(f"{path}, line {bad[0] + 2}, column 'duration_s': {frame['duration_s'].iloc[bad[0]]!r} "
                              f"is not a positive number of seconds")
    return frame


def write_manifest(root: Path, frame: pd.DataFrame) -> None:
    frame = frame[MANIFEST_COLUMNS].sort_values(["split", "song", "part", "singer"]).reset_index(drop=True)
    write_csv(Path(root) / "manifest.csv", frame)


def check_prepared(root: Path) -> pd.DataFrame:
    """Check every file of a prepared dataset against what the loaders rely on; returns the manifest.

    Per manifest row: ``audio`` and ``f0`` are the conventional paths (the loaders
    read those), the stem is a readable mono 16-kHz WAV whose length is the
    row's ``duration_s`` (a longer duration would make excerpts of zero padding),
    the F0 passes :func:`choirbench.io.read_f0` on the 16-ms grid with one frame per
    256 samples. Per song: stems of equal length (mismatched stems would silently
    shift voices against each other), notes in ``score/`` readable and inside the
    song. Raises :class:`ChoirbenchError` naming the file, line or column and the fix
    (the first problem :func:`prepared_problems` finds).
    """
    frame = read_manifest(root)
    for _, message in prepared_problems(root, frame):
        raise ChoirbenchError(message)
    return frame


def prepared_problems(root: Path, frame: pd.DataFrame):
    """The checks of :func:`check_prepared`, as a generator of ``(path, message)`` per problem found.

    Lazy: :func:`check_prepared` stops at the first one, ``choirbench validate``
    collects them all. After a problem with a row's audio, that row's length
    and F0 checks are skipped (they need the audio's length); the other rows
    and songs are still checked. ``frame`` is the manifest (:func:`read_manifest`).
    """
    root = Path(root)
    manifest = root / "manifest.csv"
    lengths: dict[str, dict[str, int]] = {}
    for i, row in enumerate(frame.itertuples()):
        line = f"{manifest}, line {i + 2}"
        stem = f"{row.part}{row.singer}"
        paths_ok = True
        for column, expected in (("audio", f"audio/{row.song}/{stem}.wav"), ("f0", f"f0/{row.song}/{stem}.csv")):
            if getattr(row, column) != expected:
                paths_ok = False
                yield manifest, (f"{line}, column {column!r}: {getattr(row, column)!r} must be {expected!r} "
                                 f"(the loaders read that path)")
        if not paths_ok:
            continue
        audio = root / row.audio
        if not audio.is_file():
            yield audio, f"{audio}: audio file listed in manifest not found"
            continue
        try:
            info = audio_info(audio)
        except ChoirbenchError as err:
            yield audio, str(err)
            continue
        if info.samplerate != SAMPLE_RATE or info.channels != 1:
            yield audio, (f"{audio}: {info.samplerate} Hz, {info.channels} channel(s); the prepared format is "
                          f"mono {SAMPLE_RATE} Hz: resample it, or use `kind: stems`, which reads any rate and "
                          f"channel count")
            continue
        if info.frames == 0:
            yield audio, f"{audio}: holds no samples"
            continue
        lengths.setdefault(row.song, {})[row.audio] = info.frames
    bad_songs = set()
    for song, stems in lengths.items():
        if len(set(stems.values())) > 1:
            bad_songs.add(song)
            detail = ", ".join(f"{Path(a).name}={n}" for a, n in stems.items())
            yield root / "audio" / song, f"{root}: stems of song {song!r} have mismatched lengths ({detail})"
    for i, row in enumerate(frame.itertuples()):
        if row.audio not in lengths.get(row.song, {}) or row.song in bad_songs:
            continue
        n_samples = lengths[row.song][row.audio]
        audio_s = n_samples / SAMPLE_RATE
        if row.duration_s * SAMPLE_RATE > n_samples + 0.5 or row.duration_s < audio_s - 1e-3:
            yield manifest, (f"{manifest}, line {i + 2}, column 'duration_s': {row.duration_s:g} s, but "
                             f"{row.audio} lasts {audio_s:g} s ({n_samples} samples); write the audio's length "
                             f"in seconds (samples / {SAMPLE_RATE})")
        if not (root / row.f0).is_file():
            yield root / row.f0, f"{root / row.f0}: F0 file listed in manifest not found"
            continue
        try:
            read_f0(root / row.f0, n_samples=n_samples, audio=row.audio)
        except ChoirbenchError as err:
            yield root / row.f0, str(err)
    for song, stems in lengths.items():
        for part in PARTS:
            score = root / "score" / song / f"{part}.csv"
            if score.is_file():
                try:
                    read_notes(score, duration_s=max(stems.values()) / SAMPLE_RATE, audio=f"song {song!r}")
                except ChoirbenchError as err:
                    yield score, str(err)


# ----------------------------------------------------------------------------- excerpt lists

def voice_combinations(J: int) -> list[tuple[str, ...]]:
    """All C(4, J) part combinations in S, A, T, B order (J = 4: just SATB)."""
    if not 1 <= J <= len(PARTS):
        raise ChoirbenchError(f"J must be between 1 and {len(PARTS)}, got {J}")
    return list(itertools.combinations(PARTS, J))


def make_examples(root: Path, J: int, split: str, *, seed: int, excerpt_s: float = EXCERPT_SECONDS,
                  skip_first: bool = True, singer: str | dict[str, str] | None = None, min_voiced: float = 0.0,
                  max_examples: int | None = None) -> pd.DataFrame:
    """The fixed excerpt list for one split and J.

    Non-overlapping excerpts of ``excerpt_s`` per song and voice combination,
    from the second excerpt on when ``skip_first`` (the paper's protocol skips
    each song's first 4 s). One singer per part per excerpt: ``singer`` when
    given (one id for every song, or a song -> id mapping such as the paper's
    fixed CSD singers; songs missing from the mapping are skipped), else drawn
    from ``seed``.
    Excerpts where some voice is voiced on less than ``min_voiced`` of its
    frames are dropped; ``max_examples`` keeps a seeded random subset.
    """
    root = Path(root)
    manifest = read_manifest(root)
    rows = manifest[manifest["split"] == split]
    rng = np.random.default_rng(seed)
    n_excerpt = int(round(excerpt_s * SAMPLE_RATE))
    n_frames = n_excerpt // HOP
    records = []
    for song in sorted(rows["song"].unique()):
        song_singer = singer.get(song) if isinstance(singer, dict) else singer
        if isinstance(singer, dict) and song_singer is None:
            continue
        song_rows = rows[rows["song"] == song]
        singers = {p: sorted(song_rows.loc[song_rows["part"] == p, "singer"]) for p in PARTS}
        for parts in voice_combinations(J):
            if any(not singers[p] for p in parts):
                continue
            length = min(int(song_rows.loc[song_rows["part"] == p, "duration_s"].min() * SAMPLE_RATE)
                         for p in parts)
            f0_cache: dict[tuple[str, str], np.ndarray] = {}
            for k in range(1 if skip_first else 0, length // n_excerpt):
                chosen = []
                for p in parts:
                    if song_singer is not None:
                        if song_singer not in singers[p]:
                            raise ChoirbenchError(f"{root}: song {song!r} has no singer {song_singer!r} for part {p}")
                        chosen.append(song_singer)
                    else:
                        chosen.append(singers[p][rng.integers(len(singers[p]))])
                start = k * n_excerpt
                if min_voiced > 0:
                    voiced = []
                    for p, s in zip(parts, chosen):
                        if (p, s) not in f0_cache:
                            f0_cache[p, s] = read_f0(root / "f0" / song / f"{p}{s}.csv")
                        f0 = f0_cache[p, s][start // HOP: start // HOP + n_frames]
                        voiced.append(np.mean(f0 > 0) if len(f0) else 0.0)
                    if min(voiced) < min_voiced:
                        continue
                records.append({"song": song, "parts": "-".join(parts), "singers": "-".join(chosen),
                                "start_s": round(start / SAMPLE_RATE, 6)})
    frame = pd.DataFrame(records, columns=["song", "parts", "singers", "start_s"])
    if max_examples is not None and len(frame) > max_examples:
        keep = np.sort(rng.choice(len(frame), size=max_examples, replace=False))
        frame = frame.iloc[keep].reset_index(drop=True)
    if frame.empty:
        raise ChoirbenchError(f"{root}: no {split} excerpts for J={J} (split empty or songs too short)")
    ids = [f"{r.song}_{r.parts.replace('-', '')}_{int(round(r.start_s * 1000)):07d}ms" for r in frame.itertuples()]
    frame.insert(0, "example_id", ids)
    return frame


def write_examples(root: Path, J: int, split: str, **kwargs) -> Path:
    path = Path(root) / "examples" / f"J{J}_{split}.csv"
    write_csv(path, make_examples(root, J, split, **kwargs))
    return path


def read_examples(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: excerpt list not found")
    return pd.read_csv(path, dtype={"song": str, "singers": str, "example_id": str})


# ----------------------------------------------------------------------------- loading

def excerpt_notes(notes: np.ndarray, start_s: float, duration_s: float) -> np.ndarray:
    """Notes overlapping [start, start + duration], shifted to excerpt time and clipped."""
    if notes.size == 0:
        return notes.reshape(0, 3)
    end_s = start_s + duration_s
    keep = (notes[:, 1] > start_s) & (notes[:, 0] < end_s)
    out = notes[keep].copy()
    out[:, :2] = np.clip(out[:, :2] - start_s, 0.0, duration_s)
    return out


def load_excerpt(root: Path, song: str, parts: tuple[str, ...], singers: tuple[str, ...], start: int,
                 n_samples: int, *, f0_source: str = "truth", with_notes: bool = True,
                 example_id: str = "") -> Example:
    """Cut one excerpt from a prepared dataset, mix it and peak-normalise.

    The mixture is scaled to a peak of 1 and the voices by the same factor,
    so that ``mixture == voices.sum(0)`` holds exactly.
    """
    root = Path(root)
    if f0_source not in F0_DIRS:
        raise ChoirbenchError(f"unknown f0_source {f0_source!r} (expected one of {sorted(F0_DIRS)})")
    voices = np.zeros((len(parts), n_samples), dtype=np.float32)
    n_frames = n_samples // HOP
    f0 = np.zeros((len(parts), n_frames))
    notes = [] if with_notes else None
    for j, (part, singer) in enumerate(zip(parts, singers)):
        audio, _ = read_wav(root / "audio" / song / f"{part}{singer}.wav", start=start, frames=n_samples)
        voices[j, : len(audio)] = audio
        track = read_f0(root / F0_DIRS[f0_source] / song / f"{part}{singer}.csv")
        seg = track[start // HOP: start // HOP + n_frames]
        f0[j, : len(seg)] = seg
        if notes is not None:
            score = root / "score" / song / f"{part}.csv"
            if score.is_file():
                notes.append(excerpt_notes(read_notes(score), start / SAMPLE_RATE, n_samples / SAMPLE_RATE))
            else:
                notes = None
    mixture = voices.sum(axis=0)
    peak = float(np.max(np.abs(mixture)))
    if peak > 0:
        voices /= peak
        mixture = voices.sum(axis=0)
    return Example(example_id, mixture, voices, f0, tuple(parts), notes)


def load_example(root: Path, row, *, f0_source: str = "truth", excerpt_s: float = EXCERPT_SECONDS) -> Example:
    """Load one row of an ``examples/J{J}_{split}.csv`` list."""
    n = int(round(excerpt_s * SAMPLE_RATE))
    start = int(round(float(row.start_s) * SAMPLE_RATE))
    parts = tuple(row.parts.split("-"))
    own = None
    if f0_source == "mixture":  # F0 estimated from this excerpt's own mixture, when the list was given one
        from choirbench.data_prep.f0 import read_excerpt_f0

        own = read_excerpt_f0(root, str(row.example_id), parts, n // HOP)
    ex = load_excerpt(root, str(row.song), parts, tuple(str(row.singers).split("-")), start, n,
                      f0_source="truth" if own is not None else f0_source, example_id=str(row.example_id))
    if own is not None:
        ex.f0 = own
    return ex


# ----------------------------------------------------------------------------- training data

def small_subset(manifest: pd.DataFrame, fraction: float, seed: int) -> list[str]:
    """A deterministic set of whole training songs holding about ``fraction`` of the audio.

    Songs are shuffled with ``seed`` and taken until the fraction is reached
    (at least one song), so `-small` runs never see a slice of a song.
    """
    train = manifest[manifest["split"] == "train"]
    per_song = train.groupby("song")["duration_s"].max().sort_index()
    if per_song.empty:
        raise ChoirbenchError("the dataset has no training songs")
    order = np.random.default_rng(seed).permutation(per_song.index.to_numpy())
    target = fraction * per_song.sum()
    chosen, total = [], 0.0
    for song in order:
        if chosen and total >= target:
            break
        chosen.append(str(song))
        total += per_song[song]
    return sorted(chosen)


class ExcerptSampler:
    """Random training excerpts: random start on the hop grid, random singer per part.

    With ``J`` smaller than the number of ``parts``, each excerpt also draws J of the parts
    without replacement, uniformly over all C(len(parts), J) combinations (kept in the order of
    ``parts``), as for the paper's J-voice models (Schulze-Forster et al. 2023 train separate
    2- and 4-voice models; their data loader draws the voices at random without replacement
    for J < 4). ``J=None`` (or ``J=len(parts)``) mixes every part.

    Reads only the needed samples from disk each time, so a large training set
    costs no memory. The random stream comes from ``seed`` alone.

    Raises :class:`ChoirbenchError` when ``J`` is not between 1 and ``len(parts)``.
    """

    def __init__(self, root: Path, split: str, parts: tuple[str, ...] = PARTS, *, seed: int,
                 songs: list[str] | None = None, excerpt_s: float = EXCERPT_SECONDS, f0_source: str = "truth",
                 with_voices: bool = True, J: int | None = None):
        self.root = Path(root)
        self.with_voices = with_voices
        manifest = read_manifest(self.root)
        rows = manifest[manifest["split"] == split]
        if songs is not None:
            rows = rows[rows["song"].isin(songs)]
        self.parts = tuple(parts)
        self.J = len(self.parts) if J is None else int(J)
        if not 1 <= self.J <= len(self.parts):
            raise ChoirbenchError(f"training J={J}: must be between 1 and the {len(self.parts)} training parts "
                                  f"{''.join(self.parts)}")
        self.combinations = list(itertools.combinations(self.parts, self.J))
        self.n = int(round(excerpt_s * SAMPLE_RATE))
        self.f0_source = f0_source
        self.songs = []
        for song, song_rows in rows.groupby("song"):
            singers = {p: sorted(song_rows.loc[song_rows["part"] == p, "singer"]) for p in self.parts}
            length = int(song_rows["duration_s"].min() * SAMPLE_RATE)
            if all(singers.values()) and length >= self.n:
                self.songs.append((str(song), singers, length))
        if not self.songs:
            raise ChoirbenchError(f"{self.root}: no {split} songs with all parts {self.parts} "
                                  f"and at least {excerpt_s} s of audio")
        weights = np.array([length for _, _, length in self.songs], dtype=float)
        self.weights = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self) -> Example:
        song, singers, length = self.songs[self.rng.choice(len(self.songs), p=self.weights)]
        start = int(self.rng.integers(0, (length - self.n) // HOP + 1)) * HOP
        # J = len(parts) draws no combination: the random stream of an all-parts sampler stays as it was
        parts = self.combinations[self.rng.integers(len(self.combinations))] if len(self.combinations) > 1 \
            else self.parts
        chosen = tuple(singers[p][self.rng.integers(len(singers[p]))] for p in parts)
        return load_excerpt(self.root, song, parts, chosen, start, self.n,
                            f0_source=self.f0_source, with_notes=False)

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(mixtures [B, N], voices [B, J, N], f0 [B, J, T]) as float32 arrays.

        ``voices`` is None for unsupervised training (``with_voices=False``):
        the harness, not the method, guarantees that no isolated voice leaks.
        """
        examples = [self.sample() for _ in range(size)]
        voices = np.stack([e.voices for e in examples]).astype(np.float32) if self.with_voices else None
        return (np.stack([e.mixture for e in examples]).astype(np.float32), voices,
                np.stack([e.f0 for e in examples]).astype(np.float32))
