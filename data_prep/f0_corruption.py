"""Controlled F0 errors for the robustness study (the paper's finding 5).

Schulze-Forster et al. (TASLP 2023, robustness experiment) give their models an F0 with
additive errors at test time (-60 to +57 Hz in steps of 3 Hz) and report how SI-SDR falls.
This module corrupts an F0 array ``f0[J, T]`` (Hz, 0 = unvoiced, one frame per 16 ms) in the
same spirit, with five kinds of error, each written as a compact spec string:

``none``
    identity.
``offset_hz:+12``
    every voiced frame of every voice moves by +12 Hz (any finite number, signed).
``offset_cents:-50``
    every voiced frame is multiplied by 2^(-50/1200) (any finite number of cents).
``octave:+1@0.2``
    octave errors: a share 0.2 of each voice's voiced frames is multiplied by 2^(+1);
    octaves are an integer in -3..+3, the share is in [0, 1].
``missing:0.3``
    a share 0.3 of each voice's voiced frames is set to 0 (the F0 is lost there).
``voicing:0.1``
    voicing errors: a share 0.1 of each voice's frames (all of them, voiced or not) is flipped;
    a voiced frame becomes unvoiced (0), an unvoiced one becomes voiced with the F0 of the
    nearest voiced frame of the original track (the earlier one on a tie). A voice that is
    never voiced has no F0 to give, so its unvoiced frames stay unvoiced.

Which frames (octave, missing, voicing). For each voice separately the candidate frames (its
voiced frames; all frames for ``voicing``) are taken in time order and cut into consecutive
segments of ``S`` candidates (the last one shorter); the segments are shuffled by a seeded
generator and taken in that order until exactly ``k = round(share * n_candidates)`` frames are
chosen (the last segment taken is cut short). So a share is met to one frame, errors come in
runs as a pitch tracker's do, and for one seed a smaller share picks a subset of the frames of a
larger one (curves over the share are nested, not re-drawn). ``S`` defaults to
:data:`DEFAULT_SEGMENT` frames (16 frames = 0.256 s) for octave and missing errors and to 1
(independent frames) for voicing errors; a suffix ``~S`` sets it, e.g. ``missing:0.3~1``.

Every corrupted voiced value is clipped to [:data:`F0_FLOOR_HZ`, :data:`F0_CEIL_HZ`] so that a
voiced frame stays voiced (a -60 Hz offset on a 70 Hz bass gives 20 Hz, not -10 Hz) and below
Nyquist at 16 kHz. In spec strings ``=`` may stand for ``:`` (the form used in directory names,
see :attr:`Corruption.label`).
"""
from __future__ import annotations

import dataclasses
import math
import re
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from choirbench import SAMPLE_RATE, ChoirbenchError

KINDS = ("none", "offset_hz", "offset_cents", "octave", "missing", "voicing")
"""Every kind of F0 error, in the order tables and figures list them."""
DEFAULT_SEGMENT = 16
"""Frames per error segment for octave and missing errors (16 x 16 ms = 0.256 s)."""
F0_FLOOR_HZ = 20.0
F0_CEIL_HZ = SAMPLE_RATE / 2
MAX_OCTAVES = 3

_EXAMPLES = ("none, offset_hz:+12, offset_cents:-50, octave:+1@0.2, missing:0.3, voicing:0.1 "
             "(optional ~S segment length)")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_PATTERNS = {
    "none": re.compile(r""),
    "offset_hz": re.compile(rf"(?P<value>{_NUMBER})"),
    "offset_cents": re.compile(rf"(?P<value>{_NUMBER})"),
    "octave": re.compile(rf"(?P<value>[+-]?\d+)@(?P<share>{_NUMBER})(?:~(?P<segment>\d+))?"),
    "missing": re.compile(rf"(?P<share>{_NUMBER})(?:~(?P<segment>\d+))?"),
    "voicing": re.compile(rf"(?P<share>{_NUMBER})(?:~(?P<segment>\d+))?"),
}
_DEFAULT_SEGMENTS = {"octave": DEFAULT_SEGMENT, "missing": DEFAULT_SEGMENT, "voicing": 1}


