"""Bach chorale scores from music21's corpus, turned into sung performances.

Two stages, both pure numpy once the score is parsed:

* :func:`load_chorale` reads one four-part chorale into plain note lists
  (ties merged, fermatas, beat strengths, one vowel + onset consonant per
  note from the lyrics, or a plausible seeded syllable sequence where the
  piece has no text).
* :func:`perform_singer` turns one part into the control curves one singer
  sings (1 kHz control rate): F0 with portamento, vibrato, intonation offset
  and drift; a voicing gate with attacks and releases; loudness; the vowel
  sung; consonant and breath events. Each singer's
  :class:`SingerTraits` are drawn once from its own seed, so the singer keeps
  them across the whole piece.

Timing is shared by the four parts through a :class:`TimeMap` (tempo per
piece, fermatas lengthened, a breath pause after each inner fermata); singers
deviate from it by a few tens of milliseconds.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import uniform_filter1d

from choirbench import HOP, PARTS, SAMPLE_RATE, ChoirbenchError

log = logging.getLogger(__name__)

INDEX_PATH = Path(__file__).with_name("bach_chorales.csv")
"""Shipped index of music21's Bach corpus: which pieces are four-part S/A/T/B chorales."""
CTRL_HOP = 16
"""Control-rate hop in samples at 16 kHz (1 ms); HOP is a multiple of it."""
CTRL_RATE = SAMPLE_RATE / CTRL_HOP
VOWELS = ("a", "e", "i", "o", "u")
CONSONANTS = ("s", "sh", "f", "h", "plosive")
LEAD_IN_S = 0.5
"""Silence before the first note, so early onsets and consonants stay inside the file."""
TAIL_S = 1.0
"""Silence after the last note (release, room tail)."""

assert HOP % CTRL_HOP == 0


# ----------------------------------------------------------------------------- index

