"""``choirbench validate``: what is missing or corrupt in a dataset, as a report (in the spirit of mirdata's).

Every dataset kind the project reads is checked the way its converter would read it, with the
converter's own functions for finding the files (``release_root``, ``find_files``, ``song_dirs``, ...)
and the strict readers of :mod:`choirbench.io` for the annotations, but without stopping at the first
problem: every file is checked and every problem collected.

Per file: present (where the layout says it must be), the size and checksum where a list is known
(Bach10: ``checksums/bach10.sha256``; Dagstuhl ChoirSet: the md5 of every file of V1.2.3,
``checksums/dagstuhl_choirset_1.2.3.md5``, as mirdata's validate checks it; any kind: a list recorded with ``--write-checksums`` from a copy
one trusts), a WAV's header consistent with its size (a file cut short declares more audio than it
holds), readable in full by libsndfile, no NaN/Inf samples, not empty. Per song: stems of equal
length, within what the converters accept (:data:`choirbench.data_prep.release.LENGTH_WARN_S`; exactly
for the prepared format). F0 annotations pass the strict readers with the converters' rules (voiced
range, time axis within the stem); a prepared folder passes every check of
:func:`choirbench.data_prep.prepared.check_prepared` (16-ms grid, one frame per 256 samples, ...).

Report: one line per problem (``file: [problem] detail -> fix: ...``), a count per kind of problem and
``OK: N files``; optionally a CSV with one row per file checked.
"""
from __future__ import annotations

import importlib
import struct
from collections import Counter
from dataclasses import dataclass, field
from math import ceil
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from choirbench import PARTS, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.download import file_digest, read_checksum_list
from choirbench.data_prep.f0 import read_f0_table
from choirbench.data_prep.release import LENGTH_WARN_S, release_root, select
from choirbench.io import END_TOL_S, audio_info, atomic_path, read_notes, write_csv

KINDS = ("bach10", "csd", "cantoria", "dagstuhl", "bcbq", "stems", "prepared")
"""Dataset kinds with a release (or folder) to validate; generated kinds (synth-chorales, combine)
are validated through their prepared output (``--prepared results/data/NAME``)."""
GENERATED = ("synth-chorales", "combine")

FIXES = {
    "missing": "restore the file from the release (download or unpack it again)",
    "checksum": "the copy is corrupt or another version: download this file again",
    "truncated": "the file was cut short (interrupted copy or download): download it again",
    "unreadable": "not a readable WAV: download or export it again",
    "nan": "the audio holds NaN or Inf samples: export it again",
    "empty": "the audio holds no samples: export it again",
    "length": "stems of one song must cover the same recording: check that they belong to the same take",
    "f0": "fix or replace the annotation as the message says",
    "notes": "fix or replace the notes file as the message says",
    "layout": "rename or move the file as the message says",
    "format": "convert the file as the message says",
    "manifest": "fix manifest.csv as the message says, or prepare the dataset again",
    "unlisted": "not a file of the pinned release: remove it (or set verify: false to use files of your own)",
}
"""The fix printed for each kind of problem (the detail, from the strict readers, often says more)."""

CHUNK_FRAMES = 1 << 20


@dataclass
class Problem:
    file: str
    problem: str
    detail: str
    fix: str


