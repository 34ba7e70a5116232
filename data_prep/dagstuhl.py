"""Dagstuhl ChoirSet (Rosenzweig et al. 2020), release V1.2.3 (Zenodo record 4618287), CC BY 4.0.

The record is pinned: a download fetches exactly that release and checks every archive against the
checksum Zenodo publishes for it (older records, e.g. 3897181 = V1.0, have other files).

Release layout (usually under ``DagstuhlChoirSet_V<version>/``)::

    audio_wav_22050_mono/DCS_{piece}_{setting}_Take{nn}_{part}{n}_{mic}.wav   22.05 kHz, mic DYN|HSM|LRX
    audio_wav_22050_mono/DCS_{piece}_{setting}_Take{nn}_Stereo{,Reverb}_{STM,STL,STR}.wav   room mics (unused)
    annotations_csv_F0_manual/DCS_..._{part}{n}_LRX.csv        time, f0 (manual, larynx mic)
    annotations_csv_F0_CREPE/DCS_..._{part}{n}_{mic}.csv       time, f0, confidence
    annotations_csv_F0_PYIN/DCS_..._{part}{n}_{mic}.csv        time, f0 (< 0 = unvoiced), probability
    annotations_csv_scorerepresentation/DCS_..._Stereo_STM_{part}.csv   onset_s, offset_s, midi

piece: LI (Locus Iste), TP (Tebe Poem); setting: FullChoir, QuartetA, QuartetB
(and single-section takes). A song is one take: ``{piece}_{setting}_Take{nn}``,
e.g. ``LI_QuartetB_Take04``; the singer id is the singer's number in the file
name (``A2`` -> part A, singer ``"2"``), so one person keeps one id across takes.

Each singer's stem is the first available mic in ``mics`` (default DYN, then
HSM). A larynx microphone (LRX) records the throat's vibration, not the sound
that leaves the mouth: it has no vocal-tract resonances, so mixing it into a
stem changes what is separated. In the FullChoir takes several singers have
only a larynx mic; they are left out unless ``mics`` lists LRX explicitly (and
takes that then lack a part are skipped under ``require_all_parts``). The
singers were recorded together, so every close-up mic carries some bleed of
the others: the stems do not sum to a clean mixture of isolated voices (the
benchmark mixes the stems as they are). F0 ``truth``: the first available of
``f0_annotation`` (manual, then CREPE of the chosen mic with
``crepe_confidence``, then the release's pYIN); manual F0 exists only for the
quartet Take04 tracks (QuartetA/QuartetB), every other take gets CREPE. A
singer without any annotation gets librosa.pyin (warning). Stems of a take are
zero-padded to the longest. Pieces (``pieces.csv``): LI -> ``locus_iste`` (also
sung in CSD), TP -> ``tebe_poem``.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from choirbench import PARTS, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.download import zenodo_fetcher
from choirbench.data_prep.f0 import pyin_f0, read_f0_table
from choirbench.data_prep.release import PreparedWriter, load_audio, release_root, select, split_of

log = logging.getLogger(__name__)

FILE_RE = re.compile(r"^DCS_([A-Za-z]+)_([A-Za-z]+)_Take(\d+)_([SATB])(\d+)_([A-Z]+)\.wav$")
ANNOTATION_DIRS = {"manual": "annotations_csv_F0_manual", "crepe": "annotations_csv_F0_CREPE",
                   "pyin": "annotations_csv_F0_PYIN"}
SCORE_DIR = "annotations_csv_scorerepresentation"

DEFAULTS = {
    "root": "",                 # a local copy (folder holding audio_wav_22050_mono/, at any depth)
    "resources": "resources",   # else looked for (and downloaded to) resources/dagstuhl/
    "download": False,          # fetch Zenodo record `zenodo_record` into resources/dagstuhl/ when missing
    "zenodo_record": "4618287",  # V1.2.3, pinned
    "zenodo_api": "https://zenodo.org/api",
    "settings": ["FullChoir", "QuartetA", "QuartetB"],  # takes of these settings are converted
    "songs": [],                # take ids (LI_QuartetB_Take04) or prefixes (LI_QuartetB); empty = all
    "mics": ["DYN", "HSM"],     # stem of each singer: first mic available in this order (add LRX to allow larynx mics)
    "f0_annotation": ["manual", "crepe", "pyin"],
    "crepe_confidence": 0.5,
    "require_all_parts": True,  # skip takes without all of S, A, T, B
    "split": "train",
    "train_songs": [],
    "valid_songs": [],
    "test_songs": [],
}

PIECES = {"LI": "locus_iste", "TP": "tebe_poem"}

HOW_TO = ("Download the Dagstuhl ChoirSet V1.2.3 from Zenodo record 4618287 (https://zenodo.org/records/4618287, "
          "about 5 GB), unpack it into resources/dagstuhl/ (so that resources/dagstuhl/.../audio_wav_22050_mono/"
          "DCS_LI_QuartetB_Take04_S1_DYN.wav exists), or set datasets.dagstuhl.root: PATH to an unpacked copy, "
          "or set datasets.dagstuhl.download: true to fetch it automatically.")


def find_takes(root: Path) -> tuple[Path, dict[str, dict[tuple[str, str], dict[str, Path]]]]:
    """(release folder, take -> {(part, singer): {mic: wav}})."""
    takes: dict[str, dict[tuple[str, str], dict[str, Path]]] = {}
    base = None
    for path in sorted(Path(root).rglob("DCS_*.wav")):
        match = FILE_RE.match(path.name)
        if not match:
            continue
        piece, setting, take, part, singer, mic = match.groups()
        base = base or path.parent.parent
        song = f"{piece}_{setting}_Take{take}"
        takes.setdefault(song, {}).setdefault((part, str(int(singer))), {})[mic] = path
    if not takes:
        raise ChoirbenchError(f"{root}: no DCS_<piece>_<setting>_Take<nn>_<part><n>_<mic>.wav files found. {HOW_TO}")
    return base, takes


def find_annotation(base: Path, kind: str, song: str, part: str, singer: str, mics: list[str]) -> Path | None:
    folder = base / ANNOTATION_DIRS[kind]
    if not folder.is_dir():
        return None
    for mic in mics:
        path = folder / f"DCS_{song}_{part}{singer}_{mic}.csv"
        if path.is_file():
            return path
    others = sorted(folder.glob(f"DCS_{song}_{part}{singer}_*.csv"))
    return others[0] if others else None


def read_score(base: Path, song: str, part: str) -> np.ndarray | None:
    folder = base / SCORE_DIR
    hits = sorted(folder.glob(f"DCS_{song}_*_{part}.csv")) if folder.is_dir() else []
    if not hits:
        return None
    rows = []
    for line in hits[0].read_text().splitlines():
        fields = [x for x in re.split(r"[,;\t ]+", line.strip()) if x]
        if len(fields) < 3:
            continue
        try:
            rows.append([float(x) for x in fields[:3]])
        except ValueError:
            continue  # header
    return np.array(rows).reshape(-1, 3)


def prepare(out_root: Path, params: dict) -> None:
    root = release_root("dagstuhl", params, probe="DCS_*_*_Take*_[SATB]*_*.wav", how_to=HOW_TO,
                        fetch=zenodo_fetcher(params))
    base, takes = find_takes(root)
    settings = set(params["settings"] or [])
    candidates = sorted(t for t in takes if not settings or t.split("_")[1] in settings)
    songs = select(candidates, params["songs"], "datasets.dagstuhl.songs")
    mics = [m.upper() for m in params["mics"]]
    for kind in params["f0_annotation"]:
        if kind not in ANNOTATION_DIRS:
            raise ChoirbenchError(f"datasets.dagstuhl.f0_annotation: unknown {kind!r} "
                                  f"(known: {sorted(ANNOTATION_DIRS)})")
    writer = PreparedWriter(out_root, "dagstuhl")
    for song in tqdm(songs, desc="dagstuhl", unit="song", disable=None):
        singers = takes[song]
        present = {part for part, _ in singers}
        if params["require_all_parts"] and not set(PARTS) <= present:
            log.info("dagstuhl: skipping %s (parts %s only)", song, "".join(p for p in PARTS if p in present))
            continue
        stems, f0 = {}, {}
        for (part, singer), by_mic in sorted(singers.items()):
            mic = next((m for m in mics if m in by_mic), None)
            if mic is None:
                log.info("dagstuhl: %s %s%s has none of the mics %s%s; skipped", song, part, singer, mics,
                     " (only a larynx mic: add LRX to datasets.dagstuhl.mics to use it)" if "LRX" in by_mic else "")
                continue
            stems[part, singer] = load_audio(by_mic[mic])
            f0[part, singer] = _annotation(base, song, part, singer, [mic] + mics, stems[part, singer], params)
        if not stems:
            continue
        notes = {part: read_score(base, song, part) for part in PARTS}
        piece = song.split("_")[0]
        writer.add_song(song, split_of(song, params, params["split"]), stems, f0, notes,
                        piece=PIECES.get(piece, piece.lower()))
    writer.finish()


def annotation_file(base, song, part, singer, mics, params) -> tuple[Path, str] | None:
    """(path, kind) of the F0 annotation the converter reads for one singer: the first of ``f0_annotation``."""
    for kind in params["f0_annotation"]:
        path = find_annotation(base, kind, song, part, singer, mics)
        if path is not None:
            return path, kind
    return None


def read_annotation(path: Path, kind: str, params: dict, duration_s: float, audio: str):
    """(times, F0) of one annotation file by the strict reader; CREPE frames below ``crepe_confidence`` unvoiced."""
    threshold = float(params["crepe_confidence"]) if kind == "crepe" else None
    times, hz, _ = read_f0_table(path, duration_s=duration_s, audio=audio, confidence_threshold=threshold)
    return times, hz


def _annotation(base, song, part, singer, mics, audio, params):
    found = annotation_file(base, song, part, singer, mics, params)
    if found is not None:
        return read_annotation(*found, params, len(audio) / SAMPLE_RATE, f"the {song} {part}{singer} stem")
    log.warning("dagstuhl: %s %s%s has no F0 annotation; estimated with pYIN", song, part, singer)
    return pyin_f0(audio, part)
