"""Choral Singing Dataset (Cuesta et al. 2018), Zenodo record 1286570, CC BY 4.0.

1286570 is the record the paper's authors link (schufo/umss and its follow-ups); some other public
loaders fetch record 2649950, a later deposit. Both are read (the converter works from the file
names, not the record), and ``zenodo_record`` picks which one ``download: true`` fetches.

Release layout (flat, usually under ``ChoralSingingDataset/``)::

    CSD_{ER,LI,ND}_{soprano,alto,tenor,bass}_{1..4}.wav   44.1 kHz mono, one singer each
    CSD_{ER,LI,ND}_{soprano,alto,tenor,bass}_{1..4}.f0    time, f0 (hand-corrected pYIN; 0 = unvoiced)

Songs: ER = El Rossinyol (134 s), LI = Locus Iste (190 s), ND = Nino Dios
(103 s), written as ``El_Rossinyol``, ``Locus_Iste``, ``Nino_Dios``; singers
``"1"``..``"4"`` as in the file names. All songs go to the test split by
default: the paper tests on CSD (see :func:`paper_test_singers`). Stems of a
song are zero-padded to the longest one.

The layout the paper's authors worked with (schufo/umss) is read as well::

    <Song>/audio_16kHz/<song>_<Voice>_<id>.wav           e.g. nino_Soprano_405.wav, rossinyol_Tenor2-09.wav,
                                                         locus_Bajos_3-02.wav (16 kHz; any bit depth, float64 too)
    <Song>/crepe_f0_center/<stem>_frequency.npy          CREPE F0 on the 16-ms grid (frame k at k * 16 ms)
    <Song>/crepe_f0_center/<stem>_confidence.npy         voiced where the confidence reaches ``crepe_confidence``
                                                         (0.4, the authors' threshold)

Voice names Soprano, ContraAlt/Alto, Tenor/tenor, Bajos/Bass; the singer number
is the leading digit of the id (``405`` -> 4, ``2-09`` -> 2, ``3-02`` -> 3).
Stems without CREPE files get librosa.pyin (warning).

Per-part MIDI scores, ``CSD_{ER,LI,ND}_{soprano,alto,tenor,bass}.mid`` anywhere under the root
(a suffix such as ``_midi`` is allowed), become the song's notes (``score/``, for ``f0_source: score``
and nmf1) only after a check against the annotated F0 of that part's singers
(:mod:`choirbench.data_prep.score_notes`): the best global offset within ``score_max_offset_s``
(1 s) and the share of co-voiced frames within 50 cents there. Within ``score_tolerance_s`` the
score is used as it is; beyond, it is shifted by the offset (a warning says by how much) or, with
``score_misaligned: refuse``, refused; a score whose pitches agree on fewer than
``score_min_agreement`` of the frames at any offset is refused, naming the file
(``notes_sources: []`` converts without notes).

Every CSD song is its own piece (``pieces.csv``: ``locus_iste`` is also sung in
the Dagstuhl ChoirSet, so a combined dataset never trains on it when testing on CSD).

The F0 file of Nino Dios tenor 3 is a copy of tenor 2's. Copies are detected
generally (within a song and part, see :func:`choirbench.data_prep.f0.replace_duplicate_f0`)
and re-estimated with pYIN, with a warning.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.download import zenodo_fetcher
from choirbench.data_prep.f0 import n_frames_for, pyin_f0, read_f0_table, to_hop_grid
from choirbench.data_prep.score_notes import aligned_notes, read_part_notes
from choirbench.io import F0_MAX_HZ, F0_MIN_HZ
from choirbench.data_prep.release import PreparedWriter, load_audio, release_root, select, split_of

log = logging.getLogger(__name__)

SONGS = {"ER": "El_Rossinyol", "LI": "Locus_Iste", "ND": "Nino_Dios"}
PART_NAMES = {"soprano": "S", "alto": "A", "tenor": "T", "bass": "B"}
FILE_RE = re.compile(r"^CSD_(ER|LI|ND)_(soprano|alto|tenor|bass)_(\d+)\.wav$")
# a part's notes: its note annotation CSD_<song>_<voice>_notes.lab, or a MIDI score CSD_<song>_<voice>.mid
# (a suffix such as _midi is allowed)
NOTES_RE = {"lab": re.compile(r"^CSD_(ER|LI|ND)_(soprano|alto|tenor|bass)_notes\.lab$", re.IGNORECASE),
            "midi": re.compile(r"^CSD_(ER|LI|ND)_(soprano|alto|tenor|bass)(?:_[a-z]+)?\.midi?$", re.IGNORECASE)}
# the authors' layout: <song>_<Voice><id>.wav with an optional "_" before the id
AUTHORS_FILE_RE = re.compile(r"^([a-z]+)_(soprano|contraalt|alto|tenor|bajos|bass)_?(\d)[\d-]*\.wav$", re.IGNORECASE)
AUTHORS_SONGS = {"rossinyol": "El_Rossinyol", "locus": "Locus_Iste", "nino": "Nino_Dios"}
AUTHORS_PARTS = {"soprano": "S", "contraalt": "A", "alto": "A", "tenor": "T", "bajos": "B", "bass": "B"}
PIECES = {"El_Rossinyol": "el_rossinyol", "Locus_Iste": "locus_iste", "Nino_Dios": "nino_dios"}

DEFAULTS = {
    "root": "",                 # a local copy of the release (folder holding the CSD_*.wav files, at any depth)
    "resources": "resources",   # else looked for (and downloaded to) resources/csd/
    "download": False,          # fetch Zenodo record `zenodo_record` into resources/csd/ when missing
    "zenodo_record": "1286570",
    "zenodo_api": "https://zenodo.org/api",
    "songs": [],                # ER, LI, ND (or El_Rossinyol, ...); empty = all three
    "crepe_confidence": 0.4,    # the authors' layout: CREPE frames below this confidence are unvoiced
    "split": "test",            # split of every song not named below (the paper tests on CSD)
    "train_songs": [],
    "valid_songs": [],
    "test_songs": [],
    "notes_sources": ["lab", "midi"],  # a part's notes (f0_source: score, nmf1): the first of these present,
                                        # once checked; lab = the release's *_notes.lab, midi = *.mid; [] = none
    "score_max_offset_s": 1.0,  # the check: best global offset of a score against its part's F0 within +-this
    "score_tolerance_s": 0.05,  # a best offset within this is aligned (no shift)
    "score_min_agreement": 0.5,  # share of co-voiced frames within 50 cents at the best offset, else refused
    "score_misaligned": "shift",  # a score offset beyond the tolerance: shift (logged) or refuse
}

HOW_TO = ("Download the Choral Singing Dataset from Zenodo record 1286570 (https://zenodo.org/records/1286570, "
          "about 1.1 GB), unpack it into resources/csd/ (so that resources/csd/.../CSD_ER_soprano_1.wav exists), "
          "or set datasets.csd.root: PATH to an unpacked copy, or set datasets.csd.download: true to fetch it "
          "automatically.")

PAPER_TEST_SINGERS = {"El_Rossinyol": "2", "Locus_Iste": "3", "Nino_Dios": "4"}


def paper_test_singers() -> dict[str, str]:
    """The paper's CSD test protocol: one singer per part for each song (same number in every part).

    Singer 2 for El Rossinyol, 3 for Locus Iste, 4 for Nino Dios; with
    non-overlapping 4-s excerpts from the second one on this gives
    32 + 46 + 24 = 102 excerpts for J = 4.
    """
    return dict(PAPER_TEST_SINGERS)


def find_files(root: Path) -> dict[str, dict[tuple[str, str], Path]]:
    """song -> {(part, singer): wav path} for every CSD stem under ``root`` (either layout)."""
    found: dict[str, dict[tuple[str, str], Path]] = {}
    for path in sorted(Path(root).rglob("CSD_*.wav")):
        match = FILE_RE.match(path.name)
        if not match:
            continue
        code, part_name, singer = match.groups()
        found.setdefault(SONGS[code], {})[PART_NAMES[part_name], str(int(singer))] = path
    for path in sorted(Path(root).rglob("audio_16kHz/*.wav")):
        match = AUTHORS_FILE_RE.match(path.name)
        if not match or match.group(1).lower() not in AUTHORS_SONGS:
            continue
        song = AUTHORS_SONGS[match.group(1).lower()]
        key = (AUTHORS_PARTS[match.group(2).lower()], match.group(3))
        stems = found.setdefault(song, {})
        if key in stems and stems[key] != path:
            raise ChoirbenchError(f"{path}: a second file for {song} {key[0]}{key[1]} (first: {stems[key]}); "
                                  "remove one copy")
        stems[key] = path
    if not found:
        raise ChoirbenchError(f"{root}: no CSD_<song>_<part>_<n>.wav (or <Song>/audio_16kHz/<song>_<Voice>_<id>.wav) "
                              f"files found. {HOW_TO}")
    return found


def find_scores(root: Path, sources: list[str]) -> dict[str, dict[str, Path]]:
    """song -> {part: notes file}: per part the first of ``sources`` (``lab``, ``midi``) found under ``root``.

    Two files of one source for one part are an error naming both.
    """
    unknown = [s for s in sources if s not in NOTES_RE]
    if unknown:
        raise ChoirbenchError(f"datasets.csd.notes_sources: unknown {unknown} (known: {sorted(NOTES_RE)})")
    found: dict[tuple[str, str, str], Path] = {}
    for path in sorted(Path(root).rglob("*")):
        for source in sources:
            match = NOTES_RE[source].match(path.name)
            if not match or not path.is_file():
                continue
            key = (SONGS[match.group(1).upper()], PART_NAMES[match.group(2).lower()], source)
            if key in found:
                raise ChoirbenchError(f"{path}: a second {source} file for {key[0]} part {key[1]} "
                                      f"(first: {found[key]}); remove one")
            found[key] = path
    chosen: dict[str, dict[str, Path]] = {}
    for source in reversed(sources):  # the first source listed wins
        for (song, part, kind), path in found.items():
            if kind == source:
                chosen.setdefault(song, {})[part] = path
    return chosen


def part_notes(song: str, scores: dict[str, Path], f0: dict, n_samples: dict, params: dict) -> dict[str, np.ndarray]:
    """part -> aligned notes of ``song``'s MIDI scores, each checked against the F0 of its part's singers.

    f0: (part, singer) -> F0 as read (a (times, Hz) pair or a hop-grid track); n_samples: (part, singer)
    -> the stem's length at 16 kHz. See :func:`choirbench.data_prep.score_notes.aligned_notes`.
    """
    notes = {}
    for part, path in sorted(scores.items()):
        tracks = []
        for key in sorted(k for k in f0 if k[0] == part):
            track = f0[key]
            n_frames = n_frames_for(n_samples[key])
            tracks.append(to_hop_grid(track[0], track[1], n_frames) if isinstance(track, tuple) else track)
        if not tracks:
            log.info("csd: %s: no singer of part %s; %s not used", song, part, path.name)
            continue
        notes[part] = aligned_notes(path, read_part_notes(path), tracks, params, f"{song} part {part}", "datasets.csd")
    return notes


def read_annotation(wav: Path, params: dict, audio: np.ndarray, part: str):
    """F0 of one stem: the release's ``.f0`` next to it, else the authors' CREPE arrays, else pYIN.

    Returns (times_s, f0_hz) or a track already on the hop grid.
    """
    f0_path = wav.with_suffix(".f0")
    if f0_path.is_file():
        times, hz, _ = read_f0_table(f0_path, duration_s=len(audio) / SAMPLE_RATE, audio=wav.name)
        return times, hz
    crepe = wav.parent.parent / "crepe_f0_center"
    frequency, confidence = crepe / f"{wav.stem}_frequency.npy", crepe / f"{wav.stem}_confidence.npy"
    if frequency.is_file() and confidence.is_file():
        try:
            hz = np.load(frequency, allow_pickle=False).astype(np.float64).ravel()
            conf = np.load(confidence, allow_pickle=False).astype(np.float64).ravel()
        except (OSError, ValueError) as err:
            raise ChoirbenchError(f"{frequency}: unreadable CREPE array ({err})") from None
        if len(hz) != len(conf):
            raise ChoirbenchError(f"{confidence}: {len(conf)} frames, but {frequency.name} has {len(hz)}")
        hz = np.where(np.isfinite(hz) & (conf >= float(params["crepe_confidence"])), hz, 0.0)
        n_frames = n_frames_for(len(audio))
        if len(hz) > n_frames + 2:  # CREPE (center=True) gives one frame per hop, plus the last
            raise ChoirbenchError(f"{frequency}: {len(hz)} frames of 16 ms = {len(hz) * HOP / SAMPLE_RATE:.2f} s, "
                                  f"longer than {wav.name} ({len(audio) / SAMPLE_RATE:.2f} s): not this stem's F0")
        voiced = hz[hz > 0]
        if len(voiced) and (voiced.min() < F0_MIN_HZ or voiced.max() > F0_MAX_HZ):
            raise ChoirbenchError(f"{frequency}: voiced F0 outside {F0_MIN_HZ:g}-{F0_MAX_HZ:g} Hz "
                                  f"({voiced.min():.1f}-{voiced.max():.1f} Hz): not an F0 track in Hz")
        return hz  # CREPE's 16-ms grid is ours
    if FILE_RE.match(wav.name):
        raise ChoirbenchError(f"{f0_path}: F0 annotation of {wav.name} is missing from the release")
    log.warning("csd: %s has no F0 annotation (no %s); estimated with pYIN", wav.name, frequency)
    return pyin_f0(audio, part)


def prepare(out_root: Path, params: dict) -> None:
    root = release_root("csd", params, probe=("CSD_*_*_*.wav", "audio_16kHz/*_*.wav"), how_to=HOW_TO, fetch=zenodo_fetcher(params))
    found = find_files(root)
    wanted = [SONGS.get(str(s), str(s)) for s in params["songs"]]
    songs = select([s for s in SONGS.values() if s in found], wanted, "datasets.csd.songs")
    scores = find_scores(root, list(params["notes_sources"]))
    writer = PreparedWriter(out_root, "csd")
    for song in tqdm(songs, desc="csd", unit="song", disable=None):
        stems, f0 = {}, {}
        for key, wav in sorted(found[song].items()):
            stems[key] = load_audio(wav)
            f0[key] = read_annotation(wav, params, stems[key], key[0])
        notes = part_notes(song, scores.get(song, {}), f0, {k: len(a) for k, a in stems.items()}, params)
        writer.add_song(song, split_of(song, params, params["split"]), stems, f0, notes, piece=PIECES[song])
    writer.finish()