@dataclass
class Report:
    """Problems found in one dataset, the files checked, and notes on what could not be checked."""

    kind: str
    root: Path
    problems: list[Problem] = field(default_factory=list)
    files: dict[str, dict] = field(default_factory=dict)   # relative path -> audio facts (rate, channels, ...)
    notes: list[str] = field(default_factory=list)

    def rel(self, path) -> str:
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def seen(self, path, **facts) -> None:
        self.files.setdefault(self.rel(path), {}).update(facts)

    def add(self, path, problem: str, detail: str, fix: str | None = None) -> None:
        rel = self.rel(path)
        self.files.setdefault(rel, {})
        for prefix in (f"{path}: ", f"{rel}: "):  # the strict readers start with the path: don't repeat it
            if detail.startswith(prefix):
                detail = detail[len(prefix):]
        self.problems.append(Problem(rel, problem, detail, fix or FIXES[problem]))

    def failed(self, path) -> bool:
        rel = self.rel(path)
        return any(p.file == rel for p in self.problems)

    @property
    def ok(self) -> int:
        bad = {p.file for p in self.problems}
        return sum(1 for f in self.files if f not in bad)

    def lines(self) -> list[str]:
        out = [f"validate {self.kind} at {self.root}"]
        out += [f"note: {note}" for note in self.notes]
        out += [f"{p.file}: [{p.problem}] {p.detail} -> fix: {p.fix}" for p in self.problems]
        counts = Counter(p.problem for p in self.problems)
        if counts:
            out.append("problems: " + ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())))
        formats = Counter(f"{f['samplerate']} Hz, {f['channels']} ch, {f['subtype']}"
                          for f in self.files.values() if "samplerate" in f)
        if formats:
            out.append("audio: " + "; ".join(f"{fmt}: {n} file(s)" for fmt, n in sorted(formats.items())))
        out.append(f"OK: {self.ok} files" + (f" ({len(self.problems)} problem(s) in "
                                             f"{len(self.files) - self.ok} file(s))" if self.problems else ""))
        return out

    def write_csv(self, path: Path) -> None:
        """One row per file checked (problem empty when OK; one row per problem otherwise)."""
        rows = []
        by_file: dict[str, list[Problem]] = {}
        for p in self.problems:
            by_file.setdefault(p.file, []).append(p)
        for rel, facts in sorted(self.files.items()):
            base = {"file": rel, "samplerate": facts.get("samplerate"), "channels": facts.get("channels"),
                    "seconds": facts.get("seconds")}
            for p in by_file.get(rel, []) or [None]:
                rows.append({**base, "problem": p.problem if p else "", "detail": p.detail if p else "",
                             "fix": p.fix if p else ""})
        frame = pd.DataFrame(rows, columns=["file", "problem", "detail", "fix", "samplerate", "channels", "seconds"])
        write_csv(path, frame.astype({"samplerate": "Int64", "channels": "Int64"}))


# ----------------------------------------------------------------------------- per-file checks