@dataclasses.dataclass(frozen=True)
class Corruption:
    """One F0 error: ``kind`` (see :data:`KINDS`), ``value`` (Hz, cents or octaves; 0 for the
    share-only kinds), ``share`` of frames (octave, missing, voicing; else 0) and ``segment``
    length in frames (octave, missing, voicing; else 0)."""

    kind: str
    value: float = 0.0
    share: float = 0.0
    segment: int = 0

    @property
    def spec(self) -> str:
        """The canonical spec string, e.g. ``octave:+1@0.2`` (the segment only when not the default)."""
        if self.kind == "none":
            return "none"
        seg = "" if self.segment == _DEFAULT_SEGMENTS.get(self.kind) else f"~{self.segment}"
        if self.kind in ("offset_hz", "offset_cents"):
            return f"{self.kind}:{self.value:+g}"
        if self.kind == "octave":
            return f"octave:{int(self.value):+d}@{self.share:g}{seg}"
        return f"{self.kind}:{self.share:g}{seg}"

    @property
    def label(self) -> str:
        """The spec as a directory name: ``:`` replaced by ``=`` (``offset_hz=+12``)."""
        return self.spec.replace(":", "=")

    @property
    def size(self) -> float:
        """The error size a robustness curve puts on its x axis: Hz, cents, octaves or share."""
        return self.share if self.kind in ("missing", "voicing") else self.value

    @property
    def is_identity(self) -> bool:
        if self.kind in ("offset_hz", "offset_cents"):
            return self.value == 0
        if self.kind == "octave":
            return self.value == 0 or self.share == 0
        return self.kind == "none" or self.share == 0

    def apply(self, f0: np.ndarray, seed: int | Sequence[int] = 0) -> np.ndarray:
        """The corrupted copy of ``f0[J, T]`` (Hz, 0 = unvoiced); the input is not modified.

        ``seed`` (an int or a sequence of ints) fixes which frames are hit: voice ``j`` draws
        from ``numpy.random.default_rng([*seed, j])``. Offsets draw nothing.
        Raises ChoirbenchError if ``f0`` is not a 2-D array of finite, non-negative values.
        """
        dtype = np.asarray(f0).dtype if np.issubdtype(np.asarray(f0).dtype, np.floating) else np.float64
        f0 = _checked_f0(f0)
        out = f0.copy()
        if self.is_identity:
            return out.astype(dtype)
        voiced = f0 > 0
        if self.kind == "offset_hz":
            out[voiced] = _clip(f0[voiced] + self.value)
        elif self.kind == "offset_cents":
            out[voiced] = _clip(f0[voiced] * 2.0 ** (self.value / 1200.0))
        else:
            seeds = [int(seed)] if np.ndim(seed) == 0 else [int(s) for s in seed]
            for j, track in enumerate(f0):
                rng = np.random.default_rng([*seeds, j])
                if self.kind == "voicing":
                    out[j] = _flip_voicing(track, _pick(np.arange(len(track)), self.share, self.segment, rng))
                    continue
                hit = _pick(np.flatnonzero(track > 0), self.share, self.segment, rng)
                out[j, hit] = 0.0 if self.kind == "missing" else _clip(track[hit] * 2.0 ** self.value)
        return out.astype(dtype)


def parse_corruption(spec: str) -> Corruption:
    """Parse a spec string (see the module docstring). Raises ChoirbenchError naming the spec and
    what is wrong with it, with examples of valid specs."""
    if isinstance(spec, Corruption):
        return spec
    text = str(spec).strip()
    kind, sep, rest = text.partition(":")
    if not sep:
        kind, sep, rest = text.partition("=")
    kind = kind.strip()
    if kind not in _PATTERNS:
        raise ChoirbenchError(f"F0 corruption {text!r}: unknown kind {kind!r} (expected one of {', '.join(KINDS)}; "
                              f"e.g. {_EXAMPLES})")
    match = _PATTERNS[kind].fullmatch(rest.strip())
    if match is None or (kind == "none" and rest):
        raise ChoirbenchError(f"F0 corruption {text!r}: cannot read {rest!r} as the size of a {kind!r} error "
                              f"(e.g. {_EXAMPLES})")
    parts = match.groupdict()
    value = float(parts.get("value") or 0.0)
    share = float(parts.get("share") or 0.0)
    segment = int(parts["segment"]) if parts.get("segment") else _DEFAULT_SEGMENTS.get(kind, 0)
    if not math.isfinite(value):
        raise ChoirbenchError(f"F0 corruption {text!r}: the size must be finite")
    if not 0.0 <= share <= 1.0:
        raise ChoirbenchError(f"F0 corruption {text!r}: the share of frames must be in [0, 1], got {share:g}")
    if kind == "octave" and abs(value) > MAX_OCTAVES:
        raise ChoirbenchError(f"F0 corruption {text!r}: octave errors go from -{MAX_OCTAVES} to +{MAX_OCTAVES}, "
                              f"got {value:+g}")
    if kind in _DEFAULT_SEGMENTS and segment < 1:
        raise ChoirbenchError(f"F0 corruption {text!r}: the segment length (~S) must be at least 1 frame")
    return Corruption(kind, value, share, segment)


def corrupt_f0(f0: np.ndarray, spec: str | Corruption, seed: int | Sequence[int] = 0) -> np.ndarray:
    """``parse_corruption(spec).apply(f0, seed)``: the corrupted copy of ``f0[J, T]`` (Hz)."""
    return parse_corruption(spec).apply(f0, seed)


def excerpt_seed(seed: int, example_id: str) -> tuple[int, int]:
    """The seed of one excerpt's corruption: the run's seed and a stable hash (CRC-32) of the
    excerpt id, so every excerpt gets its own error pattern, the same on every machine."""
    return int(seed), zlib.crc32(str(example_id).encode("utf-8"))


