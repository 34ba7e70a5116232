"""Dagstuhl ChoirSet (Rosenzweig et al. 2020), release V1.2.3 (Zenodo record 4618287), CC BY 4.0.

The record is pinned: a download fetches exactly that release and checks every archive against the
checksum Zenodo publishes for it (older records, e.g. 3897181 = V1.0, have other files). Every file the
converter reads is then checked against the per-file md5 index of V1.2.3 shipped in
``checksums/dagstuhl_choirset_1.2.3.md5`` (4135 files, from mirdata's published index), before
anything is written: a wrong md5 is named with the expected and actual value, and a file the
release holds and the converter would read (a dynamic-mic stem, a manual annotation) but which is
missing is named rather than silently replaced by the next mic or by pYIN (``verify: false`` turns
this off, ``md5_index`` points at another index). Digests are remembered per (size, mtime) in
``.choirbench_md5.tsv`` in the release folder, so a second run hashes nothing.

Release layout (usually under ``DagstuhlChoirSet_V<version>/``)::

    audio_wav_22050_mono/DCS_{piece}_{setting}_Take{nn}_{part}{n}_{mic}.wav   22.05 kHz, mic DYN|HSM|LRX
    audio_wav_22050_mono/DCS_{piece}_{setting}_Take{nn}_Stereo_{STM,STL,STR}.wav, ..._StereoReverb_STM.wav
                                                               room mics (unused)
    annotations_csv_F0_manual/DCS_..._{part}{n}_LRX.csv        time, f0 (manual, larynx mic)
    annotations_csv_F0_CREPE/DCS_..._{part}{n}_{mic}.csv       time, f0, confidence
    annotations_csv_F0_PYIN/DCS_..._{part}{n}_{mic}.csv        time, f0 (< 0 = unvoiced), probability
    annotations_csv_scorerepresentation/DCS_..._Stereo_STM_{part}.csv   onset_s, offset_s, midi

piece: LI (Locus Iste), TP (Tebe Poem); setting: FullChoir, QuartetA, QuartetB,
Basses (the bass section alone). In V1.2.3 (its md5 index): LI 3 FullChoir, 6
QuartetA, 5 QuartetB and 6 Basses takes, TP 4 FullChoir and 2 QuartetA takes; the
quartet singers are A1 B1 S2 T1 (QuartetA) and A2 B2 S1 T2 (QuartetB), all with a
dynamic mic. Recordings not named ``Take{nn}`` (solos, ``Overacted``, ``Outtake``,
the ``SE`` intonation exercises) are not converted. A song is one take: ``{piece}_{setting}_Take{nn}``,
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
from choirbench.data_prep.file_index import Md5Cache, check_files, read_md5_index
from choirbench.data_prep.release import PreparedWriter, load_audio, release_root, select, split_of

log = logging.getLogger(__name__)

FILE_RE = re.compile(r"^DCS_([A-Za-z]+)_([A-Za-z]+)_Take(\d+)_([SATB])(\d+)_([A-Z]+)\.wav$")
ANNOTATION_DIRS = {"manual": "annotations_csv_F0_manual", "crepe": "annotations_csv_F0_CREPE",
                   "pyin": "annotations_csv_F0_PYIN"}
SCORE_DIR = "annotations_csv_scorerepresentation"
MD5_INDEX = Path(__file__).with_name("checksums") / "dagstuhl_choirset_1.2.3.md5"
"""md5 of each of the 4135 files of V1.2.3 (from mirdata's published index; provenance in its header)."""

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
    "verify": True,             # check every file read against the release's per-file md5 index (below)
    "md5_index": "",            # that index; empty = the shipped checksums/dagstuhl_choirset_1.2.3.md5
}

PIECES = {"LI": "locus_iste", "TP": "tebe_poem"}

HOW_TO = ("Download the Dagstuhl ChoirSet V1.2.3 from Zenodo record 4618287 (https://zenodo.org/records/4618287, "
          "about 5 GB), unpack it into resources/dagstuhl/ (so that resources/dagstuhl/.../audio_wav_22050_mono/"
          "DCS_LI_QuartetB_Take04_S1_DYN.wav exists), or set datasets.dagstuhl.root: PATH to an unpacked copy, "
          "or set datasets.dagstuhl.download: true to fetch it automatically.")