def wav_declared_bytes(path: Path) -> tuple[int, int] | None:
    """(bytes of audio the RIFF header declares, bytes the file holds after the ``data`` chunk header).

    None when the file is not RIFF/WAVE or declares an unknown size (RF64, streamed 0xFFFFFFFF).
    libsndfile reads a file cut short without complaint (it trusts the file size), so this is how
    an interrupted copy shows.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                if length == 0xFFFFFFFF:
                    return None
                return length, size - pos - 8
            pos += 8 + length + (length & 1)
    return None


def check_audio(report: Report, path: Path) -> sf._SoundFileInfo | None:
    """Present, header consistent with the file size, readable in full, finite, not empty; returns the header."""
    path = Path(path)
    if not path.is_file():
        report.add(path, "missing", "file not found")
        return None
    try:
        info = audio_info(path)
    except ChoirbenchError as err:
        report.add(path, "unreadable", str(err))
        return None
    report.seen(path, samplerate=info.samplerate, channels=info.channels, subtype=info.subtype,
                seconds=round(info.frames / info.samplerate, 3) if info.samplerate else None)
    declared = wav_declared_bytes(path)
    if declared is not None and declared[1] < declared[0]:
        report.add(path, "truncated", f"the header declares {declared[0]} bytes of audio, the file holds "
                                      f"{declared[1]}")
    if info.frames == 0:
        report.add(path, "empty", "holds no samples")
        return info
    try:  # read in blocks: a whole concert recording must not need its size in memory
        with sf.SoundFile(path) as handle:
            for block in handle.blocks(blocksize=CHUNK_FRAMES, dtype="float32"):
                if not np.all(np.isfinite(block)):
                    report.add(path, "nan", "contains NaN or Inf samples")
                    break
    except (RuntimeError, sf.LibsndfileError, ValueError) as err:
        report.add(path, "unreadable", f"cannot be read to the end ({err})")
    return info


def check_lengths(report: Report, song: str, infos: dict, tolerance_s: float) -> None:
    """Stems of one song (path -> header) last the same within ``tolerance_s`` seconds.

    Stems already reported (truncated, unreadable, ...) are left out: their length says nothing more.
    """
    seconds = {name: info.frames / info.samplerate for name, info in infos.items()
               if info is not None and info.samplerate and not report.failed(name)}
    if len(seconds) < 2:
        return
    longest = max(seconds.values())
    for name, s in seconds.items():
        if longest - s > tolerance_s:
            others = ", ".join(f"{Path(n).name} {v:.2f} s" for n, v in seconds.items() if n != name)
            report.add(name, "length", f"lasts {s:.2f} s, {longest - s:.2f} s less than the longest stem of "
                                       f"{song} (tolerance {tolerance_s:g} s; {others})")


def check_f0(report: Report, path: Path, read) -> None:
    """Run the strict reader ``read()`` on an annotation; its error becomes an ``f0`` problem."""
    report.seen(path)
    try:
        read()
    except ChoirbenchError as err:
        report.add(path, "f0", str(err))


def seconds_of(info) -> float | None:
    return info.frames / info.samplerate if info is not None and info.samplerate else None


def length_16k(info) -> int:
    """Length of a stem once the converters resample it to 16 kHz (resample_poly: ceil(n * up / down))."""
    return int(ceil(info.frames * SAMPLE_RATE / info.samplerate))


# ----------------------------------------------------------------------------- checksum lists

def check_sums(report: Report, base: Path, sums: dict[str, str], source: str, only: set[str] | None = None) -> None:
    """Every file of a ``sha256sum`` list present and matching; ``only``: first path components to check."""
    for rel, expected in sorted(sums.items()):
        if only is not None and rel.split("/", 1)[0] not in only:
            continue
        path = Path(base) / rel
        if not path.is_file():
            report.add(path, "missing", f"listed in {source} but not found")
            continue
        report.seen(path)
        actual = file_digest(path, "sha256")
        if actual != expected:
            report.add(path, "checksum", f"sha256 {actual} differs from {expected} in {source}")


def write_checksums(report: Report, path: Path) -> int:
    """Record the sha256 of every file the validation found (a copy the user trusts) in ``path``."""
    files = sorted(rel for rel in report.files if (report.root / rel).is_file())
    lines = [f"{file_digest(report.root / rel, 'sha256')}  {rel}" for rel in files]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return len(lines)


# ----------------------------------------------------------------------------- per kind

def _converter(kind: str):
    from choirbench.data_prep.datasets import CONVERTERS

    return importlib.import_module(CONVERTERS[kind])


def validate_bach10(report: Report, params: dict) -> None:
    from choirbench.data_prep import bach10

    root = release_root("bach10", params, probe="*-violin.wav", how_to=bach10.HOW_TO)
    base, songs = bach10.song_dirs(root)
    report.root = base
    songs = select(songs, params["songs"], "datasets.bach10.songs")
    if params["verify"] and bach10.CHECKSUMS.is_file():
        check_sums(report, base, read_checksum_list(bach10.CHECKSUMS), f"checksums/{bach10.CHECKSUMS.name}",
                   only=set(songs) if params["songs"] else None)
        report.notes.append(f"audio checked against the sha256 list shipped in checksums/{bach10.CHECKSUMS.name}; "
                            "the .mat annotations have no shipped checksums: readability only")
    else:
        report.notes.append("Bach10 audio not checked against checksums/bach10.sha256 (verify: false, or the list "
                            "is missing from the installation): sizes against the headers and readability only")
    for song in songs:
        folder = base / song
        infos = {}
        for part in PARTS:
            try:
                wav = bach10.stem_path(folder, part)
            except ChoirbenchError as err:
                report.add(folder / f"{song}-{bach10.INSTRUMENTS[part][0]}.wav", "missing", str(err))
                continue
            infos[wav] = check_audio(report, wav)
        check_audio(report, folder / f"{song}.wav")
        check_lengths(report, song, infos, LENGTH_WARN_S)
        duration = max((seconds_of(i) for i in infos.values() if i is not None), default=None)
        gt = folder / f"{song}-GTF0s.mat"
        if not gt.is_file():
            report.add(gt, "missing", "ground-truth F0 not found")
        else:
            def read_gt(gt=gt, duration=duration):
                times, _ = bach10.read_gt_f0(gt)
                if duration is not None and times[-1] > duration + END_TOL_S:
                    raise ChoirbenchError(f"{gt}: the F0 frames run to {times[-1]:.2f} s but the stems last "
                                          f"{duration:.2f} s: not this piece's annotation")
            check_f0(report, gt, read_gt)
        notes = folder / f"{song}-GTNotes.mat"
        if notes.is_file():
            report.seen(notes)
            try:
                bach10.read_gt_notes(notes)
            except ChoirbenchError as err:
                report.add(notes, "notes", str(err))


def validate_csd(report: Report, params: dict) -> None:
    from choirbench.data_prep import csd

    root = release_root("csd", params, probe=("CSD_*_*_*.wav", "audio_16kHz/*_*.wav"), how_to=csd.HOW_TO)
    report.root = root
    found = csd.find_files(root)
    wanted = [csd.SONGS.get(str(s), str(s)) for s in params["songs"]]
    songs = select([s for s in csd.SONGS.values() if s in found], wanted, "datasets.csd.songs")
    report.notes.append("no per-file checksum list for the CSD release (Zenodo 1286570) is shipped: "
                        "presence, sizes against the headers and readability only")
    release_layout = any(csd.FILE_RE.match(p.name) for stems in found.values() for p in stems.values())
    if release_layout and not params["songs"]:
        for song in csd.SONGS.values():
            if song not in found:
                report.add(root / song, "missing", f"no stem of {song} found (the release holds 3 songs)")
    scores = csd.find_scores(root, list(params["notes_sources"]))
    for song in songs:
        read_f0s, lengths = {}, {}
        stems = found[song]
        singers = sorted({s for _, s in stems})
        some = next(iter(stems.values()))
        match = csd.FILE_RE.match(some.name)
        for part in PARTS:
            for singer in singers:
                if (part, singer) not in stems:
                    name = {v: k for k, v in csd.PART_NAMES.items()}[part]
                    expected = some.with_name(f"CSD_{match.group(1)}_{name}_{singer}.wav") if match else \
                        some.parent / f"{part}{singer}"
                    report.add(expected, "missing",
                               f"no stem for {song} part {part} singer {singer} (other parts have this singer)")
        infos = {}
        for (part, singer), wav in sorted(stems.items()):
            info = infos[wav] = check_audio(report, wav)
            f0_path = wav.with_suffix(".f0")
            if info is None or report.failed(wav):  # the annotation is still read, without its length rule
                if f0_path.is_file():
                    check_f0(report, f0_path, lambda f0_path=f0_path: read_f0_table(f0_path))
                continue
            proxy = np.zeros(length_16k(info), dtype=np.float32)  # read_annotation uses only its length
            crepe = wav.parent.parent / "crepe_f0_center"
            frequency, confidence = crepe / f"{wav.stem}_frequency.npy", crepe / f"{wav.stem}_confidence.npy"
            if f0_path.is_file():
                f0_file = f0_path
            elif frequency.is_file() and not confidence.is_file():
                report.add(confidence, "missing", f"{frequency.name} has no matching confidence array")
                continue
            elif frequency.is_file():
                f0_file = frequency
            elif csd.FILE_RE.match(wav.name):
                report.add(f0_path, "missing", f"F0 annotation of {wav.name} not found")
                continue
            else:
                report.notes.append(f"{report.rel(wav)} has no F0 annotation: the converter estimates it with pYIN")
                continue
            check_f0(report, f0_file, lambda wav=wav, proxy=proxy, part=part, key=(part, singer):
                     read_f0s.__setitem__(key, csd.read_annotation(wav, params, proxy, part)))
            lengths[part, singer] = len(proxy)
        check_lengths(report, song, infos, LENGTH_WARN_S)
        for part, midi in sorted(scores.get(song, {}).items()):  # read and checked against the F0 as prepare does
            report.seen(midi)
            try:
                csd.part_notes(song, {part: midi}, {k: v for k, v in read_f0s.items() if k[0] == part}, lengths, params)
            except ChoirbenchError as err:
                report.add(midi, "notes", str(err))


def validate_cantoria(report: Report, params: dict) -> None:
    from choirbench.data_prep import cantoria

    root = release_root("cantoria", params, probe="Cantoria_*_[SATB].wav", how_to=cantoria.HOW_TO)
    report.root = root
    found = cantoria.find_files(root)
    songs = select(sorted(found), params["songs"], "datasets.cantoria.songs")
    report.notes.append("no per-file checksum list for Cantoria (Zenodo 5851070) is shipped: presence, sizes "
                        "against the headers and readability only")
    for song in songs:
        infos = {}
        any_wav = next(iter(found[song].values()))
        for part in PARTS:
            wav = found[song].get(part)
            if wav is None:
                report.add(any_wav.with_name(f"Cantoria_{song}_{part}.wav"), "missing", f"no {part} stem for {song}")
                continue
            info = infos[wav] = check_audio(report, wav)
            # a stem that failed: its annotation is still read, without the rule on its length
            duration = None if info is None or report.failed(wav) else length_16k(info) / SAMPLE_RATE
            try:
                f0_file = cantoria.annotation_path(wav, params["f0_annotation"])
            except ChoirbenchError as err:
                folder = {"pyin": "F0_pyin", "crepe": "F0_crepe"}.get(params["f0_annotation"], "F0")
                report.add(wav.parent.parent / folder / f"{wav.stem}.csv", "missing", str(err))
                continue
            check_f0(report, f0_file, lambda wav=wav, duration=duration:
                     cantoria.read_annotation(wav, params, duration))
        check_lengths(report, song, infos, LENGTH_WARN_S)


def validate_dagstuhl(report: Report, params: dict) -> None:
    from choirbench.data_prep import dagstuhl
    from choirbench.data_prep.file_index import Md5Cache, check_files, read_md5_index

    root = release_root("dagstuhl", params, probe="DCS_*_*_Take*_[SATB]*_*.wav", how_to=dagstuhl.HOW_TO)
    base, takes = dagstuhl.find_takes(root)
    report.root = base
    files = dagstuhl.listing(base)
    settings = set(params["settings"] or [])
    candidates = sorted(t for t in takes if not settings or t.split("_")[1] in settings)
    songs = select(candidates, params["songs"], "datasets.dagstuhl.songs")
    mics = [m.upper() for m in params["mics"]]
    if params["verify"]:
        index_path = dagstuhl.md5_index_path(params)
        index = read_md5_index(index_path)
        # the whole release as mirdata does, or with `songs` every file of those takes (room mics too)
        scope = set(index) if not params["songs"] else \
            {rel for rel in index if any(rel.rsplit("/", 1)[-1].startswith(f"DCS_{s}_") for s in songs)}
        for song in songs:  # what the converter would read but the release does not hold
            stems, f0, scores, _ = dagstuhl.plan_take(files, song, takes[song], params)
            scope |= set(stems.values()) | {f[0] for f in f0.values() if f} | set(scores.values())
        for rel in scope:
            if (base / rel).is_file():
                report.seen(base / rel)
        for rel, problem, detail in check_files(base, scope, index, index_path.name, Md5Cache(base)):
            report.add(base / rel, problem, detail)
        report.notes.append(f"{len(scope)} files checked against the md5 index {index_path.name} "
                            f"({len(index)} files of Dagstuhl ChoirSet V1.2.3)")
    else:
        report.notes.append("not checked against the md5 index of V1.2.3 (verify: false): sizes against the "
                            "headers and readability only")
    for song in songs:
        infos = {}
        present = {part for part, _ in takes[song]}
        if params["require_all_parts"] and not set(PARTS) <= present:
            report.notes.append(f"{song}: parts {''.join(p for p in PARTS if p in present)} only; the converter "
                                "skips it (require_all_parts)")
        for (part, singer), by_mic in sorted(takes[song].items()):
            for rel in by_mic.values():  # every mic's file must be readable, used or not
                info = check_audio(report, base / rel)
                infos.setdefault(base / rel, info)
            mic = next((m for m in mics if m in by_mic), None)  # the converter's choice of stem
            if mic is None:
                continue
            found = dagstuhl.annotation_file(files, song, part, singer, [mic] + mics, params)
            if found is None:
                report.notes.append(f"{song} {part}{singer} has no F0 annotation: the converter estimates it "
                                    "with pYIN")
                continue
            info = infos[base / by_mic[mic]]
            # a stem that failed: its annotation is still read, without the rule on its length
            duration = None if info is None or report.failed(base / by_mic[mic]) else length_16k(info) / SAMPLE_RATE
            check_f0(report, base / found[0], lambda found=found, duration=duration,
                     where=f"the {song} {part}{singer} stem":
                     dagstuhl.read_annotation(base / found[0], found[1], params, duration, where))
        check_lengths(report, song, infos, LENGTH_WARN_S)


def validate_bcbq(report: Report, params: dict) -> None:
    from choirbench.data_prep import bcbq

    root = release_root("bcbq", params, probe="*_part*_*_1ch.wav", how_to=bcbq.HOW_TO)
    report.root = root
    found = bcbq.find_songs(root, params["sets"])
    songs = select(sorted(found), params["songs"], "datasets.bcbq.songs")
    report.notes.append("BC/BQ is commercial and no checksum list is shipped: presence, sizes against the headers "
                        "and readability only")
    for song in songs:
        segments = found[song]["segments"]
        parts = sorted({p for seg in segments.values() for p in seg}, key=PARTS.index)
        for k, seg in sorted(segments.items()):
            any_wav = next(iter(seg.values()))
            for part in parts:
                if part not in seg:
                    idx, piece = any_wav.name.split("_")[:2]
                    report.add(any_wav.with_name(f"{idx}_{piece}_part{k}_{part.lower()}_1ch.wav"), "missing",
                               f"segment {k} of {song} has no {part} voice")
            infos = {}
            for part, wav in sorted(seg.items()):
                info = infos[wav] = check_audio(report, wav)
                freq = wav.parent.parent / "crepe_f0_center" / f"{wav.stem}_frequency.npy"
                if info is None or not freq.is_file():
                    continue

                def read_crepe(wav=wav, info=info, freq=freq):
                    try:
                        track = bcbq.crepe_track(wav, float(params["crepe_confidence"]))
                    except (OSError, ValueError) as err:
                        raise ChoirbenchError(f"{freq}: unreadable CREPE array ({err})") from None
                    if track is None:
                        raise ChoirbenchError(f"{freq}: the matching _confidence.npy is missing")
                    if len(track) > length_16k(info) // 256 + 2:
                        raise ChoirbenchError(f"{freq}: {len(track)} frames of 16 ms, longer than {wav.name}")
                check_f0(report, freq, read_crepe)
            check_lengths(report, f"{song} segment {k}", infos, LENGTH_WARN_S)


def validate_stems(report: Report, params: dict) -> None:
    from choirbench.data_prep import stems as kind

    if not params["root"]:
        raise ChoirbenchError("give the folder of song folders (--root, or datasets.<name>.root)")
    folders = kind.song_folders(Path(params["root"]).expanduser())
    report.root = Path(params["root"]).expanduser()
    songs = select(sorted(folders), params["songs"], "datasets.<name>.songs")
    report.notes.append("stems kind: no checksum list is shipped (record one of a copy you trust with "
                        "--write-checksums FILE)")
    threshold = float(params["f0_confidence"]) or None
    for song in songs:
        try:
            stems, mix, f0_files, notes = kind.song_files(folders[song])
        except ChoirbenchError as err:
            report.add(folders[song], "layout", str(err))
            continue
        if not stems:
            report.add(folders[song], "missing", f"no stems; {kind.STEM_HELP}")
            continue
        infos = {wav: check_audio(report, wav) for wav in stems.values()}
        if mix is not None:
            check_audio(report, mix)
        for key, path in sorted(f0_files.items()):
            info = infos.get(stems[key])
            if info is None:
                continue
            check_f0(report, path, lambda path=path, info=info, wav=stems[key]:
                     read_f0_table(path, duration_s=length_16k(info) / SAMPLE_RATE, audio=wav.name,
                                        confidence_threshold=threshold))
        missing = [stems[k].name for k in sorted(stems) if k not in f0_files]
        if missing and params["f0"] == "files":
            for name in missing:
                report.add(folders[song] / Path(name).with_suffix(".csv"), "missing",
                           f"no F0 file for {name} (f0: files requires one per stem)")
        durations = [length_16k(i) for i in infos.values() if i is not None]
        for part, path in sorted(notes.items()):
            report.seen(path)
            try:
                read_notes(path, duration_s=max(durations, default=0) / SAMPLE_RATE or None, audio=f"song {song!r}")
            except ChoirbenchError as err:
                report.add(path, "notes", str(err))
        check_lengths(report, song, infos, LENGTH_WARN_S)


def validate_prepared(report: Report, params: dict) -> None:
    """A prepared folder: every check of :func:`check_prepared`, plus full reads, the derived F0 caches."""
    from choirbench.data_prep.prepared import F0_DIRS, prepared_problems, read_manifest

    if not params.get("root"):
        raise ChoirbenchError("give the prepared folder (--prepared PATH, or datasets.<name>.root)")
    root = Path(params["root"]).expanduser()
    if not root.is_dir():
        raise ChoirbenchError(f"{root}: folder not found (a prepared folder is written by `choirbench prepare` "
                              f"or the workflow's data step)")
    report.root = root
    try:
        frame = read_manifest(root)
    except ChoirbenchError as err:
        report.add(root / "manifest.csv", "missing" if not (root / "manifest.csv").is_file() else "manifest",
                   str(err))
        return
    report.seen(root / "manifest.csv")
    report.notes.append("prepared folder: no checksum list is shipped (record one with --write-checksums FILE)")
    for path, message in prepared_problems(root, frame):
        path = Path(path)
        rel = report.rel(path)
        if path.name == "manifest.csv":
            problem = "manifest"
        elif rel.startswith("f0/") or rel.startswith("f0_"):
            problem = "missing" if not path.exists() else "f0"
        elif rel.startswith("score/"):
            problem = "notes"
        elif "mismatched lengths" in message:
            problem = "length"
        elif not path.exists():
            problem = "missing"
        elif "not a readable" in message:
            problem = "unreadable"
        elif "no samples" in message:
            problem = "empty"
        else:
            problem = "format"
        report.add(path, problem, message)
    lengths = {}
    for row in frame.itertuples():
        audio = root / str(row.audio)
        if audio.is_file() and not report.failed(audio):
            info = check_audio(report, audio)
            if info is not None:
                lengths[str(row.song), f"{row.part}{row.singer}"] = info.frames
        report.seen(root / str(row.f0))
    from choirbench.io import read_f0

    for source, folder in F0_DIRS.items():  # derived F0 (f0_pyin/, f0_score/): same grid, same length
        if source == "truth" or not (root / folder).is_dir():
            continue
        for (song, stem), n in sorted(lengths.items()):
            path = root / folder / song / f"{stem}.csv"
            if path.is_file():
                check_f0(report, path, lambda path=path, n=n, song=song, stem=stem:
                         read_f0(path, n_samples=n, audio=f"audio/{song}/{stem}.wav"))


VALIDATORS = {"bach10": validate_bach10, "csd": validate_csd, "cantoria": validate_cantoria,
              "dagstuhl": validate_dagstuhl, "bcbq": validate_bcbq, "stems": validate_stems,
              "prepared": validate_prepared}


def validate(kind: str, params: dict, *, checksums: Path | None = None) -> Report:
    """Validate one dataset of converter ``kind`` with its config block ``params`` (defaults filled in).

    ``checksums``: a ``sha256sum`` list (relative paths) recorded from a trusted copy; every file in it
    must be present and match. Raises :class:`ChoirbenchError` only when the dataset cannot be found at
    all (the converter's own message: what to download and where); everything else is a problem in the
    returned :class:`Report`.
    """
    if kind not in VALIDATORS:
        hint = " (a generated dataset: validate its output with --prepared results/data/NAME)" \
            if kind in GENERATED else ""
        raise ChoirbenchError(f"cannot validate dataset kind {kind!r}{hint}; known: {', '.join(KINDS)}")
    from choirbench.params import resolve_params

    module = _converter(kind)
    params = resolve_params(module.DEFAULTS, params, where=f"datasets.{kind}")
    report = Report(kind, Path(params.get("root") or "."))
    if checksums is not None:
        checksums = Path(checksums)
        if not checksums.is_file():
            raise ChoirbenchError(f"{checksums}: checksum list not found")
        report.notes.append(f"files checked against the sha256 list {checksums}")
    VALIDATORS[kind](report, params)
    if checksums is not None:
        check_sums(report, report.root, read_checksum_list(checksums), str(checksums))
    return report


def dataset_params(name: str, configfile: Path) -> tuple[str, dict]:
    """(kind, params) of ``datasets.<name>`` in a config file, as the workflow hands it to ``prepare``.

    A generated dataset (synth-chorales, combine) has no release: its prepared output
    ``results/data/<name>`` is validated instead.
    """
    import yaml

    configfile = Path(configfile)
    if not configfile.is_file():
        raise ChoirbenchError(f"{configfile}: config file not found")
    config = yaml.safe_load(configfile.read_text()) or {}
    datasets = config.get("datasets") or {}
    if name not in datasets:
        raise ChoirbenchError(f"{configfile}: datasets.{name} not found (known: {', '.join(sorted(datasets))})")
    block = dict(datasets[name] or {})
    kind = block.pop("kind", name)
    if kind in GENERATED:
        return "prepared", {"root": str(Path("results") / "data" / name)}
    return kind, block
