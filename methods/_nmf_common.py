"""Helpers shared by the two NMF baselines (``nmf1``, ``nmf2``).

Kept apart so that both methods read the inputs the same way: F0 frames mapped onto the
STFT frames, notes derived from an F0 track where a dataset has no score, notes cleaned
and clipped to the excerpt, and ratio masks that sum to one wherever the mixture has energy.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.ndimage

from choirbench import HOP, SAMPLE_RATE

log = logging.getLogger(__name__)


def check_inputs(mixture: np.ndarray, sr: int, f0: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Mixture as float64 [N], F0 as float64 [J, T] with non-finite/negative values set to 0 (unvoiced).

    The NMF models are built for the 16-kHz grid (templates, F0 hop), so any other rate is refused
    rather than silently resampled: the harness always passes 16 kHz.
    """
    if sr != SAMPLE_RATE:
        raise ValueError(f"{method}: sample rate {sr} Hz given, the method works at {SAMPLE_RATE} Hz")
    mixture = np.asarray(mixture, dtype=np.float64)
    if mixture.ndim != 1:
        raise ValueError(f"{method}: mixture must be 1-D, got shape {mixture.shape}")
    f0 = np.asarray(f0, dtype=np.float64)
    if f0.ndim != 2:
        raise ValueError(f"{method}: f0 must be [J, T], got shape {f0.shape}")
    f0 = np.where(np.isfinite(f0) & (f0 > 0), f0, 0.0)
    return np.nan_to_num(mixture), f0


def f0_on_frames(f0: np.ndarray, n_frames: int, hop: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """F0 [J, T] (hop 256) sampled at the STFT frame times ``t * hop / sr`` (nearest F0 frame).

    A track one or two frames shorter than the STFT is extended with its last value (the harness's
    T = N // 256 misses the final centred frame); further out the voice counts as unvoiced.
    """
    J, T = f0.shape
    if T == 0:
        return np.zeros((J, n_frames))
    index = np.rint(np.arange(n_frames) * hop / HOP * SAMPLE_RATE / sr).astype(int)
    out = f0[:, np.clip(index, 0, T - 1)]
    out[:, index > T + 1] = 0.0
    return out


def hz_to_midi(f_hz: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 69.0 + 12.0 * np.log2(np.asarray(f_hz, dtype=np.float64) / 440.0)


def midi_to_hz(midi: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def notes_from_f0(f0_track: np.ndarray, *, hop_s: float = HOP / SAMPLE_RATE, smooth_frames: int = 5,
                  min_note_s: float = 0.06) -> np.ndarray:
    """Notes [n, 3] (onset_s, offset_s, midi) from one voice's F0 track (frame t at ``t * hop_s``).

    The pitch is median-smoothed inside voiced runs (so vibrato around a semitone boundary does
    not split a note into flickers), rounded to semitones and cut where the semitone changes or
    the voice stops; segments shorter than ``min_note_s`` are dropped (the activation margins
    of nmf1 cover the gaps they leave).
    """
    f0_track = np.asarray(f0_track, dtype=np.float64)
    voiced = np.isfinite(f0_track) & (f0_track > 0)
    if not voiced.any():
        return np.zeros((0, 3))
    midi = np.where(voiced, hz_to_midi(np.where(voiced, f0_track, 1.0)), np.nan)
    if smooth_frames > 1:
        # median over voiced neighbours only: fill unvoiced frames with the nearest voiced pitch first,
        # filter, then put the gaps back
        idx = np.where(voiced, np.arange(len(midi)), 0)
        np.maximum.accumulate(idx, out=idx)
        filled = midi[idx]
        filled[: np.argmax(voiced)] = midi[np.argmax(voiced)]
        filled = scipy.ndimage.median_filter(filled, size=smooth_frames, mode="nearest")
        midi = np.where(voiced, filled, np.nan)
    semitone = np.where(voiced, np.rint(np.nan_to_num(midi)), -1).astype(int)
    change = np.flatnonzero(np.diff(semitone) != 0) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(semitone)]])
    keep = (semitone[starts] >= 0) & ((ends - starts) * hop_s >= min_note_s)
    starts, ends = starts[keep], ends[keep]
    return np.stack([starts * hop_s, ends * hop_s, semitone[starts].astype(np.float64)], axis=1)


def clean_notes(notes: np.ndarray | None, duration_s: float, midi_range: tuple[float, float]) -> np.ndarray:
    """Notes [n, 3] clipped to [0, duration], with empty, non-finite and out-of-range pitches removed.

    Pitches outside ``midi_range`` (the template grid) are dropped with a warning: a template
    there would be meaningless (below the lowest resolvable pitch or above Nyquist).
    """
    if notes is None:
        return np.zeros((0, 3))
    notes = np.asarray(notes, dtype=np.float64).reshape(-1, 3)
    notes = notes[np.all(np.isfinite(notes), axis=1)]
    onset = np.clip(notes[:, 0], 0.0, duration_s)
    offset = np.clip(notes[:, 1], 0.0, duration_s)
    midi = np.rint(notes[:, 2])
    inside = offset > onset
    in_grid = (midi >= midi_range[0]) & (midi <= midi_range[1])
    if np.any(inside & ~in_grid):
        log.warning("dropping %d note(s) with a pitch outside the template grid MIDI %g-%g",
                    int(np.sum(inside & ~in_grid)), *midi_range)
    keep = inside & in_grid
    return np.stack([onset[keep], offset[keep], midi[keep]], axis=1)


def ratio_masks(voice_models: np.ndarray, power: float, active: np.ndarray, floor: float = 1e-12) -> np.ndarray:
    """Masks [J, F, T] = model_j^p / sum_k model_k^p that sum to one wherever any voice is active.

    Where the models are all (numerically) zero in a bin, the bin is shared equally by the voices
    active in that frame (``active`` [J, T]), or, in frames where none is, by every voice active
    somewhere in the excerpt. Only a voice that is silent over the whole excerpt gets a zero mask
    everywhere (and, when every voice is silent, the masks are all zero: there is nothing to assign).
    """
    J, F, T = voice_models.shape
    active = np.asarray(active, dtype=bool)
    anywhere = active.any(axis=1)
    share = np.where(active.any(axis=0, keepdims=True), active, anywhere[:, None]).astype(np.float64)
    share /= np.maximum(share.sum(axis=0, keepdims=True), 1.0)  # [J, T]
    scaled = voice_models / max(float(voice_models.max(initial=0.0)), np.finfo(np.float64).tiny)
    powered = scaled ** power
    total = powered.sum(axis=0, keepdims=True)
    ok = total > floor
    masks = np.where(ok, powered / np.where(ok, total, 1.0), share[:, None, :])
    return masks
