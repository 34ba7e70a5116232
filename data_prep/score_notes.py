"""A part's notes from a release (MIDI scores, note annotations): read in seconds, checked against the part's F0.

A score is used as time-aligned notes (``f0_source: score``, nmf1's note-informed initialisation)
only after :func:`check_alignment` has compared it with what the singers sang: on the frames where
both the score and a singer's annotated F0 are voiced, the deviation in cents; over global time
offsets within ``±max_offset_s`` (one hop apart), the offset at which most frames agree within
:data:`AGREE_CENTS`. A score whose best offset is within ``tolerance_s`` is aligned; one that agrees
only at a larger offset is shifted by it or refused (``on_offset``); one whose pitches do not agree
at any offset (another part, a transposition, another edition) is refused, naming the file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.f0 import notes_to_f0

log = logging.getLogger(__name__)

AGREE_CENTS = 50.0
"""A frame agrees when the sung F0 is within a quarter tone of the score's pitch, once the singers'
overall tuning is taken out (vibrato and intonation stay inside; a neighbouring note does not)."""
TUNING_MAX_CENTS = 50.0
"""The singers' overall tuning against the score (median deviation) taken out before counting, up
to a quarter tone: a cappella choirs drift (a whole piece sung 40 cents flat is common), a score
transposed by a semitone or more must still fail."""
DEFAULT_TEMPO_US = 500_000  # microseconds per quarter note until a tempo event (120 bpm, the MIDI default)


def read_midi_notes(path: Path) -> np.ndarray:
    """Notes of a MIDI file as [n, 3] onset_s, offset_s, midi pitch, sorted by onset.

    Every track and channel is read (a per-part file holds one part); times follow the file's
    tempo map (SET_TEMPO events in any track), exactly, without quantisation. Raises
    :class:`ChoirbenchError` naming the file when it is not a readable MIDI file, uses SMPTE time,
    or holds no notes.
    """
    from music21 import midi

    path = Path(path)
    handle = midi.MidiFile()
    try:
        handle.open(str(path))
        try:
            handle.read()
        finally:
            handle.close()
    except (midi.MidiException, OSError, ValueError, IndexError, KeyError) as err:
        raise ChoirbenchError(f"{path}: not a readable MIDI file ({err})") from None
    tpq = handle.ticksPerQuarterNote
    if not isinstance(tpq, int) or tpq <= 0:
        raise ChoirbenchError(f"{path}: SMPTE time division is not supported; export the score with "
                              "ticks per quarter note")
    tempos, spans, open_notes = [], [], {}
    for track in handle.tracks:
        tick = 0
        for event in track.events:
            if event.isDeltaTime():
                tick += event.time
            elif event.type == midi.MetaEvents.SET_TEMPO and len(event.data) >= 3:
                tempos.append((tick, int.from_bytes(bytes(event.data[:3]), "big")))
            elif event.isNoteOn():
                open_notes.setdefault((track.index, event.channel, event.pitch), []).append(tick)
            elif event.isNoteOff():
                starts = open_notes.get((track.index, event.channel, event.pitch))
                if starts:
                    spans.append((starts.pop(0), tick, event.pitch))
    if not spans:
        raise ChoirbenchError(f"{path}: the MIDI file holds no notes")
    seconds = _tick_clock(sorted(tempos), tpq)
    notes = np.array([[seconds(a), seconds(b), float(p)] for a, b, p in spans])
    return notes[np.argsort(notes[:, 0], kind="stable")]


def read_lab_notes(path: Path) -> np.ndarray:
    """Note annotations ``onset_s  f0_hz  duration_s`` (whitespace-separated, Tony's .lab export, as CSD's
    ``*_notes.lab``) as [n, 3] onset_s, offset_s, midi (fractional: the measured mean pitch is kept).

    Raises :class:`ChoirbenchError` naming the file and line for a row that is not three numbers, a
    non-positive duration or a pitch outside 20-2000 Hz, and for a file without notes.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ChoirbenchError(f"{path}: unreadable note annotation ({err})") from None
    rows = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            onset, hz, duration = (float(x) for x in fields[:3])
        except ValueError:  # a non-number, or fewer than three fields
            raise ChoirbenchError(f"{path}: line {number} is not 'onset_s f0_hz duration_s': {line.strip()[:60]!r}") \
                from None
        if not (duration > 0 and 20.0 <= hz <= 2000.0 and onset >= 0):
            raise ChoirbenchError(f"{path}: line {number}: onset {onset:g} s, {hz:g} Hz, duration {duration:g} s is "
                                  "not a note (expected onset_s f0_hz duration_s, Hz within 20-2000)")
        rows.append([onset, onset + duration, 69.0 + 12.0 * np.log2(hz / 440.0)])
    if not rows:
        raise ChoirbenchError(f"{path}: the note annotation holds no notes")
    notes = np.array(rows)
    return notes[np.argsort(notes[:, 0], kind="stable")]


