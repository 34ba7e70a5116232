"""Reading and writing audio, F0 and note files with checks and atomic writes.

Every reader names the offending file in its error; every writer writes to a
temporary name in the target folder and renames, so an interrupted run never
leaves a half-written file that a later step would trust.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError


def _umask() -> int:
    """The process's umask (only readable by setting it: set and restore at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The file gets the permissions the user's umask asks for (as ``open`` would give it), not the
    owner-only 0600 of the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path, frame: pd.DataFrame, **kwargs) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, **kwargs)


_SFC_SET_ADD_PEAK_CHUNK = 0x1050


def write_wav(path, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write mono float32 audio atomically (float WAV keeps estimates exact).

    libsndfile adds a PEAK chunk with a wall-clock timestamp to float WAVs;
    it is switched off so that the same samples always give the same bytes.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"{path}: expected mono audio, got shape {audio.shape}")
    with atomic_path(path, suffix=".wav") as tmp:
        with sf.SoundFile(tmp, "w", sr, 1, "FLOAT", format="WAV") as handle:
            try:
                from soundfile import _ffi, _snd

                _snd.sf_command(handle._file, _SFC_SET_ADD_PEAK_CHUNK, _ffi.NULL, 0)
            except (ImportError, AttributeError):  # other soundfile builds: the header keeps its timestamp
                pass
            handle.write(audio)


# ----------------------------------------------------------------------------- the rules every reader applies

F0_MIN_HZ = 40.0
"""Lowest voiced F0 accepted in any F0 file (Hz). The lowest choral bass notes (basso profondo, about
F1-A1, 44-55 Hz) lie above it; a confidence or voicing column read as F0 (values 0..1) lies far below."""
F0_MAX_HZ = 2000.0
"""Highest voiced F0 accepted (Hz): an octave above a soprano's top C6 (1047 Hz)."""
UNVOICED = "0, a negative number, NaN or an empty cell"
"""The one rule for unvoiced frames in every F0 table: all of these read as 0 Hz. Negative F0 is how
Sonic Visualiser's pYIN plugin marks unvoiced frames, NaN (an empty cell once pandas writes it) is
librosa.pyin's marker."""
END_TOL_S = 0.25
"""How far past the end of its recording an F0 table's or notes file's last time may lie (s): estimators
frame the signal's end differently, but a table in milliseconds or frames overshoots by far more."""
GRID_TOL_S = 1e-4
"""How far a prepared F0 time may lie from its 16-ms grid point (files hold 6 decimals)."""
VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
"""Voice names become file names (``{voice}.wav``): letters, digits, '-' and '_'."""
NOT_VOICES = {
    **dict.fromkeys(["confidence", "conf", "probability", "prob", "voicing", "voiced", "voiced_flag",
                     "voiced_prob", "voiced_probs", "voiced_probability", "periodicity", "salience",
                     "activation"], "a confidence or voicing value"),
    **dict.fromkeys(["time", "times", "time_ms", "ms", "frame", "frames", "sample", "samples"], "a time or frame index"),
}
"""Column names of F0 estimators' own output that are not a voice's F0 (CREPE: time, frequency,
confidence; librosa.pyin: f0, voiced_flag, voiced_prob)."""


def audio_info(path) -> sf._SoundFileInfo:
    """Header of an audio file (rate, channels, frames); unreadable -> :class:`ChoirbenchError`."""
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: file not found")
    try:
        return sf.info(path)
    except (RuntimeError, sf.LibsndfileError, ValueError) as err:
        raise ChoirbenchError(f"{path}: not a readable WAV file ({err})") from None


def read_wav(path, sr: int | None = SAMPLE_RATE, *, start: int = 0, frames: int = -1,
             allow_silence: bool = True, downmix: bool = False) -> tuple[np.ndarray, int]:
    """Read a WAV as float32 [N], checking what the benchmark relies on.

    ``sr=None`` accepts any rate (the caller resamples); otherwise a different
    rate is an error. Multichannel files are an error unless ``downmix`` (the
    channels are averaged). Any bit depth libsndfile reads (PCM 8-32, float 32/64)
    is accepted. NaN/Inf samples and unreadable files raise
    :class:`ChoirbenchError` naming the file.
    """
    path = Path(path)
    info = audio_info(path)
    if info.channels != 1 and not downmix:
        raise ChoirbenchError(f"{path}: expected mono audio, found {info.channels} channels")
    if sr is not None and info.samplerate != sr:
        raise ChoirbenchError(f"{path}: sample rate is {info.samplerate} Hz, expected {sr} Hz")
    try:
        audio, rate = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, ValueError) as err:
        raise ChoirbenchError(f"{path}: not a readable WAV file ({err})") from None
    audio = audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0]
    if not np.all(np.isfinite(audio)):
        raise ChoirbenchError(f"{path}: contains NaN or Inf samples")
    if not allow_silence and not np.any(audio):
        raise ChoirbenchError(f"{path}: is entirely silent")
    return audio, rate