def listing(base: Path) -> set[str]:
    """Every file under ``base``, as a path relative to it (``/``-separated, as in the md5 index)."""
    return {p.relative_to(base).as_posix() for p in Path(base).rglob("*") if p.is_file()}


def takes_in(files) -> dict[str, dict[tuple[str, str], dict[str, str]]]:
    """take -> {(part, singer): {mic: relative path}} of the close-up mic WAVs among ``files``."""
    takes: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
    for rel in sorted(files):
        match = FILE_RE.match(rel.rsplit("/", 1)[-1])
        if not match:
            continue
        piece, setting, take, part, singer, mic = match.groups()
        takes.setdefault(f"{piece}_{setting}_Take{take}", {}).setdefault((part, str(int(singer))), {})[mic] = rel
    return takes


def find_takes(root: Path) -> tuple[Path, dict[str, dict[tuple[str, str], dict[str, str]]]]:
    """(release folder, take -> {(part, singer): {mic: path relative to the release folder}})."""
    first = next((p for p in sorted(Path(root).rglob("DCS_*.wav")) if FILE_RE.match(p.name)), None)
    if first is None:
        raise ChoirbenchError(f"{root}: no DCS_<piece>_<setting>_Take<nn>_<part><n>_<mic>.wav files found. {HOW_TO}")
    base = first.parent.parent
    return base, takes_in(listing(base))


def find_annotation(files: set[str], kind: str, song: str, part: str, singer: str, mics: list[str]) -> str | None:
    """The ``kind`` F0 annotation of one singer among ``files``: of the first mic in ``mics``, else of any mic."""
    folder = ANNOTATION_DIRS[kind]
    for mic in mics:
        rel = f"{folder}/DCS_{song}_{part}{singer}_{mic}.csv"
        if rel in files:
            return rel
    prefix = f"{folder}/DCS_{song}_{part}{singer}_"
    others = sorted(rel for rel in files if rel.startswith(prefix) and rel.endswith(".csv"))
    return others[0] if others else None


def score_file(files: set[str], song: str, part: str) -> str | None:
    """The score representation of one part of a take (``DCS_<take>_Stereo_STM_<part>.csv``) among ``files``."""
    prefix = f"{SCORE_DIR}/DCS_{song}_"
    hits = sorted(rel for rel in files if rel.startswith(prefix) and rel.endswith(f"_{part}.csv"))
    return hits[0] if hits else None


