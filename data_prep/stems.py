"""Any choir's multitracks: a folder per song, one WAV per singer or section, named by part.

This is the way to benchmark one's own recordings (``datasets: {mine: {kind: stems, root: PATH}}``).
Layout (``root`` holds one folder per song, or is itself one song's folder)::

    <song>/soprano.wav  S1.wav  alto_2.wav  "Tenor 1.wav"  B.wav ...   one WAV per singer or section
    <song>/mix.wav  (or mixture.wav)                 optional: compared with the sum of the stems
    <song>/<stem>.csv  (or <stem>.f0)                optional F0 of that stem: time, F0[, confidence]
    <song>/<part>.notes.csv                          optional notes of a part: onset_s,offset_s,midi

Stem names, case-insensitive: ``soprano``, ``alto``, ``tenor``, ``bass`` or ``S``, ``A``, ``T``, ``B``,
then an optional singer number (``S1``, ``alto2``, ``bass_3``); several singers per part are allowed,
a stem without a number is singer ``1``. Any sample rate, bit depth or channel count: channels are
averaged to mono and the audio resampled to 16 kHz (polyphase), and the log says so per file. Stems of
a song are zero-padded to the longest. Any other WAV or CSV in a song folder is refused (a misnamed F0
file must not be silently replaced by an estimate).

F0 ``truth`` of a stem: its F0 file when present (read by the strict reader of
:func:`choirbench.io.read_release_f0`: 0, negative, NaN or empty = unvoiced, voiced in 40-2000 Hz, time
in seconds within the recording; ``f0_confidence`` unvoices frames whose third column is below it),
else derived as ``f0`` says: ``pyin`` (librosa.pyin on the stem, with the per-part ranges of
:data:`choirbench.data_prep.f0.PYIN_DEFAULTS`; with the default pYIN knobs the tracks also fill the
``f0_pyin/`` cache, so ``f0_source: pyin`` costs nothing more), ``mixture`` (from the mix, by the
multi-F0 and voice-assignment step of issue 11, once that lands: see :func:`mixture_f0`), or ``files``
(an F0 file is required for every stem). A section stem (several singers in unison) gets one F0 track.

The mix never enters the benchmark (mixtures are sums of stems, as for every dataset); it is only
compared with the sum of the stems (relative RMS difference after the best gain, in the log; a warning
above ``mix_tolerance``). Split: ``split`` for every song (default ``test``: one's own recordings are for
evaluation), ``train_songs`` / ``valid_songs`` / ``test_songs`` by song folder name or prefix.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from choirbench import PARTS, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.f0 import PYIN_DEFAULTS, n_frames_for, pyin_f0, read_f0_table
from choirbench.data_prep.prepared import NAME, SPLITS
from choirbench.data_prep.release import PreparedWriter, resample_audio, select, split_of
from choirbench.io import audio_info, read_f0, read_notes, read_wav, write_f0

log = logging.getLogger(__name__)

STEM_RE = re.compile(r"(soprano|alto|tenor|bass|s|a|t|b)[ _-]?(\d*)", re.IGNORECASE)
MIX_NAMES = ("mix", "mixture")
F0_SUFFIXES = (".csv", ".f0")
NOTES_SUFFIX = ".notes.csv"
F0_MODES = ("pyin", "mixture", "files")
STEM_HELP = ("name each stem soprano, alto, tenor, bass or S, A, T, B with an optional singer number "
             "(S1, alto_2), the mix mix.wav, an F0 file like its stem (S1.csv) and notes <part>.notes.csv")

DEFAULTS = {
    "root": "",                 # folder of song folders (or one song's folder)
    "songs": [],                # song folder names (or prefixes) to convert; empty = all
    "split": "test",            # split of every song not named below
    "train_songs": [],
    "valid_songs": [],
    "test_songs": [],
    "f0": "pyin",               # F0 of a stem without an F0 file: pyin | mixture | files (= required)
    "f0_confidence": 0.0,       # with F0 files of 3 columns: frames whose confidence is below this are unvoiced
    "pyin": {key: (dict(value) if isinstance(value, dict) else value) for key, value in PYIN_DEFAULTS.items()},
    "mix_tolerance": 0.1,       # warn when the mix differs from the sum of the stems by more (relative RMS)
}


# ----------------------------------------------------------------------------- finding songs and stems

def part_of(name: str) -> tuple[str, str] | None:
    """``"Soprano_2"`` -> ("S", "2"), ``"alto"`` -> ("A", "1"); None when not a part name."""
    match = STEM_RE.fullmatch(name.strip())
    if not match:
        return None
    return match.group(1)[0].upper(), str(int(match.group(2))) if match.group(2) else "1"


def song_folders(root: Path) -> dict[str, Path]:
    """Song name -> folder: the sub-folders of ``root`` holding WAVs, or ``root`` itself when it holds them."""
    root = Path(root)
    if not root.is_dir():
        raise ChoirbenchError(f"datasets.<name>.root: folder {root} not found")
    own = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".wav")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and any(q.suffix.lower() == ".wav" for q in p.iterdir()))
    if own and subs:
        raise ChoirbenchError(f"{root}: holds both WAV files ({own[0].name}, ...) and song folders ({subs[0].name}, "
                              f"...); put every song in its own folder")
    folders = {root.resolve().name: root} if own else {p.name: p for p in subs}
    if not folders:
        raise ChoirbenchError(f"{root}: no WAV files and no song folders holding WAV files; {STEM_HELP}")
    for song, folder in folders.items():
        if not NAME.fullmatch(song):
            raise ChoirbenchError(f"{folder}: the song name {song!r} may hold only letters, digits, '.', '-' and '_' "
                                  f"(it names folders and excerpts); rename the folder")
    return folders


def song_files(folder: Path) -> tuple[dict[tuple[str, str], Path], Path | None, dict, dict]:
    """(stems {(part, singer): wav}, mix or None, F0 files {(part, singer): path}, notes {part: path})."""
    stems: dict[tuple[str, str], Path] = {}
    mix = None
    tables: list[Path] = []
    notes: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        name, lower = path.name, path.name.lower()
        if lower.endswith(".wav"):
            if path.stem.lower() in MIX_NAMES:
                if mix is not None:
                    raise ChoirbenchError(f"{folder}: two mixes ({mix.name}, {name}); keep one")
                mix = path
                continue
            key = part_of(path.stem)
            if key is None:
                raise ChoirbenchError(f"{path}: {path.stem!r} is not a part name; {STEM_HELP}")
            if key in stems:
                raise ChoirbenchError(f"{folder}: {stems[key].name} and {name} both name part {key[0]} singer "
                                      f"{key[1]}; number the singers (S1, S2, ...)")
            stems[key] = path
        elif lower.endswith(NOTES_SUFFIX):
            key = part_of(name[: -len(NOTES_SUFFIX)])
            if key is None or STEM_RE.fullmatch(name[: -len(NOTES_SUFFIX)]).group(2):
                raise ChoirbenchError(f"{path}: notes are per part: name the file soprano.notes.csv (or S.notes.csv, "
                                      f"alto.notes.csv, ...)")
            if key[0] in notes:
                raise ChoirbenchError(f"{folder}: {notes[key[0]].name} and {name} are both notes of part {key[0]}")
            notes[key[0]] = path
        elif path.suffix.lower() in F0_SUFFIXES:
            tables.append(path)
    by_stem = {wav.stem: key for key, wav in stems.items()}
    f0: dict[tuple[str, str], Path] = {}
    for path in tables:
        key = by_stem.get(path.stem)
        if key is None:
            raise ChoirbenchError(f"{path}: an F0 file must be named like its stem (e.g. S1.csv next to S1.wav), "
                                  f"and there is no {path.stem}.wav")
        if key in f0:
            raise ChoirbenchError(f"{folder}: two F0 files for {stems[key].name} ({f0[key].name}, {path.name}); keep one")
        f0[key] = path
    return stems, mix, f0, notes


# ----------------------------------------------------------------------------- audio and F0

def load_stem(path: Path) -> np.ndarray:
    """Any WAV -> float32 mono at 16 kHz; logs what was converted."""
    info = audio_info(path)
    audio, rate = read_wav(path, sr=None, downmix=True)
    if len(audio) == 0:
        raise ChoirbenchError(f"{path}: holds no samples")
    done = []
    if info.channels != 1:
        done.append(f"{info.channels} channels averaged to mono")
    if rate != SAMPLE_RATE:
        done.append(f"resampled from {rate} Hz to {SAMPLE_RATE} Hz")
    log.info("stems: %s (%s, %s): %s", path.name, info.subtype, f"{info.duration:.2f} s",
             "; ".join(done) if done else f"mono {SAMPLE_RATE} Hz as is")
    return resample_audio(audio, rate)


def mixture_f0(mixture: np.ndarray, parts: list[str], n_frames: int) -> dict[str, np.ndarray]:
    """Hook for ``f0: mixture``: one F0 track per part estimated from the mix (16 kHz, [N]).

    Calls :func:`choirbench.data_prep.voice_assignment.mixture_f0` (multi-F0 salience of Cuesta et
    al. 2020, then voice assignment with the default ``f0_mixture`` knobs; issue 11).
    """
    from choirbench.data_prep import voice_assignment

    tracks = voice_assignment.mixture_f0(mixture, SAMPLE_RATE, list(parts), n_frames)
    return {part: np.asarray(tracks[part], dtype=np.float64)[:n_frames] for part in parts}


def check_mix(song: str, mix_path: Path, total: np.ndarray, tolerance: float) -> float:
    """Relative RMS difference between the mix and the best-scaled sum of the stems.

    A mix may be normalised, so the sum is first scaled by the least-squares gain
    <mix, sum> / <sum, sum>. Logged with the gain; a warning above ``tolerance``.
    """
    mix = load_stem(mix_path).astype(np.float64)
    total = np.asarray(total, dtype=np.float64)
    n = min(len(mix), len(total))
    if abs(len(mix) - len(total)) > SAMPLE_RATE:
        log.warning("stems: %s: %s is %.2f s long, the stems %.2f s", song, mix_path.name, len(mix) / SAMPLE_RATE,
                    len(total) / SAMPLE_RATE)
    mix, total = mix[:n], total[:n]
    energy = float(total @ total)
    gain = float(mix @ total) / energy if energy > 0 else 0.0
    power = float(mix @ mix)
    diff = float(np.sqrt(np.sum((mix - gain * total) ** 2) / power)) if power > 0 else float("inf")
    if diff > tolerance:
        log.warning("stems: %s: %s differs from the sum of the stems by %.1f %% (RMS, after a gain of %.3g); the "
                    "benchmark mixes the stems, so check that they are the voices of this mix", song, mix_path.name,
                    100 * diff, gain)
    else:
        log.info("stems: %s: %s equals the sum of the stems within %.1f %% (RMS, after a gain of %.3g)", song,
                 mix_path.name, 100 * diff, gain)
    return diff


# ----------------------------------------------------------------------------- conversion

def prepare(out_root: Path, params: dict) -> None:
    if not params["root"]:
        raise ChoirbenchError("datasets.<name>.root must name a folder of song folders (kind: stems)")
    if params["f0"] not in F0_MODES:
        raise ChoirbenchError(f"datasets.<name>.f0 must be one of {', '.join(F0_MODES)}, got {params['f0']!r}")
    if params["split"] not in SPLITS:
        raise ChoirbenchError(f"datasets.<name>.split must be one of {', '.join(SPLITS)}, got {params['split']!r}")
    threshold = float(params["f0_confidence"]) or None
    folders = song_folders(Path(params["root"]).expanduser())
    songs = select(sorted(folders), params["songs"], "datasets.<name>.songs")
    writer = PreparedWriter(out_root, "stems", pyin_params=params["pyin"])
    cache_pyin = params["pyin"] == PYIN_DEFAULTS
    for song in tqdm(songs, desc="stems", unit="song", disable=None):
        stems_files, mix_path, f0_files, notes_files = song_files(folders[song])
        if not stems_files:
            raise ChoirbenchError(f"{folders[song]}: no stems; {STEM_HELP}")
        stems = {key: load_stem(path) for key, path in sorted(stems_files.items())}
        n = max(len(a) for a in stems.values())
        padded = {key: np.pad(a, (0, n - len(a))) for key, a in stems.items()}
        n_frames = n_frames_for(n)
        f0, derived = {}, []
        for key, path in sorted(f0_files.items()):
            times, hz, _ = read_f0_table(path, duration_s=len(stems[key]) / SAMPLE_RATE, audio=stems_files[key].name,
                                         confidence_threshold=threshold)
            f0[key] = (times, hz)
        missing = [key for key in sorted(stems) if key not in f0]
        if missing and params["f0"] == "files":
            names = ", ".join(stems_files[k].name for k in missing)
            raise ChoirbenchError(f"{folders[song]}: no F0 file for {names} (f0: files requires one per stem, "
                                  f"e.g. {stems_files[missing[0]].stem}.csv)")
        if missing and params["f0"] == "mixture":
            mixture = load_stem(mix_path) if mix_path is not None else sum(padded.values())
            mixture = np.pad(mixture, (0, max(0, n - len(mixture))))[:n]
            by_part = mixture_f0(mixture, sorted({k[0] for k in missing}, key=PARTS.index), n_frames)
            for key in missing:
                f0[key] = by_part[key[0]]
            log.info("stems: %s: F0 of %s estimated from the mix", song, ", ".join(f"{p}{s}" for p, s in missing))
        elif missing:
            for key in missing:
                f0[key] = pyin_f0(padded[key], key[0], params["pyin"], n_frames=n_frames)
                derived.append(key)
            log.info("stems: %s: F0 of %s estimated with pYIN", song, ", ".join(f"{p}{s}" for p, s in missing))
        if mix_path is not None:
            check_mix(song, mix_path, sum(padded.values()), float(params["mix_tolerance"]))
        notes = {part: read_notes(path, duration_s=n / SAMPLE_RATE, audio=f"song {song!r}")
                 for part, path in notes_files.items()}
        writer.add_song(song, split_of(song, params, params["split"]), padded, f0, notes)
        if cache_pyin:  # the same tracks `choirbench f0 --source pyin` would compute: fill its cache
            for part, singer in derived:
                name = f"{song}/{part}{singer}.csv"
                write_f0(Path(out_root) / "f0_pyin" / name, read_f0(Path(out_root) / "f0" / name))
    writer.finish()