def wav_frames(path) -> int:
    """Number of samples in a WAV file (header only)."""
    return audio_info(path).frames


# ----------------------------------------------------------------------------- text tables

@dataclass
class Table:
    """A numeric text table as read by :func:`read_table`."""

    path: Path
    columns: list[str]          # header names, or "column 1", "column 2", ... without a header
    header: bool
    values: np.ndarray          # [rows, columns] float64, NaN for empty cells and NaN markers
    lines: np.ndarray           # [rows] line number of each row in the file (1-based)

    def where(self, row: int | None, col: int) -> str:
        """``path, line n, column 'name'`` for error messages."""
        line = "" if row is None else f", line {int(self.lines[row])}"
        return f"{self.path}{line}, column {self.columns[col]!r}"


def _separator(line: str) -> str | None:
    for sep in ("\t", ";", ","):
        if sep in line:
            return sep
    return None  # whitespace


def _number(field: str) -> float | None:
    if field == "":
        return float("nan")
    try:
        return float(field)
    except ValueError:
        return None


def read_table(path, what: str = "table") -> Table:
    """Read a numeric table: comma, semicolon, tab or whitespace separated, optional header line.

    The separator is the first of tab, ``;`` and ``,`` found on the first line
    (else whitespace). Lines that are blank or start with ``#`` are skipped.
    An empty cell is NaN (never skipped: skipping it would shift the next
    value into its column). Every row must have as many fields as the first.
    Errors name the file, the line and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as err:
        raise ChoirbenchError(f"{path}: not a text {what} ({err})") from None
    sep: str | None = ""
    columns: list[str] | None = None
    width = first_line = 0
    rows, lines = [], []
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if sep == "":
            sep = _separator(line)
        fields = [f.strip().strip('"').strip("'").strip() for f in (line.split(sep) if sep else line.split())]
        if not width:
            width, first_line = len(fields), line_no
            if any(_number(f) is None for f in fields):
                columns = fields
                continue
        if len(fields) != width:
            raise ChoirbenchError(f"{path}, line {line_no}: {len(fields)} fields where line {first_line} has "
                                  f"{width}; every row needs one value per column (an empty cell for a "
                                  f"missing value)")
        row = []
        for k, field in enumerate(fields):
            value = _number(field)
            if value is None:
                name = columns[k] if columns else f"column {k + 1}"
                raise ChoirbenchError(f"{path}, line {line_no}, column {name!r}: {field[:40]!r} is not a number")
            row.append(value)
        rows.append(row)
        lines.append(line_no)
    if not rows:
        raise ChoirbenchError(f"{path}: no data rows in this {what}")
    return Table(path, columns or [f"column {k + 1}" for k in range(width)], columns is not None,
                 np.array(rows, dtype=np.float64), np.array(lines))


def _looks_like_ms(last_s: float, duration_s: float) -> bool:
    """Whether a time axis ending at ``last_s`` ends near the recording's end once divided by 1000."""
    return abs(last_s / 1000 - duration_s) <= max(END_TOL_S, 0.5 * duration_s)


def time_axis(table: Table, col: int, *, duration_s: float | None = None, audio=None) -> np.ndarray:
    """The time column of an F0 table, in seconds, checked against the recording it annotates.

    Times must be finite, >= 0 and strictly increasing. With ``duration_s``
    (the length of ``audio``), the axis must end within the recording, up to
    END_TOL_S: a table in milliseconds, frames or another recording's time is
    refused here, not stretched over the audio.
    """
    times = table.values[:, col]
    bad = np.flatnonzero(~np.isfinite(times) | (times < 0))
    if bad.size:
        raise ChoirbenchError(f"{table.where(bad[0], col)}: time must be a number of seconds >= 0, "
                              f"found {times[bad[0]]!r}")
    back = np.flatnonzero(np.diff(times) <= 0)
    if back.size:
        i = back[0] + 1
        raise ChoirbenchError(f"{table.where(i, col)}: time {times[i]:g} s does not come after the previous row's "
                              f"{times[i - 1]:g} s; rows must be in time order, one per frame")
    if duration_s is not None:
        if times[-1] > duration_s + END_TOL_S:
            hint = " (these look like milliseconds: divide the times by 1000)" \
                if _looks_like_ms(times[-1], duration_s) else ""
            raise ChoirbenchError(f"{table.where(None, col)}: the time axis runs to {times[-1]:g} s but "
                                  f"{audio or 'the recording'} lasts {duration_s:.3f} s; times must be in seconds "
                                  f"from the start of that recording{hint}")
    return times