def read_score(path: Path) -> np.ndarray:
    """[n, 3] onset_s, offset_s, midi of a score representation CSV (a header line is skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        fields = [x for x in re.split(r"[,;\t ]+", line.strip()) if x]
        if len(fields) < 3:
            continue
        try:
            rows.append([float(x) for x in fields[:3]])
        except ValueError:
            continue  # header
    return np.array(rows).reshape(-1, 3)


def plan_take(files: set[str], song: str, singers: dict, params: dict):
    """What the converter reads for one take, from a listing of the release (the disk's, or the md5 index's).

    Returns (stems, f0, scores, skipped): stems (part, singer) -> WAV; f0 (part, singer) -> (annotation,
    kind) or None (pYIN then); scores part -> CSV; skipped: the singers without any mic of ``mics``
    (and whether they have a larynx mic). Paths are relative to the release folder.
    """
    mics = [m.upper() for m in params["mics"]]
    stems, f0, skipped = {}, {}, []
    for (part, singer), by_mic in sorted(singers.items()):
        mic = next((m for m in mics if m in by_mic), None)
        if mic is None:
            skipped.append((part, singer, "LRX" in by_mic))
            continue
        stems[part, singer] = by_mic[mic]
        f0[part, singer] = annotation_file(files, song, part, singer, [mic] + mics, params)
    scores = {part: rel for part in PARTS if (rel := score_file(files, song, part)) is not None}
    return stems, f0, scores, skipped


def md5_index_path(params: dict) -> Path:
    return Path(params["md5_index"]).expanduser() if params["md5_index"] else MD5_INDEX


def verify_takes(base: Path, files: set[str], songs: list[str], params: dict) -> int:
    """Check every file the converter reads for ``songs`` against the release's md5 index.

    A file the real release has and the converter would read (by the same choices, made on the
    index's listing) but that is missing here is named too: otherwise a missing dynamic-mic file
    would silently turn into the headset mic, or a missing annotation into pYIN. Raises
    :class:`ChoirbenchError`, one line naming each file (up to 5) with its expected and actual md5;
    returns the number of files checked.
    """
    path = md5_index_path(params)
    index = read_md5_index(path)
    index_files = set(index)
    index_takes = takes_in(index_files)
    disk_takes = takes_in(files)
    wanted = set()
    for song in songs:
        for take_files, takes in ((files, disk_takes), (index_files, index_takes)):
            stems, f0, scores, _ = plan_take(take_files, song, takes.get(song, {}), params)
            wanted |= set(stems.values()) | {f[0] for f in f0.values() if f} | set(scores.values())
    problems = check_files(base, wanted, index, path.name, Md5Cache(base))
    if problems:
        shown = "; ".join(f"{rel}: {problem}, {detail}" for rel, problem, detail in problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ChoirbenchError(f"{base}: {len(problems)} file(s) differ from Dagstuhl ChoirSet V1.2.3: {shown}{more} "
                              "-> download the release again (or set datasets.dagstuhl.verify: false to convert "
                              "a copy that is not the pinned release)")
    return len(wanted)


def prepare(out_root: Path, params: dict) -> None:
    root = release_root("dagstuhl", params, probe="DCS_*_*_Take*_[SATB]*_*.wav", how_to=HOW_TO,
                        fetch=zenodo_fetcher(params))
    base, takes = find_takes(root)
    files = listing(base)
    settings = set(params["settings"] or [])
    candidates = sorted(t for t in takes if not settings or t.split("_")[1] in settings)
    songs = select(candidates, params["songs"], "datasets.dagstuhl.songs")
    for kind in params["f0_annotation"]:
        if kind not in ANNOTATION_DIRS:
            raise ChoirbenchError(f"datasets.dagstuhl.f0_annotation: unknown {kind!r} "
                                  f"(known: {sorted(ANNOTATION_DIRS)})")
    converted = []
    for song in songs:
        present = {part for part, _ in takes[song]}
        if params["require_all_parts"] and not set(PARTS) <= present:
            log.info("dagstuhl: skipping %s (parts %s only)", song, "".join(p for p in PARTS if p in present))
            continue
        converted.append(song)
    if params["verify"]:  # every file is checked before anything is written
        checked = verify_takes(base, files, converted, params)
        log.info("dagstuhl: %d files match the md5 index %s", checked, md5_index_path(params).name)
    writer = PreparedWriter(out_root, "dagstuhl")
    for song in tqdm(converted, desc="dagstuhl", unit="song", disable=None):
        plan, f0_files, scores, skipped = plan_take(files, song, takes[song], params)
        for part, singer, larynx in skipped:
            log.info("dagstuhl: %s %s%s has none of the mics %s%s; skipped", song, part, singer, params["mics"],
                     " (only a larynx mic: add LRX to datasets.dagstuhl.mics to use it)" if larynx else "")
        stems, f0 = {}, {}
        for key, rel in plan.items():
            stems[key] = load_audio(base / rel)
            f0[key] = _annotation(base, song, key, f0_files[key], stems[key], params)
        if not stems:
            continue
        notes = {part: read_score(base / rel) for part, rel in scores.items()}
        piece = song.split("_")[0]
        writer.add_song(song, split_of(song, params, params["split"]), stems, f0, notes,
                        piece=PIECES.get(piece, piece.lower()))
    writer.finish()


def annotation_file(files: set[str], song, part, singer, mics, params) -> tuple[str, str] | None:
    """(path, kind) of the F0 annotation the converter reads for one singer: the first of ``f0_annotation``."""
    for kind in params["f0_annotation"]:
        rel = find_annotation(files, kind, song, part, singer, mics)
        if rel is not None:
            return rel, kind
    return None


def read_annotation(path: Path, kind: str, params: dict, duration_s: float, audio: str):
    """(times, F0) of one annotation file by the strict reader; CREPE frames below ``crepe_confidence`` unvoiced."""
    threshold = float(params["crepe_confidence"]) if kind == "crepe" else None
    times, hz, _ = read_f0_table(path, duration_s=duration_s, audio=audio, confidence_threshold=threshold)
    return times, hz


def _annotation(base, song, key, found, audio, params):
    part, singer = key
    if found is not None:
        return read_annotation(base / found[0], found[1], params, len(audio) / SAMPLE_RATE,
                               f"the {song} {part}{singer} stem")
    log.warning("dagstuhl: %s %s%s has no F0 annotation; estimated with pYIN", song, part, singer)
    return pyin_f0(audio, part)
