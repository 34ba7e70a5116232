"""Reading and writing audio, F0 and note files with checks and atomic writes.

Every reader names the offending file in its error; every writer writes to a
temporary name in the target folder and renames, so an interrupted run never
leaves a half-written file that a later step would trust.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
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


def read_wav(path, sr: int | None = SAMPLE_RATE, *, start: int = 0, frames: int = -1,
             allow_silence: bool = True) -> tuple[np.ndarray, int]:
    """Read a mono WAV as float32, checking what the benchmark relies on.

    ``sr=None`` accepts any rate (the caller resamples); otherwise a different
    rate is an error. Multichannel files, NaN/Inf samples and unreadable files
    raise :class:`ChoirbenchError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: file not found")
    try:
        info = sf.info(path)
        audio, rate = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, ValueError) as err:
        raise ChoirbenchError(f"{path}: not a readable WAV file ({err})") from None
    if info.channels != 1:
        raise ChoirbenchError(f"{path}: expected mono audio, found {info.channels} channels")
    if sr is not None and rate != sr:
        raise ChoirbenchError(f"{path}: sample rate is {rate} Hz, expected {sr} Hz")
    audio = audio[:, 0]
    if not np.all(np.isfinite(audio)):
        raise ChoirbenchError(f"{path}: contains NaN or Inf samples")
    if not allow_silence and not np.any(audio):
        raise ChoirbenchError(f"{path}: is entirely silent")
    return audio, rate


def wav_frames(path) -> int:
    """Number of samples in a WAV file (header only)."""
    try:
        return sf.info(path).frames
    except (RuntimeError, sf.LibsndfileError) as err:
        raise ChoirbenchError(f"{path}: not a readable WAV file ({err})") from None


def write_f0(path, f0_hz: np.ndarray) -> None:
    """Write an F0 track on the hop-256 grid: ``time_s,f0_hz`` (0 = unvoiced)."""
    f0_hz = np.asarray(f0_hz, dtype=np.float64)
    times = np.arange(len(f0_hz)) * HOP / SAMPLE_RATE
    write_csv(path, pd.DataFrame({"time_s": np.round(times, 6), "f0_hz": np.round(f0_hz, 4)}))


def read_f0(path) -> np.ndarray:
    """Read a prepared F0 track (hop 256 at 16 kHz); checks grid and values."""
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: F0 file not found")
    try:
        frame = pd.read_csv(path)
    except Exception as err:  # pandas raises many types for malformed CSV
        raise ChoirbenchError(f"{path}: unreadable F0 CSV ({err})") from None
    if list(frame.columns[:2]) != ["time_s", "f0_hz"]:
        raise ChoirbenchError(f"{path}: expected columns time_s,f0_hz, found {list(frame.columns)}")
    f0 = frame["f0_hz"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(f0)) or np.any(f0 < 0):
        raise ChoirbenchError(f"{path}: F0 must be finite and >= 0 (0 = unvoiced)")
    return f0


def read_f0_table(path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a user F0 table: ``time_s`` plus one column per voice (Hz, 0 = unvoiced).

    Returns (times, f0[J, T], voice names).
    """
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: F0 file not found")
    try:
        frame = pd.read_csv(path)
    except Exception as err:
        raise ChoirbenchError(f"{path}: unreadable F0 CSV ({err})") from None
    if "time_s" not in frame.columns or len(frame.columns) < 2:
        raise ChoirbenchError(f"{path}: expected a time_s column and one column per voice")
    voices = [c for c in frame.columns if c != "time_s"]
    f0 = frame[voices].to_numpy(dtype=np.float64).T
    times = frame["time_s"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(f0)) or np.any(f0 < 0) or not np.all(np.isfinite(times)):
        raise ChoirbenchError(f"{path}: F0 values must be finite and >= 0 (0 = unvoiced)")
    if np.any(np.diff(times) <= 0):
        raise ChoirbenchError(f"{path}: time_s must be strictly increasing")
    return times, f0, voices


def read_notes(path) -> np.ndarray:
    """Read aligned notes ``onset_s,offset_s,midi`` as an array [n, 3]."""
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: notes file not found")
    try:
        frame = pd.read_csv(path)
    except Exception as err:
        raise ChoirbenchError(f"{path}: unreadable notes CSV ({err})") from None
    missing = {"onset_s", "offset_s", "midi"} - set(frame.columns)
    if missing:
        raise ChoirbenchError(f"{path}: missing columns {sorted(missing)}")
    notes = frame[["onset_s", "offset_s", "midi"]].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(notes)) or np.any(notes[:, 1] < notes[:, 0]):
        raise ChoirbenchError(f"{path}: notes must be finite with offset_s >= onset_s")
    return notes


def write_notes(path, notes: np.ndarray) -> None:
    notes = np.asarray(notes, dtype=np.float64).reshape(-1, 3)
    write_csv(path, pd.DataFrame({"onset_s": np.round(notes[:, 0], 6), "offset_s": np.round(notes[:, 1], 6),
                                  "midi": notes[:, 2]}))