def f0_column(table: Table, col: int, *, confidence: np.ndarray | None = None,
              threshold: float | None = None) -> np.ndarray:
    """One F0 column in Hz with the unvoiced rule applied: 0, negative, NaN or empty -> 0.

    With ``threshold``, frames whose ``confidence`` is below it (or NaN) are
    unvoiced too. A remaining (voiced) value outside F0_MIN_HZ..F0_MAX_HZ, or an
    infinite one, raises :class:`ChoirbenchError` naming the line and column.
    """
    values = table.values[:, col]
    inf = np.flatnonzero(np.isinf(values))
    if inf.size:
        raise ChoirbenchError(f"{table.where(inf[0], col)}: {values[inf[0]]} is not an F0; write unvoiced frames "
                              f"as {UNVOICED}")
    f0 = np.where(np.isfinite(values) & (values > 0), values, 0.0)
    if threshold is not None and confidence is not None:
        f0 = np.where(np.nan_to_num(confidence, nan=0.0) >= threshold, f0, 0.0)
    out = np.flatnonzero((f0 > 0) & ((f0 < F0_MIN_HZ) | (f0 > F0_MAX_HZ)))
    if out.size:
        raise ChoirbenchError(f"{table.where(out[0], col)}: {f0[out[0]]:g} Hz is outside the voiced F0 range "
                              f"{F0_MIN_HZ:g}-{F0_MAX_HZ:g} Hz; this column must hold F0 in Hz, with unvoiced "
                              f"frames written as {UNVOICED}")
    return f0


# ----------------------------------------------------------------------------- F0 files