def grid_specs(block: dict) -> list[str]:
    """The canonical specs of a config's ``robustness`` block, in :data:`KINDS` order, without the
    zero-size points (the true F0 is the main run's). ``block``: ``grids`` {kind: [sizes]},
    ``octave_shares`` [share] (each octave size is run at each share) and ``segments`` {kind: frames}.
    Raises ChoirbenchError naming the spec built from a bad size."""
    grids, segments = block.get("grids", {}), block.get("segments", {})
    unknown = set(grids) - set(KINDS[1:]) | set(segments) - set(_DEFAULT_SEGMENTS)
    if unknown:
        raise ChoirbenchError(f"robustness: unknown kind(s) {sorted(unknown)} (expected {', '.join(KINDS[1:])})")
    seg = {k: f"~{segments[k]}" if k in segments else "" for k in _DEFAULT_SEGMENTS}
    specs = [f"offset_hz:{v:+g}" for v in grids.get("offset_hz", [])]
    specs += [f"offset_cents:{v:+g}" for v in grids.get("offset_cents", [])]
    specs += [f"octave:{int(v):+d}@{s:g}{seg['octave']}" for s in block.get("octave_shares", [])
              for v in grids.get("octave", [])]
    specs += [f"missing:{v:g}{seg['missing']}" for v in grids.get("missing", [])]
    specs += [f"voicing:{v:g}{seg['voicing']}" for v in grids.get("voicing", [])]
    parsed = [parse_corruption(s) for s in specs]
    return list(dict.fromkeys(c.spec for c in parsed if not c.is_identity))


def study_excerpts(examples: pd.DataFrame, max_examples: int) -> pd.DataFrame:
    """The robustness study's excerpts: ``max_examples`` rows of an excerpt list taken round-robin
    over its songs (each song's first excerpt, then each song's second, ...), so that every song is
    represented when there are enough; in the list's order. All rows when ``max_examples`` is 0.
    Raises ChoirbenchError for a negative count."""
    if max_examples < 0:
        raise ChoirbenchError(f"robustness.max_examples must be >= 0, got {max_examples}")
    if max_examples == 0 or max_examples >= len(examples):
        return examples.reset_index(drop=True)
    rank = examples.groupby("song", sort=False).cumcount()
    song = examples["song"].map({s: i for i, s in enumerate(dict.fromkeys(examples["song"]))})
    keep = np.lexsort((song.to_numpy(), rank.to_numpy()))[:max_examples]
    return examples.iloc[np.sort(keep)].reset_index(drop=True)


def _checked_f0(f0: np.ndarray) -> np.ndarray:
    f0 = np.asarray(f0, dtype=np.float64)
    if f0.ndim != 2:
        raise ChoirbenchError(f"F0 to corrupt must be [voices, frames], got shape {f0.shape}")
    if not np.all(np.isfinite(f0)) or np.any(f0 < 0):
        raise ChoirbenchError("F0 to corrupt must be finite and non-negative (Hz, 0 = unvoiced)")
    return f0


def _clip(values: np.ndarray) -> np.ndarray:
    """Keep a corrupted voiced frame voiced and below Nyquist."""
    return np.clip(values, F0_FLOOR_HZ, F0_CEIL_HZ)


def _pick(candidates: np.ndarray, share: float, segment: int, rng: np.random.Generator) -> np.ndarray:
    """round(share * n) of the candidate frames, in whole shuffled segments of ``segment`` candidates."""
    n = len(candidates)
    k = int(math.floor(share * n + 0.5))
    if k == 0:
        return candidates[:0]
    blocks = [candidates[i:i + segment] for i in range(0, n, segment)]
    order = rng.permutation(len(blocks))
    return np.sort(np.concatenate([blocks[b] for b in order])[:k])


def _flip_voicing(track: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """Flip the voicing of the frames ``hit``; a newly voiced frame takes the nearest original F0."""
    out = track.copy()
    voiced_idx = np.flatnonzero(track > 0)
    was_voiced = track[hit] > 0
    out[hit[was_voiced]] = 0.0
    gained = hit[~was_voiced]
    if len(gained) and len(voiced_idx):
        right = np.clip(np.searchsorted(voiced_idx, gained), 0, len(voiced_idx) - 1)
        left = np.clip(right - 1, 0, len(voiced_idx) - 1)
        take_left = np.abs(gained - voiced_idx[left]) <= np.abs(voiced_idx[right] - gained)
        out[gained] = track[np.where(take_left, voiced_idx[left], voiced_idx[right])]
    return out


__all__ = ["DEFAULT_SEGMENT", "F0_CEIL_HZ", "F0_FLOOR_HZ", "KINDS", "Corruption", "corrupt_f0", "excerpt_seed",
           "grid_specs", "parse_corruption", "study_excerpts"]
