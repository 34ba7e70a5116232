"""Shared steps of the real-dataset converters: find the release, read audio at 16 kHz, write songs.

Every converter (bach10, csd, cantoria, dagstuhl, bcbq) finds its release
(``root`` in the config, else ``resources/<id>/``, else a download when asked,
else one error saying what to download and where to put it), then hands each
song to :class:`PreparedWriter`, which pads the stems of a song to a common
length, puts the F0 on the hop grid, re-estimates copied F0 annotations and
writes ``manifest.csv`` last.
"""
from __future__ import annotations

import logging
from math import gcd
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import scipy.signal

from choirbench import PARTS, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.f0 import n_frames_for, replace_duplicate_f0, to_hop_grid
from choirbench.data_prep.prepared import write_manifest
from choirbench.io import read_wav, write_csv, write_f0, write_notes, write_wav

log = logging.getLogger(__name__)

LENGTH_WARN_S = 1.0
"""Stems of one song that differ by more than this are reported (they are padded either way)."""
PIECES_FILE = "pieces.csv"
"""song -> piece id of a prepared dataset: which songs are the same composition (two halves of one
piece, or one piece in two datasets), so that training never sees a piece that is tested."""


# ----------------------------------------------------------------------------- finding the release

def release_root(kind: str, params: dict, *, probe: str | tuple[str, ...], how_to: str,
                 fetch: Callable[[Path], None] | None = None) -> Path:
    """Where the raw release is: ``params['root']``, else ``<resources>/<kind>/``.

    ``probe`` is a glob (searched recursively) that a usable copy contains, or a
    tuple of globs of which one must match (releases with several layouts).
    When neither holds it and ``params['download']`` is true, ``fetch(dest)``
    downloads it; otherwise a :class:`ChoirbenchError` carries ``how_to``.
    """
    if params.get("root"):
        root = Path(params["root"]).expanduser()
        if not root.is_dir():
            raise ChoirbenchError(f"datasets.{kind}.root: folder {root} not found")
        if not _contains(root, probe):
            raise ChoirbenchError(f"datasets.{kind}.root: {root} holds no file matching {probe!r}; {how_to}")
        return root
    dest = Path(params.get("resources") or "resources") / kind
    how_to = how_to.replace(f"resources/{kind}/", f"{dest}/")
    if _contains(dest, probe):
        return dest
    if params.get("download") and fetch is not None:
        fetch(dest)
        if not _contains(dest, probe):
            raise ChoirbenchError(f"{dest}: the download holds no file matching {probe!r}; "
                                  f"the release layout may have changed. {how_to}")
        return dest
    raise ChoirbenchError(f"dataset {kind!r} not found (looked in datasets.{kind}.root and {dest}/). {how_to}")


def _contains(folder: Path, probe: str | tuple[str, ...]) -> bool:
    probes = (probe,) if isinstance(probe, str) else probe
    return folder.is_dir() and any(next(folder.rglob(p), None) is not None for p in probes)


def find_one(root: Path, pattern: str) -> Path | None:
    hits = sorted(Path(root).rglob(pattern))
    return hits[0] if hits else None


# ----------------------------------------------------------------------------- audio