def read_f0_table(path, *, duration_s: float | None = None, audio=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a user's F0 table: a ``time_s`` column (seconds) and one column per voice (Hz).

    Unvoiced frames: 0, a negative number, NaN or an empty cell (all read as 0).
    Voiced values must lie in F0_MIN_HZ..F0_MAX_HZ; with ``duration_s`` (the
    length of the recording ``audio``) the time axis must fit the recording.
    Voice names must be letters, digits, '-' or '_' and unique; columns named
    like an estimator's confidence or time output are refused.
    Returns (times [T] s, f0 [J, T] Hz, voice names [J]).
    Raises :class:`ChoirbenchError` naming the file, line or column and the fix.
    """
    table = read_table(path, "F0 table")
    layout = "time_s, then one column per voice (e.g. time_s,soprano,alto), F0 in Hz"
    if not table.header:
        raise ChoirbenchError(f"{table.path}: no header line; the first line must name the columns: {layout}")
    if table.columns[0] != "time_s":
        raise ChoirbenchError(f"{table.path}: the first column must be time_s (seconds), found "
                              f"{table.columns[0]!r}; expected {layout}")
    voices = table.columns[1:]
    if not voices:
        raise ChoirbenchError(f"{table.path}: no voice column after time_s; expected {layout}")
    seen: dict[str, str] = {}
    for k, name in enumerate(voices, 1):
        if name.lower() in NOT_VOICES:
            raise ChoirbenchError(f"{table.where(None, k)}: holds {NOT_VOICES[name.lower()]}, not a voice's F0 "
                                  f"(the layout of an F0 estimator's own output); keep {layout}, with unvoiced "
                                  f"frames written as {UNVOICED}")
        if not VOICE_NAME.fullmatch(name):
            raise ChoirbenchError(f"{table.where(None, k)}: a voice name may hold only letters, digits, '-' and '_' "
                                  f"(it names the output file {name}.wav); rename the column")
        if name.lower() in seen:
            raise ChoirbenchError(f"{table.where(None, k)}: voice {name!r} appears twice (as {seen[name.lower()]!r}); "
                                  f"voice names must be unique")
        seen[name.lower()] = name
    times = time_axis(table, 0, duration_s=duration_s, audio=audio)
    f0 = np.stack([f0_column(table, k) for k in range(1, len(table.columns))])
    return times, f0, voices


def read_release_f0(path, *, duration_s: float | None = None, audio=None,
                    confidence_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read one voice's F0 annotation as releases and estimators write it: time, F0[, confidence].

    Comma, semicolon, tab or whitespace separated, header line optional;
    columns by position (time in seconds, F0 in Hz, then an optional
    confidence or voicing probability; further columns are ignored). The
    unvoiced rule and the F0 range are those of :func:`read_f0_table`; with
    ``confidence_threshold`` frames below it are unvoiced (before the range
    check, since CREPE reports a frequency for every frame). With
    ``duration_s`` the time axis must fit the recording ``audio``.
    Returns (times [T] s, F0 [T] Hz with 0 = unvoiced, confidence [T] or None).
    """
    table = read_table(path, "F0 table")
    if len(table.columns) < 2:
        raise ChoirbenchError(f"{table.path}: one column; expected time (s), F0 (Hz) and optionally a confidence")
    conf = table.values[:, 2] if len(table.columns) >= 3 else None
    if confidence_threshold is not None:
        if conf is None:
            raise ChoirbenchError(f"{table.path}: a confidence threshold was asked for but the table has no "
                                  f"confidence column (expected time, F0, confidence)")
        outside = np.flatnonzero((conf < 0) | (conf > 1))
        if outside.size:
            raise ChoirbenchError(f"{table.where(outside[0], 2)}: {conf[outside[0]]:g} is not a confidence in [0, 1]; "
                                  f"the third column must be the F0 estimator's confidence")
    times = time_axis(table, 0, duration_s=duration_s, audio=audio)
    hz = f0_column(table, 1, confidence=conf, threshold=confidence_threshold)
    return times, hz, conf


def write_f0(path, f0_hz: np.ndarray) -> None:
    """Write an F0 track on the hop-256 grid: ``time_s,f0_hz`` (0 = unvoiced)."""
    f0_hz = np.asarray(f0_hz, dtype=np.float64)
    times = np.arange(len(f0_hz)) * HOP / SAMPLE_RATE
    write_csv(path, pd.DataFrame({"time_s": np.round(times, 6), "f0_hz": np.round(f0_hz, 4)}))


def read_f0(path, *, n_samples: int | None = None, audio=None) -> np.ndarray:
    """Read a prepared F0 track: ``time_s,f0_hz``, frame k at k * 256 / 16000 s (16 ms).

    The unvoiced rule and F0 range are those of :func:`read_f0_table`. Every
    time must lie on the 16-ms grid (a 10-ms grid is refused, not reinterpreted).
    With ``n_samples`` (the length of the stem ``audio``) the track must have
    ``n_samples // 256`` or ``n_samples // 256 + 1`` frames.
    Returns F0 [T] in Hz (0 = unvoiced). Uses pandas' parser: it is called per
    excerpt during training.
    """
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: F0 file not found")
    try:
        frame = pd.read_csv(path, dtype=np.float64)
    except Exception as err:  # pandas raises many types for malformed CSV
        raise ChoirbenchError(f"{path}: unreadable F0 CSV ({err})") from None
    if list(frame.columns) != ["time_s", "f0_hz"]:
        raise ChoirbenchError(f"{path}: expected columns time_s,f0_hz, found {','.join(map(str, frame.columns))}")
    table = Table(path, ["time_s", "f0_hz"], True, frame.to_numpy(), np.arange(len(frame)) + 2)
    times = table.values[:, 0]
    grid = np.arange(len(times)) * HOP / SAMPLE_RATE
    off = np.flatnonzero(~(np.abs(times - grid) <= GRID_TOL_S))
    if off.size:
        i = off[0]
        raise ChoirbenchError(f"{table.where(i, 0)}: time {times[i]:g} s is off the 16-ms F0 grid (row {i} must be "
                              f"at {grid[i]:g} s = {i} x {HOP} / {SAMPLE_RATE} Hz); resample the F0 to that grid "
                              f"(choirbench.data_prep.f0.to_hop_grid does)")
    if n_samples is not None and not n_samples // HOP <= len(times) <= n_samples // HOP + 1:
        raise ChoirbenchError(f"{path}: {len(times)} F0 frames, but {audio or 'the audio'} has {n_samples} samples, "
                              f"which needs {n_samples // HOP + 1} frames on the 16-ms grid (one per 256 samples, "
                              f"from 0 s to the end of the audio)")
    return f0_column(table, 1)

def _check_notes(where: str, notes: np.ndarray, lines: np.ndarray, duration_s: float | None, audio) -> np.ndarray:
    """Notes [n, 3] (onset_s, offset_s, midi): finite, 0 <= onset <= offset, MIDI 0..127, inside the recording."""
    for k, what in enumerate(("onset_s", "offset_s", "midi")):
        bad = np.flatnonzero(~np.isfinite(notes[:, k]))
        if bad.size:
            raise ChoirbenchError(f"{where}, line {lines[bad[0]]}, column {what!r}: a number is required")
    bad = np.flatnonzero((notes[:, 0] < 0) | (notes[:, 1] < notes[:, 0]))
    if bad.size:
        i = bad[0]
        raise ChoirbenchError(f"{where}, line {lines[i]}: a note must have 0 <= onset_s <= offset_s, found "
                              f"{notes[i, 0]:g} .. {notes[i, 1]:g} s")
    bad = np.flatnonzero((notes[:, 2] < 0) | (notes[:, 2] > 127))
    if bad.size:
        raise ChoirbenchError(f"{where}, line {lines[bad[0]]}, column 'midi': {notes[bad[0], 2]:g} is not a MIDI "
                              f"pitch (0..127; 69 = A4 = 440 Hz)")
    if duration_s is not None and len(notes):
        late = np.flatnonzero(notes[:, 0] > duration_s + END_TOL_S)
        if late.size:
            i = late[0]
            hint = " (these look like milliseconds: divide by 1000)" \
                if _looks_like_ms(notes[:, 1].max(), duration_s) else ""
            raise ChoirbenchError(f"{where}, line {lines[i]}, column 'onset_s': {notes[i, 0]:g} s is after the end of "
                                  f"{audio or 'the recording'} ({duration_s:.3f} s); times must be in seconds{hint}")
    return notes


def read_notes(path, *, duration_s: float | None = None, audio=None) -> np.ndarray:
    """Read aligned notes ``onset_s,offset_s,midi`` (seconds, seconds, MIDI pitch) as an array [n, 3].

    A header line naming the three columns is required (other columns are
    ignored). Raises :class:`ChoirbenchError` naming the line for a non-number,
    an offset before its onset, a pitch outside 0..127 or, with ``duration_s``,
    an onset after the end of the recording ``audio``.
    """
    table = read_table(path, "notes file")
    missing = [c for c in ("onset_s", "offset_s", "midi") if c not in table.columns]
    if not table.header or missing:
        raise ChoirbenchError(f"{table.path}: missing column(s) {', '.join(missing)}; expected a header line "
                              f"onset_s,offset_s,midi")
    notes = table.values[:, [table.columns.index(c) for c in ("onset_s", "offset_s", "midi")]]
    return _check_notes(str(table.path), notes, table.lines, duration_s, audio)


def read_voice_notes(path, voices: list[str], *, duration_s: float | None = None,
                     audio=None) -> list[np.ndarray]:
    """Read a user's notes table ``voice,onset_s,offset_s,midi`` into one [n, 3] array per voice.

    Every ``voice`` must be one of ``voices`` (the F0 table's columns); a voice
    without notes gets an empty array. Checks as :func:`read_notes`.
    """
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: notes file not found")
    frame = None
    try:
        frame = pd.read_csv(path, dtype={"voice": str}, skip_blank_lines=True)
    except Exception as err:  # pandas raises many types for malformed CSV
        raise ChoirbenchError(f"{path}: unreadable notes CSV ({err})") from None
    columns = ["voice", "onset_s", "offset_s", "midi"]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ChoirbenchError(f"{path}: missing column(s) {', '.join(missing)}; expected a header line "
                              f"{','.join(columns)}")
    lines = np.arange(len(frame)) + 2
    unknown = np.flatnonzero(~frame["voice"].isin(voices).to_numpy())
    if unknown.size:
        i = unknown[0]
        raise ChoirbenchError(f"{path}, line {lines[i]}, column 'voice': {frame['voice'].iloc[i]!r} is not a voice of "
                              f"the F0 table (voices: {', '.join(voices)})")
    try:
        values = frame[columns[1:]].to_numpy(dtype=np.float64)
    except ValueError as err:
        raise ChoirbenchError(f"{path}: onset_s, offset_s and midi must be numbers ({err})") from None
    _check_notes(str(path), values, lines, duration_s, audio)
    return [values[frame["voice"].to_numpy() == v] for v in voices]


def write_notes(path, notes: np.ndarray) -> None:
    notes = np.asarray(notes, dtype=np.float64).reshape(-1, 3)
    write_csv(path, pd.DataFrame({"onset_s": np.round(notes[:, 0], 6), "offset_s": np.round(notes[:, 1], 6),
                                  "midi": notes[:, 2]}))
