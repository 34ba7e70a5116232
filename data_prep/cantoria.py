"""Cantoria (Cuesta et al.), Zenodo record 5851070: 14 recordings of 11 pieces, one singer per part.

Release layout (usually under ``CantoriaDataset_v1.0.0/``)::

    Audio/Cantoria_{CODE}_{S,A,T,B}.wav     44.1 kHz, one singer per part
    Audio/Cantoria_{CODE}_Mix*.wav          the release's mixes (not used: some are accompanied by an organ,
                                            so they are not the sum of the voices; mixtures are built from the stems)
    F0_pyin/Cantoria_{CODE}_{S,A,T,B}.csv   time, f0 (pYIN)
    F0_crepe/Cantoria_{CODE}_{S,A,T,B}.csv  time, f0[, confidence] (CREPE)

Song ids are the codes (e.g. ``EJB1``), every singer is ``"1"``. EJB1/EJB2,
LJT1/LJT2 and LBM1/LBM2 are the two halves of one piece each, sung by the same
singers: the piece id is the code without its trailing digit (``pieces.csv``),
and splits go by piece, never by code — naming ``EJB1`` in ``valid_songs``
moves ``EJB2`` too, and naming the halves in two different splits is an error.
The ``truth`` F0 is the release's pYIN track by default (``f0_annotation:
crepe`` picks CREPE, voiced where its confidence reaches ``crepe_confidence``,
0.4 as in the follow-up paper of Chouteau et al.). Multichannel files are
averaged to mono; stems of a song are zero-padded to the longest. Split: every
piece trains except ``valid_songs`` / ``test_songs`` (the public stand-in for the
paper's training set; CSD is the test set).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from choirbench import SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.download import zenodo_fetcher
from choirbench.data_prep.f0 import read_f0_table
from choirbench.data_prep.release import PreparedWriter, load_audio, release_root, select, split_of

log = logging.getLogger(__name__)

FILE_RE = re.compile(r"^Cantoria_([A-Za-z0-9]+)_([SATB])\.wav$")

DEFAULTS = {
    "root": "",                 # a local copy (folder holding Audio/, F0_pyin/, F0_crepe/, at any depth)
    "resources": "resources",   # else looked for (and downloaded to) resources/cantoria/
    "download": False,          # fetch Zenodo record `zenodo_record` into resources/cantoria/ when missing
    "zenodo_record": "5851070",
    "zenodo_api": "https://zenodo.org/api",
    "songs": [],                # song codes to convert; empty = all
    "f0_annotation": "pyin",    # pyin (F0_pyin/) or crepe (F0_crepe/)
    "crepe_confidence": 0.4,    # CREPE frames below this confidence are unvoiced
    "split": "train",
    "train_songs": [],
    "valid_songs": ["THM"],
    "test_songs": [],
}

HOW_TO = ("Download Cantoria from Zenodo record 5851070 (https://zenodo.org/records/5851070), unpack it into "
          "resources/cantoria/ (so that resources/cantoria/.../Audio/Cantoria_EJB1_S.wav exists), or set "
          "datasets.cantoria.root: PATH to an unpacked copy, or set datasets.cantoria.download: true to fetch "
          "it automatically.")


def find_files(root: Path) -> dict[str, dict[str, Path]]:
    """song code -> {part: wav path}."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(Path(root).rglob("Cantoria_*.wav")):
        match = FILE_RE.match(path.name)
        if match:
            found.setdefault(match.group(1), {})[match.group(2)] = path
    if not found:
        raise ChoirbenchError(f"{root}: no Cantoria_<CODE>_<S|A|T|B>.wav files found. {HOW_TO}")
    return found


def annotation_path(wav: Path, kind: str) -> Path:
    """F0 CSV of a stem: ``<release>/F0_<kind>/<stem>.csv`` next to ``Audio/``."""
    folder = {"pyin": "F0_pyin", "crepe": "F0_crepe"}[kind]
    for base in (wav.parent.parent, wav.parent):
        for name in (folder, folder.lower()):
            path = base / name / f"{wav.stem}.csv"
            if path.is_file():
                return path
    raise ChoirbenchError(f"{wav}: no {folder}/{wav.stem}.csv annotation found next to Audio/")


def read_annotation(wav: Path, params: dict, duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(times, F0) of a stem's annotation; CREPE frames below ``crepe_confidence`` are unvoiced."""
    kind = params["f0_annotation"]
    if kind not in ("pyin", "crepe"):
        raise ChoirbenchError(f"datasets.cantoria.f0_annotation must be pyin or crepe, got {kind!r}")
    threshold = float(params["crepe_confidence"]) if kind == "crepe" else None
    times, hz, _ = read_f0_table(annotation_path(wav, kind), duration_s=duration_s, audio=wav.name,
                                 confidence_threshold=threshold)
    return times, hz


def piece_of(code: str) -> str:
    """The piece a recording code belongs to: ``EJB1`` and ``EJB2`` are halves of ``EJB``."""
    return re.sub(r"\d+$", "", code) or code


def piece_splits(codes: list[str], params: dict) -> dict[str, str]:
    """code -> split, decided per piece: every half of a piece goes where any half of it is named."""
    by_piece: dict[str, set[str]] = {}
    for code in codes:
        split = split_of(code, params, "") or split_of(piece_of(code), params, "")
        by_piece.setdefault(piece_of(code), set()).update({split} if split else set())
    out = {}
    for code in codes:
        named = by_piece[piece_of(code)]
        if len(named) > 1:
            halves = ", ".join(c for c in codes if piece_of(c) == piece_of(code))
            raise ChoirbenchError(f"datasets.cantoria: {halves} are one piece ({piece_of(code)}) but are named in "
                                  f"the splits {sorted(named)}; name the piece in one split only")
        out[code] = next(iter(named)) if named else params["split"]
    return out


def prepare(out_root: Path, params: dict) -> None:
    root = release_root("cantoria", params, probe="Cantoria_*_[SATB].wav", how_to=HOW_TO, fetch=zenodo_fetcher(params))
    found = find_files(root)
    songs = select(sorted(found), params["songs"], "datasets.cantoria.songs")
    splits = piece_splits(sorted(found), params)
    writer = PreparedWriter(out_root, "cantoria")
    for song in tqdm(songs, desc="cantoria", unit="song", disable=None):
        stems, f0 = {}, {}
        for part, wav in sorted(found[song].items()):
            stems[part, "1"] = load_audio(wav)
            f0[part, "1"] = read_annotation(wav, params, len(stems[part, "1"]) / SAMPLE_RATE)
        writer.add_song(song, splits[song], stems, f0, piece=piece_of(song).lower())
    writer.finish()
