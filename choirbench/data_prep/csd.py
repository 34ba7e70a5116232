"""Choral Singing Dataset (Cuesta et al. 2018), Zenodo record 1286570, CC BY 4.0.

Release layout (flat, usually under ``ChoralSingingDataset/``)::

    CSD_{ER,LI,ND}_{soprano,alto,tenor,bass}_{1..4}.wav   44.1 kHz mono, one singer each
    CSD_{ER,LI,ND}_{soprano,alto,tenor,bass}_{1..4}.f0    time, f0 (hand-corrected pYIN; 0 = unvoiced)

Songs: ER = El Rossinyol (134 s), LI = Locus Iste (190 s), ND = Nino Dios
(103 s), written as ``El_Rossinyol``, ``Locus_Iste``, ``Nino_Dios``; singers
``"1"``..``"4"`` as in the file names. All songs go to the test split by
default: the paper tests on CSD (see :func:`paper_test_singers`). Stems of a
song are zero-padded to the longest one.

The F0 file of Nino Dios tenor 3 is a copy of tenor 2's. Copies are detected
generally (within a song and part, see :func:`choirbench.data_prep.f0.replace_duplicate_f0`)
and re-estimated with pYIN, with a warning.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from choirbench import SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.download import zenodo_fetcher
from choirbench.data_prep.f0 import read_f0_table
from choirbench.data_prep.release import PreparedWriter, load_audio, release_root, select, split_of

log = logging.getLogger(__name__)

SONGS = {"ER": "El_Rossinyol", "LI": "Locus_Iste", "ND": "Nino_Dios"}
PART_NAMES = {"soprano": "S", "alto": "A", "tenor": "T", "bass": "B"}
FILE_RE = re.compile(r"^CSD_(ER|LI|ND)_(soprano|alto|tenor|bass)_(\d+)\.wav$")

DEFAULTS = {
    "root": "",                 # a local copy of the release (folder holding the CSD_*.wav files, at any depth)
    "resources": "resources",   # else looked for (and downloaded to) resources/csd/
    "download": False,          # fetch Zenodo record `zenodo_record` into resources/csd/ when missing
    "zenodo_record": "1286570",
    "zenodo_api": "https://zenodo.org/api",
    "songs": [],                # ER, LI, ND (or El_Rossinyol, ...); empty = all three
    "split": "test",            # split of every song not named below (the paper tests on CSD)
    "train_songs": [],
    "valid_songs": [],
    "test_songs": [],
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
    """song -> {(part, singer): wav path} for every CSD stem under ``root``."""
    found: dict[str, dict[tuple[str, str], Path]] = {}
    for path in sorted(Path(root).rglob("CSD_*.wav")):
        match = FILE_RE.match(path.name)
        if not match:
            continue
        code, part_name, singer = match.groups()
        found.setdefault(SONGS[code], {})[PART_NAMES[part_name], str(int(singer))] = path
    if not found:
        raise ChoirbenchError(f"{root}: no CSD_<song>_<part>_<n>.wav files found. {HOW_TO}")
    return found


def prepare(out_root: Path, params: dict) -> None:
    root = release_root("csd", params, probe="CSD_*_*_*.wav", how_to=HOW_TO, fetch=zenodo_fetcher(params))
    found = find_files(root)
    wanted = [SONGS.get(str(s), str(s)) for s in params["songs"]]
    songs = select([s for s in SONGS.values() if s in found], wanted, "datasets.csd.songs")
    writer = PreparedWriter(out_root, "csd")
    for song in songs:
        stems, f0 = {}, {}
        for key, wav in sorted(found[song].items()):
            f0_path = wav.with_suffix(".f0")
            if not f0_path.is_file():
                raise ChoirbenchError(f"{f0_path}: F0 annotation of {wav.name} is missing from the release")
            stems[key] = load_audio(wav)
            times, hz, _ = read_f0_table(f0_path, duration_s=len(stems[key]) / SAMPLE_RATE, audio=wav.name)
            f0[key] = (times, hz)
        writer.add_song(song, split_of(song, params, params["split"]), stems, f0)
    writer.finish()