def natural_key(piece_id: str) -> tuple:
    """Sort 'bwv9.7' before 'bwv10.7' (numbers compared as numbers)."""
    return tuple(int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", piece_id))


def part_role(name: str | None) -> str | None:
    """S/A/T/B from a part name such as 'Soprano', 'Canto', 'Alto', 'Tenore', 'Basso'."""
    name = (name or "").strip().lower()
    for prefix, role in (("sop", "S"), ("canto", "S"), ("cantus", "S"), ("alt", "A"), ("ten", "T"),
                         ("bas", "B")):
        if name.startswith(prefix):
            return role
    return None


def _corpus_candidates() -> dict[str, str]:
    """piece id -> corpus path for every Bach score music21 ships (one format per piece)."""
    from music21 import corpus

    preference = {".mxl": 0, ".xml": 1, ".musicxml": 1, ".krn": 2}
    best: dict[str, tuple[int, str]] = {}
    for path in corpus.getComposer("bach"):
        path = Path(path)
        if path.suffix not in preference:
            continue  # e.g. .rntxt analyses, not scores
        piece_id = path.name[: -len(path.suffix)]
        rank = preference[path.suffix]
        if piece_id not in best or rank < best[piece_id][0]:
            best[piece_id] = (rank, f"bach/{path.name}")
    return {pid: rel for pid, (_, rel) in best.items()}


def _describe_score(score) -> dict:
    parts = list(score.parts)
    roles = [part_role(p.partName) for p in parts]
    quarters = float(score.highestTime)
    has_lyrics = any(n.lyric for n in parts[0].recurse().notes) if parts else False
    return {"n_parts": len(parts), "part_names": "|".join(str(p.partName) for p in parts),
            "satb": len(parts) == 4 and sorted(roles, key=str) == sorted(PARTS),
            "quarters": round(quarters, 3), "lyrics": bool(has_lyrics)}


def build_chorale_index(path: Path | None = INDEX_PATH) -> pd.DataFrame:
    """Parse every Bach score of music21's corpus and write the index CSV.

    Slow (parses ~400 scores); run it once when music21's corpus changes:
    ``python -c "from choirbench.data_prep.chorale_scores import build_chorale_index as b; b()"``.
    """
    from music21 import corpus

    rows = []
    for piece_id, rel in sorted(_corpus_candidates().items(), key=lambda kv: natural_key(kv[0])):
        try:
            info = _describe_score(corpus.parse(rel))
        except Exception as err:  # a broken corpus file is listed, not fatal
            log.warning("could not parse %s: %s", rel, err)
            info = {"n_parts": 0, "part_names": "", "satb": False, "quarters": 0.0, "lyrics": False}
        rows.append({"piece_id": piece_id, "corpus_path": rel, **info})
    frame = pd.DataFrame(rows)
    if path is not None:
        from choirbench.io import write_csv
        write_csv(path, frame)
    return frame


@functools.lru_cache(maxsize=1)
def chorale_index() -> pd.DataFrame:
    """The shipped index (all Bach scores of the corpus, with an ``satb`` flag)."""
    return pd.read_csv(INDEX_PATH, dtype={"piece_id": str, "corpus_path": str, "part_names": str})


def satb_chorale_ids(max_quarters: float | None = None) -> list[str]:
    """Ids of the four-part chorales, in natural order, optionally only those up to ``max_quarters`` long."""
    index = chorale_index()
    index = index[index["satb"].astype(bool)]
    if max_quarters is not None:
        index = index[index["quarters"] <= max_quarters]
    return sorted(index["piece_id"], key=natural_key)


# ----------------------------------------------------------------------------- lyrics -> vowels

_VOWEL_RULES = (("ie", "i"), ("ei", "a"), ("ai", "a"), ("ey", "a"), ("ay", "a"), ("au", "a"), ("eu", "o"),
                ("äu", "o"), ("a", "a"), ("ä", "e"), ("e", "e"), ("i", "i"), ("y", "i"), ("o", "o"),
                ("ö", "e"), ("u", "u"), ("ü", "i"))
_VOWEL_LETTERS = "aäeioöuüy"


def syllable_sounds(text: str | None) -> tuple[str | None, str | None]:
    """(vowel, onset consonant class) of a sung German syllable; (None, None) without letters.

    Diphthongs are sung on their first vowel ('ei', 'au' -> a). The onset
    consonant class decides the noise burst: 's' (s, z, ß, x), 'sh' (sch,
    st-, sp-), 'f' (f, v, w, pf), 'h', 'plosive' (p t k b d g q), None for
    sonorants (l m n r j) and vowel onsets.
    """
    letters = re.sub(r"[^a-zäöüß]", "", (text or "").lower())
    if not letters:
        return None, None
    pos = next((i for i, ch in enumerate(letters) if ch in _VOWEL_LETTERS), None)
    if pos is None:
        return None, None
    vowel = next(v for pattern, v in _VOWEL_RULES if letters.startswith(pattern, pos))
    onset = letters[:pos]
    if not onset:
        consonant = None
    elif onset.startswith("sch") or onset[:2] in ("st", "sp"):
        consonant = "sh"
    elif onset[0] in "szßx" or onset.startswith("ts"):
        consonant = "s"
    elif onset[0] in "fvw" or onset.startswith("pf"):
        consonant = "f"
    elif onset[0] == "h" or onset.startswith("ch"):
        consonant = "h"
    elif onset[0] in "ptkbdgqc":
        consonant = "plosive"
    else:
        consonant = None
    return vowel, consonant


# ----------------------------------------------------------------------------- scores

@dataclass
class ScoreNote:
    """One written note of a part (ties merged), times in quarter notes."""

    onset_ql: float
    end_ql: float
    midi: int
    fermata: bool = False
    beat_strength: float = 0.5
    syllable: str | None = None      # lyric text when the note starts a syllable
    vowel: str = "a"
    consonant: str | None = None     # onset consonant class of a new syllable
    new_syllable: bool = True


@dataclass
class Chorale:
    piece_id: str
    parts: dict[str, list[ScoreNote]]   # S, A, T, B
    length_ql: float
    has_lyrics: bool


def _parse_part(part) -> list[ScoreNote]:
    notes: list[ScoreNote] = []
    for element in part.recurse().notesAndRests:
        dur = float(element.quarterLength)
        if dur <= 0 or element.isRest:
            continue  # grace notes; rests are gaps between notes
        onset = float(element.getOffsetInHierarchy(part))
        if element.isChord:
            midis = sorted(int(round(p.ps)) for p in element.pitches)
            midi = midis[0] if part_role(part.partName) == "B" else midis[-1]
        else:
            midi = int(round(element.pitch.ps))
        fermata = any(type(e).__name__ == "Fermata" for e in element.expressions)
        lyric = element.lyrics[0].text if element.lyrics else None
        prev = notes[-1] if notes else None
        tie = element.tie.type if element.tie is not None else None
        if (prev is not None and tie in ("stop", "continue") and prev.midi == midi
                and abs(prev.end_ql - onset) < 1e-6):
            prev.end_ql = onset + dur           # tied continuation: one longer note
            prev.fermata = prev.fermata or fermata
            continue
        try:
            strength = float(element.beatStrength)
        except Exception:  # no measure context
            strength = 0.5
        notes.append(ScoreNote(onset, onset + dur, midi, fermata, strength, lyric))
    return _monophonic(notes)


def _monophonic(notes: list[ScoreNote]) -> list[ScoreNote]:
    """One line per part: a part written with two voices (divisi) keeps the first note at an onset
    and shortens a note that the next one overlaps."""
    notes = sorted(notes, key=lambda n: n.onset_ql)
    out: list[ScoreNote] = []
    for note in notes:
        if out and note.onset_ql < out[-1].end_ql - 1e-6:
            if note.onset_ql <= out[-1].onset_ql + 1e-6:
                continue
            out[-1].end_ql = note.onset_ql
        out.append(note)
    return out


def _assign_syllables(parts: dict[str, list[ScoreNote]], rng: np.random.Generator) -> bool:
    """Give every note a vowel and an onset consonant; returns whether the piece has lyrics.

    A part without its own text borrows the syllable sung by another part at
    the same onset (chorales are mostly homophonic); notes with no syllable at
    all continue the previous vowel (melisma). Without any text a seeded
    plausible syllable stream, shared by all parts, is used.
    """
    by_onset: dict[float, tuple[str, str | None]] = {}
    for role in PARTS:
        for note in parts[role]:
            vowel, consonant = syllable_sounds(note.syllable)
            if vowel is not None:
                by_onset.setdefault(round(note.onset_ql, 4), (vowel, consonant))
    has_lyrics = bool(by_onset)
    if not has_lyrics:
        onsets = sorted({round(n.onset_ql, 4) for role in PARTS for n in parts[role]})
        vowel_p = np.array([0.3, 0.28, 0.17, 0.12, 0.13])
        cons_choices = (None, "s", "sh", "f", "h", "plosive")
        cons_p = np.array([0.3, 0.12, 0.08, 0.1, 0.1, 0.3])
        for onset in onsets:
            if rng.random() < 0.85:  # else: melisma, no new syllable
                by_onset[onset] = (VOWELS[rng.choice(5, p=vowel_p)], cons_choices[rng.choice(6, p=cons_p)])
    for role in PARTS:
        vowel = "a"
        for note in parts[role]:
            own_vowel, own_cons = syllable_sounds(note.syllable)
            found = (own_vowel, own_cons) if own_vowel is not None else by_onset.get(round(note.onset_ql, 4))
            if found is None:
                note.vowel, note.consonant, note.new_syllable = vowel, None, False
            else:
                vowel = found[0]
                note.vowel, note.consonant, note.new_syllable = found[0], found[1], True
    return has_lyrics


def _score_parts(piece_id: str):
    """The parsed music21 score's parts, or a ChoirbenchError naming the piece."""
    from music21 import corpus

    index = chorale_index()
    rows = index[index["piece_id"] == piece_id]
    if rows.empty:
        candidates = _corpus_candidates()
        if piece_id not in candidates:
            known = satb_chorale_ids()
            raise ChoirbenchError(f"unknown chorale id {piece_id!r}: not in music21's Bach corpus "
                                  f"(ids look like {known[0]!r}, {known[1]!r}; {len(known)} four-part chorales)")
        rel = candidates[piece_id]
    else:
        rel = str(rows["corpus_path"].iloc[0])
    score = corpus.parse(rel)
    parts = list(score.parts)
    roles = [part_role(p.partName) for p in parts]
    if len(parts) != 4 or sorted(roles, key=str) != sorted(PARTS):
        names = ", ".join(str(p.partName) for p in parts)
        raise ChoirbenchError(f"chorale {piece_id!r} has {len(parts)} parts ({names}); synth-chorales needs "
                              f"exactly four parts Soprano, Alto, Tenor, Bass")
    return {role: part for role, part in zip(roles, parts)}, float(score.highestTime)


def load_chorale(piece_id: str, *, seed: int = 0, truncate_quarters: float | None = None) -> Chorale:
    """Parse one four-part chorale; ``seed`` only drives made-up syllables for text-less pieces."""
    parts_m21, length = _score_parts(piece_id)
    parts = {role: _parse_part(parts_m21[role]) for role in PARTS}
    if truncate_quarters is not None and truncate_quarters < length:
        length = float(truncate_quarters)
        for role in PARTS:
            kept = [n for n in parts[role] if n.onset_ql < length - 1e-6]
            if kept:
                kept[-1].end_ql = min(kept[-1].end_ql, length)
                kept[-1].fermata = True  # a cut piece still ends on a held note
            parts[role] = kept
    for role in PARTS:
        if not parts[role]:
            raise ChoirbenchError(f"chorale {piece_id!r}: part {role} has no notes")
    has_lyrics = _assign_syllables(parts, np.random.default_rng(seed))
    return Chorale(piece_id, parts, length, has_lyrics)


# ----------------------------------------------------------------------------- timing

@dataclass
class TimeMap:
    """Quarter-note position -> seconds for a whole piece (shared by its parts).

    A caesura (pause after an inner fermata) sits at one score position: a
    note *ending* there ends before the pause, a note *starting* there starts
    after it, hence separate :meth:`onset_s` and :meth:`end_s`.
    """

    grid_ql: np.ndarray     # score positions
    grid_s: np.ndarray      # seconds at those positions, pauses excluded, lead-in included
    pause_ql: np.ndarray    # sorted positions of caesuras
    pause_s: np.ndarray     # their durations
    qpm: float

    def _base(self, ql):
        return np.interp(ql, self.grid_ql, self.grid_s)

    def onset_s(self, ql):
        before = np.searchsorted(self.pause_ql, np.asarray(ql) + 1e-9, side="right")
        return self._base(ql) + np.r_[0.0, np.cumsum(self.pause_s)][before]

    def end_s(self, ql):
        before = np.searchsorted(self.pause_ql, np.asarray(ql) - 1e-9, side="left")
        return self._base(ql) + np.r_[0.0, np.cumsum(self.pause_s)][before]

    @property
    def total_s(self) -> float:
        return float(self.grid_s[-1] + self.pause_s.sum())


def make_time_map(chorale: Chorale, rng: np.random.Generator, *, qpm_range=(60.0, 84.0),
                  fermata_stretch=(1.5, 2.2), fermata_pause_s=(0.15, 0.5)) -> TimeMap:
    """Tempo drawn per piece; fermata notes lengthened and followed by a short caesura; final ritardando."""
    qpm = float(rng.uniform(*qpm_range))
    spans = sorted({(n.onset_ql, n.end_ql) for notes in chorale.parts.values() for n in notes if n.fermata})
    merged: list[list[float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1] + 1e-6:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    bounds = {0.0, chorale.length_ql}
    for notes in chorale.parts.values():
        for n in notes:
            bounds.update((n.onset_ql, n.end_ql))
    grid = np.array(sorted(b for b in bounds if 0 <= b <= chorale.length_ql))
    durations = np.diff(grid) * 60.0 / qpm
    mids = 0.5 * (grid[:-1] + grid[1:])
    pause_ql, pause_s = [], []
    for start, end in merged:
        durations[(mids > start) & (mids < end)] *= rng.uniform(*fermata_stretch)
        if end < chorale.length_ql - 1e-6:
            pause_ql.append(end)
            pause_s.append(rng.uniform(*fermata_pause_s))
    rit = np.clip((mids - (chorale.length_ql - 2.0)) / 2.0, 0, 1)   # ritardando over the last two quarters
    durations *= 1.0 + 0.15 * rit
    grid_s = LEAD_IN_S + np.r_[0.0, np.cumsum(durations)]
    return TimeMap(grid, grid_s, np.array(pause_ql), np.array(pause_s), qpm)


def linear_time_map(length_ql: float, qpm: float) -> TimeMap:
    """Steady tempo, no fermatas: for short test phrases."""
    return TimeMap(np.array([0.0, length_ql]), LEAD_IN_S + np.array([0.0, length_ql * 60.0 / qpm]),
                   np.zeros(0), np.zeros(0), qpm)


def nominal_notes(notes: list[ScoreNote], time_map: TimeMap) -> np.ndarray:
    """[n, 3] onset_s, offset_s, midi of a part at the piece's nominal timing (no singer deviations)."""
    onsets = time_map.onset_s(np.array([n.onset_ql for n in notes]))
    offsets = time_map.end_s(np.array([n.end_ql for n in notes]))
    return np.column_stack([onsets, offsets, [n.midi for n in notes]])


def n_samples_for(time_map: TimeMap) -> int:
    """Samples of every stem of the piece: whole multiple of HOP, lead-in and tail included."""
    n = int(np.ceil((time_map.total_s + TAIL_S) * SAMPLE_RATE))
    return -(-n // HOP) * HOP


# ----------------------------------------------------------------------------- singers

@dataclass
class SingerTraits:
    """Stable traits of one singer, drawn once from the singer's seed."""

    part: str
    # timing
    timing_bias_s: float
    timing_sd_s: float
    attack_s: float
    release_s: float
    release_early_s: float
    portamento_s: float
    scoop_cents: float
    # pitch
    vibrato_rate_hz: float
    vibrato_extent_cents: float
    vibrato_delay_s: float
    intonation_cents: float
    drift_cents: float
    note_error_cents: float
    # loudness and source
    level_db: float
    dynamics_db: float
    rd_base: float
    rd_per_db: float
    breathiness_db: float
    jitter: float
    shimmer_db: float
    consonant_prob: float
    breath_prob: float
    # vocal tract
    tract_scale: float
    formant_dev: np.ndarray = field(repr=False)   # [5 vowels, 5 formants] multiplicative
    bandwidth_scale: float = 1.0
    ring_scale: float = 1.0                        # spread of the T/B singer's-formant cluster


def draw_singer_traits(part: str, rng: np.random.Generator) -> SingerTraits:
    u = rng.uniform
    return SingerTraits(
        part=part,
        timing_bias_s=u(-0.012, 0.012), timing_sd_s=u(0.006, 0.014), attack_s=u(0.03, 0.07),
        release_s=u(0.04, 0.09), release_early_s=u(0.02, 0.08), portamento_s=u(0.04, 0.12),
        scoop_cents=u(0.0, 40.0),
        vibrato_rate_hz=u(4.8, 6.2), vibrato_extent_cents=u(25.0, 70.0), vibrato_delay_s=u(0.12, 0.35),
        intonation_cents=u(-8.0, 8.0), drift_cents=u(2.0, 5.0), note_error_cents=u(2.0, 6.0),
        level_db=u(-2.0, 2.0), dynamics_db=u(2.0, 5.0), rd_base=u(0.9, 1.5), rd_per_db=u(0.04, 0.07),
        breathiness_db=u(-34.0, -22.0), jitter=u(0.002, 0.008), shimmer_db=u(0.15, 0.5),
        consonant_prob=u(0.75, 1.0), breath_prob=u(0.6, 1.0),
        tract_scale=float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)),
        formant_dev=np.clip(rng.normal(1.0, 0.03, size=(5, 5)), 0.92, 1.08),
        bandwidth_scale=u(0.85, 1.25), ring_scale=u(0.8, 1.2))


@dataclass
class Performance:
    """One singer's control curves at CTRL_RATE plus sparse noise events."""

    f0_hz: np.ndarray          # [n_ctrl], defined everywhere (held through silences)
    gate: np.ndarray           # [n_ctrl] voicing 0..1
    loudness_db: np.ndarray    # [n_ctrl] relative to the singer's mezzo-forte
    vowel: np.ndarray          # [n_ctrl] index into VOWELS
    consonants: list[tuple[float, float, str]]   # (start_s, dur_s, kind)
    breaths: list[tuple[float, float]]           # (start_s, dur_s)

    VOICED_GATE = 0.2
    """Gate level above which the written F0 says voiced (about -14 dB of full voice)."""

    def f0_frames(self, n_frames: int) -> np.ndarray:
        """The sung F0 on the hop grid (frame k at k*HOP samples), 0 where unvoiced."""
        idx = np.arange(n_frames) * (HOP // CTRL_HOP)
        f0 = self.f0_hz[idx].copy()
        f0[self.gate[idx] < self.VOICED_GATE] = 0.0
        return f0


CONSONANT_DUR_S = {"s": (0.07, 0.11), "sh": (0.08, 0.12), "f": (0.06, 0.09), "h": (0.05, 0.08),
                   "plosive": (0.03, 0.05)}


def _smooth_noise(rng: np.random.Generator, n: int, corr_frames: float) -> np.ndarray:
    """Unit-variance low-pass noise of length n, correlated over about ``corr_frames`` samples."""
    step = max(int(corr_frames), 1)
    knots = rng.standard_normal(n // step + 3)
    x = np.interp(np.arange(n) / step, np.arange(len(knots)), knots)
    x = uniform_filter1d(x, size=step)
    sd = x.std()
    return x / sd if sd > 0 else x


def _ramp(x: np.ndarray) -> np.ndarray:
    """Raised-cosine step: 0 below 0, 1 above 1."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def perform_singer(notes: list[ScoreNote], time_map: TimeMap, traits: SingerTraits, rng: np.random.Generator,
                   n_samples: int, *, vibrato: bool = True, expression: bool = True) -> Performance:
    """Sing one part: the singer's deviations from the nominal timing, pitch curve, dynamics and events.

    ``expression=False`` (tests) removes every random deviation, vibrato and
    portamento, leaving the written notes at the nominal timing.
    """
    n_ctrl = n_samples // CTRL_HOP + 1
    t = np.arange(n_ctrl) / CTRL_RATE
    nom = nominal_notes(notes, time_map)
    n_notes = len(notes)
    dev = np.zeros(n_notes)
    if expression:
        dev = np.clip(traits.timing_bias_s + rng.normal(0, traits.timing_sd_s, n_notes), -0.03, 0.03)
    onsets = nom[:, 0] + dev
    legato = np.zeros(n_notes, dtype=bool)      # note i flows into note i+1
    legato[:-1] = np.abs(nom[1:, 0] - nom[:-1, 1]) < 1e-3
    # consonants: voicing stops for the consonant before the onset of a new syllable
    cons_dur = np.zeros(n_notes)
    cons_kind: list[str | None] = [None] * n_notes
    for i, note in enumerate(notes):
        if note.new_syllable and note.consonant and (not expression or rng.random() < traits.consonant_prob):
            lo, hi = CONSONANT_DUR_S[note.consonant]
            cons_kind[i] = note.consonant
            cons_dur[i] = rng.uniform(lo, hi) if expression else lo
    ends = np.empty(n_notes)
    for i in range(n_notes):
        if legato[i]:
            ends[i] = onsets[i + 1] - cons_dur[i + 1]
        else:
            early = traits.release_early_s + (rng.normal(0, 0.01) if expression else 0.0)
            ends[i] = nom[i, 1] - (early if expression else 0.0)
        ends[i] = max(ends[i], onsets[i] + 0.06)
    joined = legato.copy()
    joined[:-1] &= cons_dur[1:] == 0            # voicing continues into the next note

    # --- voicing gate: segments of joined notes
    gate = np.zeros(n_ctrl)
    seg_start = 0
    segments = []
    for i in range(n_notes):
        if not joined[i]:
            segments.append((onsets[seg_start], ends[i]))
            seg_start = i + 1
    for start, end in segments:
        att = min(traits.attack_s, 0.4 * (end - start))
        rel = min(traits.release_s, 0.4 * (end - start))
        a, b = np.searchsorted(t, [start, end])
        seg_t = t[a:b]
        gate[a:b] = np.maximum(gate[a:b], _ramp((seg_t - start) / att) * _ramp((end - seg_t) / rel))

    # --- pitch in cents above MIDI 0
    cents = np.empty(n_ctrl)
    note_err = rng.normal(0, traits.note_error_cents, n_notes) if expression else np.zeros(n_notes)
    starts_idx = np.searchsorted(t, onsets)
    starts_idx[0] = 0
    for i in range(n_notes):
        stop = starts_idx[i + 1] if i + 1 < n_notes else n_ctrl
        cents[starts_idx[i]:stop] = 100.0 * notes[i].midi + note_err[i]
    if expression:
        for i in range(1, n_notes):
            jump = cents[starts_idx[i]] - cents[starts_idx[i] - 1]
            if joined[i - 1]:       # portamento between connected notes
                dur = traits.portamento_s * rng.uniform(0.8, 1.2)
                a, b = np.searchsorted(t, [onsets[i] - 0.6 * dur, onsets[i] + 0.4 * dur])
                base = cents[starts_idx[i]]
                cents[a:b] = base - jump * (1.0 - _ramp((t[a:b] - (onsets[i] - 0.6 * dur)) / dur))
            else:                   # a small scoop into a fresh attack
                a, b = np.searchsorted(t, [onsets[i], onsets[i] + 0.09])
                cents[a:b] -= traits.scoop_cents * rng.uniform(0.3, 1.0) * np.exp(-(t[a:b] - onsets[i]) / 0.03)
        drift = traits.drift_cents * _smooth_noise(rng, n_ctrl, 3.0 * CTRL_RATE)
        cents += np.clip(traits.intonation_cents + drift, -15.0, 15.0)
    if vibrato and expression:
        rate = np.clip(traits.vibrato_rate_hz + 0.25 * _smooth_noise(rng, n_ctrl, 0.7 * CTRL_RATE), 4.5, 6.5)
        extent = traits.vibrato_extent_cents * np.clip(1 + 0.15 * _smooth_noise(rng, n_ctrl, 0.5 * CTRL_RATE),
                                                       0.6, 1.4)
        phase = 2 * np.pi * np.cumsum(rate) / CTRL_RATE + rng.uniform(0, 2 * np.pi)
        env = np.zeros(n_ctrl)
        for i in range(n_notes):
            stop = starts_idx[i + 1] if i + 1 < n_notes else n_ctrl
            seg_t = t[starts_idx[i]:stop]
            env[starts_idx[i]:stop] = _ramp((seg_t - onsets[i] - traits.vibrato_delay_s) / 0.3)
        cents += env * extent * np.sin(phase)
    f0 = 440.0 * 2.0 ** ((cents / 100.0 - 69.0) / 12.0)

    # --- loudness: phrase arcs, accents, messa di voce, register, slow wander
    loud = np.zeros(n_ctrl)
    if expression:
        phrase_start = 0
        for i in range(n_notes):
            if notes[i].fermata or not legato[i] or i == n_notes - 1:
                a, b = starts_idx[phrase_start], np.searchsorted(t, ends[i])
                if b > a:
                    x = (t[a:b] - t[a]) / max(t[b - 1] - t[a], 1e-3)
                    loud[a:b] += traits.dynamics_db * rng.uniform(0.5, 1.0) * np.sin(np.pi * x)
                phrase_start = i + 1
        median_midi = np.median([n.midi for n in notes])
        for i in range(n_notes):
            stop = starts_idx[i + 1] if i + 1 < n_notes else n_ctrl
            seg = slice(starts_idx[i], stop)
            loud[seg] += 1.2 * (notes[i].beat_strength - 0.5) + 0.25 * (notes[i].midi - median_midi)
            length = ends[i] - onsets[i]
            if length > 1.0:
                x = np.clip((t[seg] - onsets[i]) / length, 0, 1)
                loud[seg] += 1.5 * np.sin(np.pi * x)
        loud += 0.7 * _smooth_noise(rng, n_ctrl, 1.0 * CTRL_RATE)
        loud = uniform_filter1d(loud, size=int(0.06 * CTRL_RATE))

    # --- vowels
    vowel = np.zeros(n_ctrl, dtype=np.int8)
    vstarts = np.searchsorted(t, onsets - cons_dur)
    vstarts[0] = 0
    for i in range(n_notes):
        stop = vstarts[i + 1] if i + 1 < n_notes else n_ctrl
        vowel[vstarts[i]:stop] = VOWELS.index(notes[i].vowel)

    consonants = [(onsets[i] - cons_dur[i], cons_dur[i], cons_kind[i]) for i in range(n_notes) if cons_kind[i]]
    breaths = []
    if expression:
        for k in range(1, len(segments)):
            gap_start, gap_end = segments[k - 1][1] + traits.release_s, segments[k][0] - cons_dur_at(
                onsets, cons_dur, segments[k][0])
            gap = gap_end - gap_start
            if gap > 0.3 and rng.random() < traits.breath_prob:
                dur = min(0.45, gap - 0.15) * rng.uniform(0.6, 1.0)
                end = gap_end - rng.uniform(0.05, 0.12)
                breaths.append((end - dur, dur))
    return Performance(f0, gate, loud, vowel, consonants, breaths)


def cons_dur_at(onsets: np.ndarray, cons_dur: np.ndarray, onset: float) -> float:
    """Consonant length before the note starting at ``onset`` (0 if none)."""
    i = int(np.argmin(np.abs(onsets - onset)))
    return float(cons_dur[i])