def load_audio(path: Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read any WAV as float32 mono (channels averaged) at ``sr`` (polyphase resampling).

    resample_poly with the exact ratio (160/441 for 44.1 kHz) has a linear-phase
    anti-aliasing filter, so stems resampled separately still sum to the
    resampled mixture.
    """
    audio, rate = read_wav(path, sr=None, downmix=True)
    return resample_audio(audio, rate, sr)


def resample_audio(audio: np.ndarray, rate: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    if rate == sr or len(audio) == 0:
        return np.asarray(audio, dtype=np.float32)
    g = gcd(int(rate), int(sr))
    out = scipy.signal.resample_poly(np.asarray(audio, dtype=np.float64), sr // g, int(rate) // g)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- writing songs

def select(items: list[str], wanted: list | None, what: str) -> list[str]:
    """Items named (or prefixed) by ``wanted``; all when empty. Unknown names are an error."""
    if not wanted:
        return list(items)
    chosen = []
    for want in wanted:
        hits = [item for item in items if matches(item, want)]
        if not hits:
            raise ChoirbenchError(f"{what}: no song matches {want!r} (songs: {', '.join(items)})")
        chosen += [h for h in hits if h not in chosen]
    return [item for item in items if item in chosen]


def matches(song: str, name) -> bool:
    """``name`` is the song id or its prefix up to a separator ("01" matches "01-AchGottundHerr")."""
    name = str(name)
    return song == name or any(song.startswith(name + sep) for sep in ("-", "_", " "))


def split_of(song: str, params: dict, default: str) -> str:
    """``test_songs`` / ``valid_songs`` / ``train_songs`` (names or prefixes) pick a song's split, else ``default``."""
    for split, key in (("test", "test_songs"), ("valid", "valid_songs"), ("train", "train_songs")):
        for name in params.get(key) or []:
            if matches(song, name):
                return split
    return default


class PreparedWriter:
    """Writes songs in the prepared format and, at :meth:`finish`, the manifest (last)."""

    def __init__(self, out_root: Path, dataset: str, pyin_params: dict | None = None):
        self.root = Path(out_root)
        self.dataset = dataset
        self.pyin_params = pyin_params
        self.rows: list[dict] = []
        self.pieces: dict[str, str] = {}
        self.root.mkdir(parents=True, exist_ok=True)

    def add_song(self, song: str, split: str, stems: dict, f0: dict, notes: dict | None = None, *,
                 piece: str | None = None) -> None:
        """Write one song.

        stems: (part, singer) -> 16 kHz audio. f0: (part, singer) -> either an
        array already on the hop grid or a (times_s, f0_hz) pair. notes: part ->
        [n, 3] onset_s, offset_s, midi, cut to the song (the prepared format's notes
        lie inside the audio). piece: the composition's id, shared by every song (in
        any dataset) that sings the same piece (default: the song id). Stems are
        zero-padded at the end to the longest stem of the song (no audio is lost;
        the padding is unvoiced).
        """
        self.pieces[song] = piece or song
        if not stems:
            raise ChoirbenchError(f"{self.dataset}: song {song!r} has no stems")
        missing = [p for p in PARTS if not any(k[0] == p for k in stems)]
        if missing:
            log.warning("%s: song %s has no %s part", self.dataset, song, "/".join(missing))
        lengths = {key: len(audio) for key, audio in stems.items()}
        n = max(lengths.values())
        if n - min(lengths.values()) > LENGTH_WARN_S * SAMPLE_RATE:
            log.warning("%s: stems of %s differ in length by %.1f s; shorter ones are padded with silence",
                        self.dataset, song, (n - min(lengths.values())) / SAMPLE_RATE)
        n_frames = n_frames_for(n)
        padded = {key: np.pad(audio, (0, n - len(audio))) for key, audio in stems.items()}
        grid = {}
        for key in stems:
            if key not in f0:
                raise ChoirbenchError(f"{self.dataset}: song {song!r} has no F0 for {key[0]}{key[1]}")
            track = f0[key]
            if isinstance(track, tuple):
                track = to_hop_grid(track[0], track[1], n_frames)
            track = np.asarray(track, dtype=np.float64)[:n_frames]
            grid[key] = np.pad(track, (0, n_frames - len(track)))
        grid = replace_duplicate_f0(f"{self.dataset}/{song}", grid, padded, self.pyin_params)
        for (part, singer), audio in sorted(padded.items()):
            audio_rel = f"audio/{song}/{part}{singer}.wav"
            f0_rel = f"f0/{song}/{part}{singer}.csv"
            write_wav(self.root / audio_rel, audio)
            write_f0(self.root / f0_rel, grid[part, singer])
            self.rows.append({"song": song, "part": part, "singer": str(singer), "split": split,
                              "audio": audio_rel, "f0": f0_rel, "duration_s": n / SAMPLE_RATE})
        for part, part_notes in (notes or {}).items():
            if part_notes is not None and len(part_notes):
                part_notes = np.asarray(part_notes, dtype=np.float64).reshape(-1, 3)
                inside = part_notes[:, 0] < n / SAMPLE_RATE  # a score may run past audio cut short
                if not inside.all():
                    log.info("%s: %s part %s: %d note(s) after the end of the audio left out", self.dataset, song,
                             part, int((~inside).sum()))
                part_notes = part_notes[inside]
                part_notes[:, 1] = np.minimum(part_notes[:, 1], n / SAMPLE_RATE)
                if len(part_notes):
                    write_notes(self.root / "score" / song / f"{part}.csv", part_notes)

    def finish(self) -> pd.DataFrame:
        if not self.rows:
            raise ChoirbenchError(f"{self.dataset}: nothing was converted (no songs selected or found)")
        frame = pd.DataFrame(self.rows)
        write_pieces(self.root, self.pieces)
        write_manifest(self.root, frame)
        counts = frame.drop_duplicates("song")["split"].value_counts().to_dict()
        log.info("%s: wrote %d stems of %d songs to %s (songs per split: %s)", self.dataset, len(frame),
                 frame["song"].nunique(), self.root, counts)
        return frame



def write_pieces(root: Path, pieces: dict[str, str]) -> None:
    write_csv(Path(root) / PIECES_FILE, pd.DataFrame({"song": list(pieces), "piece": list(pieces.values())}))


def read_pieces(root: Path, songs) -> dict[str, str]:
    """song -> piece id of a prepared dataset (a song is its own piece where the dataset says nothing)."""
    path = Path(root) / PIECES_FILE
    known = {}
    if path.is_file():
        frame = pd.read_csv(path, dtype=str)
        if list(frame.columns) != ["song", "piece"]:
            raise ChoirbenchError(f"{path}: expected columns song,piece, found {list(frame.columns)}")
        known = dict(zip(frame["song"], frame["piece"]))
    return {str(song): known.get(str(song), str(song)) for song in songs}
