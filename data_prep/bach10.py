"""Bach10 v1.1 (Duan & Pardo): ten Bach chorales played by violin, clarinet, saxophone and bassoon.

Release layout (one folder per piece)::

    NN-Name/NN-Name-{violin,clarinet,saxphone,bassoon}.wav   44.1 kHz mono stems
    NN-Name/NN-Name.wav                                      the mixture
    NN-Name/NN-Name-GTF0s.mat      GTF0s [4, T]: MIDI pitch per 10-ms frame (frame k at 23 + 10 k ms), 0 = silent
    NN-Name/NN-Name-GTNotes.mat    GTNotes {4 x 1} cells of notes, each [2, n]: frame numbers (1-based), MIDI
    NN-Name/NN-Name.mid / .txt / .asl                        score MIDI and alignment (not used)

Instrument -> part: violin = S, clarinet = A, saxphone (sic) = T, bassoon = B;
one player per part, so every singer id is ``"1"``. The stems are resampled
to 16 kHz with resample_poly (160/441); all stems of a piece have the same
length in the release (shorter ones would be zero-padded to the longest).
Notes (``score/``) come from GTNotes: each note spans its first to its last
annotated frame (+-5 ms) and its pitch is the rounded median of its frames.

Audio files are checked against the sha256 sums in ``checksums/bach10.sha256``
(taken from a verified copy), whether the copy was downloaded or given as ``root``.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm
import scipy.io

from choirbench import ChoirbenchError
from choirbench.data_prep.download import fetch_url, verify_sha256_list
from choirbench.data_prep.f0 import midi_to_hz
from choirbench.data_prep.release import PreparedWriter, load_audio, release_root, select, split_of

log = logging.getLogger(__name__)

INSTRUMENTS = {"S": ("violin",), "A": ("clarinet",), "T": ("saxphone", "saxophone"), "B": ("bassoon",)}
"""Part -> instrument name(s) in the file names (the release spells saxophone 'saxphone')."""
FRAME_HOP_S = 0.010
FIRST_FRAME_S = 0.023
CHECKSUMS = Path(__file__).with_name("checksums") / "bach10.sha256"

DEFAULTS = {
    "root": "",                 # a local copy of Bach10_v1.1 (folder holding NN-Name/ folders, at any depth)
    "resources": "resources",   # else looked for (and downloaded to) resources/bach10/
    "download": False,          # fetch the public archive into resources/bach10/ when missing
    "url": "http://www.ece.rochester.edu/projects/air/datasets/Bach10.zip",
    "archive_sha256": "",       # sha256 of the archive, when known; the audio is always checked anyway
    "verify": True,             # check the audio against checksums/bach10.sha256
    "songs": [],                # pieces to convert, by folder name or number ("01"); empty = all ten
    "valid_songs": ["07"],      # split by piece: 07 valid, 08-10 test, the other six train
    "test_songs": ["08", "09", "10"],
}

HOW_TO = ("Download Bach10 v1.1 (http://www.ece.rochester.edu/projects/air/datasets/Bach10.zip, about 140 MB), "
          "unpack it into resources/bach10/ (so that resources/bach10/.../01-AchGottundHerr/"
          "01-AchGottundHerr-violin.wav exists), or set datasets.bach10.root: PATH to an unpacked copy, "
          "or set datasets.bach10.download: true to fetch it automatically.")


def _fetch(params: dict):
    def fetch(dest: Path) -> None:
        try:
            fetch_url(params["url"], dest, params["archive_sha256"] or None)
        except ChoirbenchError as err:
            # The AIR lab's pages have moved more than once; the archive's address is not under our control.
            raise ChoirbenchError(
                f"{err}. The Bach10 archive address (datasets.bach10.url) may be stale: set datasets.bach10.url "
                f"to a current copy of Bach10_v1.1.zip, or unpack any copy into {dest}/ or point "
                "datasets.bach10.root at it; the audio is checked against checksums/bach10.sha256 either way"
            ) from None
    return fetch


def song_dirs(root: Path) -> tuple[Path, list[str]]:
    """The folder holding the NN-Name/ piece folders, and the piece names in order."""
    hits = sorted(Path(root).rglob("*-violin.wav"))
    if not hits:
        raise ChoirbenchError(f"{root}: no Bach10 piece folders (NN-Name/NN-Name-violin.wav) found. {HOW_TO}")
    base = hits[0].parent.parent
    songs = sorted(p.name for p in base.iterdir() if p.is_dir() and re.match(r"^\d\d-", p.name)
                   and (p / f"{p.name}-violin.wav").is_file())
    return base, songs


def stem_path(folder: Path, part: str) -> Path:
    for name in INSTRUMENTS[part]:
        path = folder / f"{folder.name}-{name}.wav"
        if path.is_file():
            return path
    raise ChoirbenchError(f"{folder}: no {'/'.join(INSTRUMENTS[part])} stem for part {part}")


def read_gt_f0(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """GTF0s.mat -> (frame times [T], F0 in Hz [4, T]) in S, A, T, B order."""
    try:
        midi = np.asarray(scipy.io.loadmat(path)["GTF0s"], dtype=np.float64)
    except (OSError, KeyError, ValueError) as err:
        raise ChoirbenchError(f"{path}: cannot read GTF0s ({err})") from None
    if midi.ndim != 2 or midi.shape[0] != 4:
        raise ChoirbenchError(f"{path}: GTF0s has shape {midi.shape}, expected [4, frames]")
    times = FIRST_FRAME_S + FRAME_HOP_S * np.arange(midi.shape[1])
    return times, midi_to_hz(midi)


def read_gt_notes(path: Path) -> list[np.ndarray]:
    """GTNotes.mat -> per part [n, 3] onset_s, offset_s, midi (rounded median of the note's frames)."""
    try:
        cells = scipy.io.loadmat(path)["GTNotes"]
    except (OSError, KeyError, ValueError) as err:
        raise ChoirbenchError(f"{path}: cannot read GTNotes ({err})") from None
    out = []
    for part_cell in np.asarray(cells).reshape(-1):
        notes = []
        for note in np.asarray(part_cell).reshape(-1):
            note = np.asarray(note, dtype=np.float64)
            if note.ndim != 2 or note.shape[0] != 2 or note.shape[1] == 0:
                continue
            frames, pitch = note[0], note[1]
            voiced = pitch > 0
            if not voiced.any():
                continue
            onset = FIRST_FRAME_S + FRAME_HOP_S * (frames.min() - 1) - FRAME_HOP_S / 2
            offset = FIRST_FRAME_S + FRAME_HOP_S * (frames.max() - 1) + FRAME_HOP_S / 2
            notes.append((max(onset, 0.0), offset, float(np.round(np.median(pitch[voiced])))))
        out.append(np.array(sorted(notes)).reshape(-1, 3))
    if len(out) != 4:
        raise ChoirbenchError(f"{path}: GTNotes has {len(out)} parts, expected 4")
    return out


def prepare(out_root: Path, params: dict) -> None:
    root = release_root("bach10", params, probe="*-violin.wav", how_to=HOW_TO, fetch=_fetch(params))
    base, songs = song_dirs(root)
    songs = select(songs, params["songs"], "datasets.bach10.songs")
    if params["verify"]:
        if not CHECKSUMS.is_file():
            raise ChoirbenchError(f"{CHECKSUMS}: checksum list missing from the installation")
        checked = verify_sha256_list(base, CHECKSUMS, only=set(songs))
        log.info("bach10: %d audio files match their sha256 sums", checked)
    writer = PreparedWriter(out_root, "bach10")
    for song in tqdm(songs, desc="bach10", unit="song", disable=None):
        folder = base / song
        times, f0_hz = read_gt_f0(folder / f"{song}-GTF0s.mat")
        notes_path = folder / f"{song}-GTNotes.mat"
        notes = read_gt_notes(notes_path) if notes_path.is_file() else [None] * 4
        stems, f0 = {}, {}
        for j, part in enumerate(("S", "A", "T", "B")):
            stems[part, "1"] = load_audio(stem_path(folder, part))
            f0[part, "1"] = (times, f0_hz[j])
        writer.add_song(song, split_of(song, params, "train"), stems, f0,
                        {part: notes[j] for j, part in enumerate(("S", "A", "T", "B"))})
    writer.finish()


def mixture_path(root: Path, song: str) -> Path:
    """The release's own mixture of a piece (used to check that stems sum to it)."""
    base, _ = song_dirs(root)
    return base / song / f"{song}.wav"