def read_part_notes(path: Path) -> np.ndarray:
    """Notes of a MIDI file (``.mid``/``.midi``) or of a note annotation (``.lab``), by the file's suffix."""
    return read_lab_notes(path) if Path(path).suffix.lower() == ".lab" else read_midi_notes(path)


def _tick_clock(tempos: list[tuple[int, int]], tpq: int):
    """ticks -> seconds under a tempo map [(tick, microseconds per quarter)]."""
    marks, at, last_tick, last_tempo = [], 0.0, 0, DEFAULT_TEMPO_US
    for tick, tempo in tempos:
        at += (tick - last_tick) * last_tempo / tpq / 1e6
        marks.append((tick, at, tempo))
        last_tick, last_tempo = tick, tempo
    starts = [0] + [m[0] for m in marks]
    clock = [(0, 0.0, DEFAULT_TEMPO_US)] + marks

    def seconds(tick: int) -> float:
        k = int(np.searchsorted(starts, tick, side="right")) - 1
        base_tick, base_s, tempo = clock[k]
        return base_s + (tick - base_tick) * tempo / tpq / 1e6

    return seconds


@dataclass
class Alignment:
    """How a score agrees with a part's annotated F0 (see :func:`check_alignment`)."""

    offset_s: float          # best global offset: the score's notes come this much later in the singing
    agreement: float         # share of co-voiced frames within AGREE_CENTS at the best offset
    agreement_at_zero: float  # the same without any shift
    median_cents: float      # median signed deviation sung - score (cents) at the best offset
    tuning_cents: float      # the part of it taken out before counting (clipped to +-TUNING_MAX_CENTS)
    frames: int              # co-voiced frames at the best offset (all singers of the part)


def check_alignment(notes: np.ndarray, tracks: list[np.ndarray], *, max_offset_s: float = 1.0) -> Alignment:
    """Compare aligned notes [n, 3] with the annotated F0 of the singers of that part.

    tracks: each singer's F0 on the hop grid (Hz, 0 = unvoiced). Every global offset in
    ``±max_offset_s`` (one hop, 16 ms, apart) is tried; the best is the one with the most frames (over
    all singers) within :data:`AGREE_CENTS` of the score after the singers' overall tuning (the median
    deviation, clipped to :data:`TUNING_MAX_CENTS`) is taken out (ties: the smaller shift). Only a global
    offset is estimated: a score at another tempo than the singing drifts and fails the agreement.
    """
    n = max(len(t) for t in tracks)
    k_max = int(round(max_offset_s * SAMPLE_RATE / HOP))
    # the score on a grid padded by k_max frames on both sides, so that every shift is a slice
    score = notes_to_f0(np.asarray(notes, float).reshape(-1, 3) + [[max_offset_s, max_offset_s, 0.0]],
                        n + 2 * k_max)
    sung = np.zeros((len(tracks), n))
    for i, track in enumerate(tracks):
        sung[i, :len(track)] = track
    best = None
    for k in range(-k_max, k_max + 1):  # notes later by k frames: score frame t - k lines up with sung frame t
        window = score[k_max - k: k_max - k + n]
        both = (sung > 0) & (window > 0)
        cents = 1200 * np.log2(sung[both] / np.broadcast_to(window, sung.shape)[both])
        median = float(np.median(cents)) if len(cents) else np.nan
        tuning = float(np.clip(median, -TUNING_MAX_CENTS, TUNING_MAX_CENTS)) if len(cents) else 0.0
        agree = int((np.abs(cents - tuning) < AGREE_CENTS).sum())
        stats = (agree, int(both.sum()), median, k, tuning)
        if k == 0:
            zero = stats
        if best is None or agree > best[0] or (agree == best[0] and abs(k) < abs(best[3])):
            best = stats
    agree, frames, median, k, tuning = best
    return Alignment(offset_s=k * HOP / SAMPLE_RATE, agreement=agree / frames if frames else 0.0,
                     agreement_at_zero=zero[0] / zero[1] if zero[1] else 0.0, median_cents=median,
                     tuning_cents=tuning, frames=frames)


def aligned_notes(path: Path, notes: np.ndarray, tracks: list[np.ndarray], params: dict, where: str,
                  keys: str) -> np.ndarray:
    """The score's notes, checked against the part's F0 (``tracks``) and shifted where allowed.

    params: ``score_max_offset_s``, ``score_tolerance_s``, ``score_min_agreement``, ``score_misaligned``
    (``shift`` or ``refuse``), found under the config block ``keys`` (named in the messages). Raises
    :class:`ChoirbenchError` naming ``path`` when the pitches do not agree at any offset, or when the
    score is offset and ``score_misaligned`` is ``refuse``.
    """
    if params["score_misaligned"] not in ("shift", "refuse"):
        raise ChoirbenchError(f"{keys}.score_misaligned: {params['score_misaligned']!r} is neither shift nor refuse")
    fit = check_alignment(notes, tracks, max_offset_s=float(params["score_max_offset_s"]))
    minimum = float(params["score_min_agreement"])
    fix = f"check that it is the score of {where}, or set {keys}.notes_sources: [] to convert without scores"
    if fit.agreement < minimum:
        transposed = abs(fit.median_cents) > 600 if np.isfinite(fit.median_cents) else False
        raise ChoirbenchError(
            f"{path}: the score does not match the sung F0 of {where}: at the best offset ({fit.offset_s:+.2f} s) "
            f"only {fit.agreement:.0%} of {fit.frames} co-voiced frames are within {AGREE_CENTS:g} cents "
            f"(needs {minimum:.0%}; median deviation {fit.median_cents:+.0f} cents"
            f"{', a transposition?' if transposed else ''}); {fix}")
    if abs(fit.offset_s) <= float(params["score_tolerance_s"]):
        log.info("%s: aligned with the F0 of %s (%.0f%% of frames within %g cents; the singers' tuning %+.0f "
                 "cents)", path.name, where, 100 * fit.agreement_at_zero, AGREE_CENTS, fit.tuning_cents)
        return notes
    if params["score_misaligned"] == "refuse":
        raise ChoirbenchError(
            f"{path}: the score is offset by {fit.offset_s:+.2f} s from the sung F0 of {where} ({fit.agreement:.0%} "
            f"of frames agree there, {fit.agreement_at_zero:.0%} without the shift; tolerance "
            f"{float(params['score_tolerance_s']):g} s); shift it, or set {keys}.score_misaligned: shift")
    log.warning("%s: shifted by %+.3f s to align with the F0 of %s (%.0f%% of frames within %g cents after the "
                "shift, %.0f%% before)", path.name, fit.offset_s, where, 100 * fit.agreement, AGREE_CENTS,
                100 * fit.agreement_at_zero)
    shifted = np.asarray(notes, float).copy()
    shifted[:, :2] += fit.offset_s
    shifted = shifted[shifted[:, 1] > 0]  # notes moved before the recording's start are left out
    shifted[:, 0] = np.maximum(shifted[:, 0], 0.0)
    return shifted
