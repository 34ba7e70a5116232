"""The embedded default dataset: music21's four-part Bach chorales sung by a synthetic SATB choir.

No download is possible on a fresh offline machine, so the default dataset is
generated (DESIGN.md, "The embedded default"). Every piece is rendered
independently from seeds derived from the global seed and the piece / part /
singer ids, so the output is byte-identical whatever the number of workers.

Written per piece ``{song}`` (song id = music21 piece id, e.g. ``bwv26.6``):

* ``audio/{song}/{part}{singer}.wav``: one dry (or roomed) singer, 16 kHz;
* ``f0/{song}/{part}{singer}.csv``: the F0 the synthesiser sang (vibrato,
  portamento and intonation included, per-cycle jitter not), frame k at
  k*256 samples, 0 where the voicing gate is below -14 dB;
* ``score/{song}/{part}.csv``: the written notes at the piece's *nominal*
  timing (tempo, fermatas, caesuras), which every singer of the part follows
  within +-30 ms;
* ``preview/``: a spectrogram with the true F0s and a few WAVs;
* ``manifest.csv``, written last.
"""
from __future__ import annotations

import concurrent.futures
import logging
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from choirbench import HOP, PARTS, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep import chorale_scores as cs
from choirbench.data_prep import singing_voice as sv
from choirbench.data_prep.prepared import SPLITS, write_manifest
from choirbench.io import read_wav, write_f0, write_notes, write_wav
from choirbench.params import Limit

log = logging.getLogger(__name__)

DEFAULTS = {
    "pieces": {"train": 24, "valid": 3, "test": 5},
    "pieces_list": None,          # {"train": [ids], "valid": [ids], "test": [ids]}: explicit pieces (overrides pieces)
    "max_quarters": 64,           # draw only chorales up to this many quarter notes (bounds build time)
    "truncate_quarters": None,    # cut every piece after this many quarter notes (quick runs, tests)
    "singers_per_part": 4,
    "new_singers_per_piece": True,  # False: the same 4 x n singers (traits) sing every piece, like a real choir
    "room": True,
    "rt60_s": [0.3, 1.2],
    "drr_db": [6.0, 15.0],        # direct-to-reverberant ratio: close microphones, as in CSD's stems
    "tempo_qpm": [60.0, 84.0],
    "vibrato": True,
    "noises": True,               # aspiration, consonants, breaths
    "noise_floor_db": -60.0,      # microphone noise re each voice's RMS (null: none)
    "oversample": 8,              # glottal source rate = 16 kHz x oversample (8: aliases < -55 dB)
    "tract": "cascade",           # cascade: all-pole formant cascade; nasal: + a pole-zero nasal branch (not all-pole)
    "splits": ["train", "valid", "test"],  # splits to render: [test] renders a second version of the test pieces
    "seed": 0,
    "workers": 2,
    "preview": True,
}
LIMITS = {"truncate_quarters": Limit(types=(float,), nullable=True),
          "max_quarters": Limit(types=(float,), nullable=True), "noise_floor_db": Limit(nullable=True)}
"""Knobs that may be null (see :mod:`choirbench.params`); ranges are checked in :func:`prepare`."""

WHERE = "datasets.synth-chorales"
"""libsndfile command: float WAVs otherwise carry a PEAK chunk with a wall-clock timestamp."""


# ----------------------------------------------------------------------------- seeds

def rng_for(seed: int, *keys) -> np.random.Generator:
    """Independent stream for (seed, keys...): strings hashed with crc32, so worker order never matters."""
    words = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


# ----------------------------------------------------------------------------- piece selection

def _check_params(params: dict) -> None:
    pieces = params["pieces"]
    if not isinstance(pieces, dict) or set(pieces) - set(SPLITS):
        raise ChoirbenchError(f"{WHERE}.pieces must map train/valid/test to counts, got {pieces!r}")
    for split, count in pieces.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ChoirbenchError(f"{WHERE}.pieces.{split} must be a whole number >= 0, got {count!r}")
    n = params["singers_per_part"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 16:
        raise ChoirbenchError(f"{WHERE}.singers_per_part must be a whole number from 1 to 16, got {n!r}")
    workers = params["workers"]
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ChoirbenchError(f"{WHERE}.workers must be a whole number >= 1, got {workers!r}")
    if params["oversample"] not in (2, 3, 4, 6, 8):
        raise ChoirbenchError(f"{WHERE}.oversample must be one of 2, 3, 4, 6, 8, got {params['oversample']!r}")
    for key, lo, hi in (("rt60_s", 0.05, 5.0), ("drr_db", -20.0, 40.0), ("tempo_qpm", 20.0, 240.0)):
        value = params[key]
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) for v in value) or not lo <= value[0] <= value[1] <= hi):
            raise ChoirbenchError(f"{WHERE}.{key} must be [low, high] with {lo} <= low <= high <= {hi}, "
                                  f"got {value!r}")
    floor = params["noise_floor_db"]
    if floor is not None and (not isinstance(floor, (int, float)) or isinstance(floor, bool) or floor > 0):
        raise ChoirbenchError(f"{WHERE}.noise_floor_db must be null or a number <= 0 (dB re the voice), got {floor!r}")
    longest = params["max_quarters"]
    if longest is not None and (not isinstance(longest, (int, float)) or isinstance(longest, bool) or longest <= 0):
        raise ChoirbenchError(f"{WHERE}.max_quarters must be null or a number > 0, got {longest!r}")
    if params["tract"] not in sv.TRACTS:
        raise ChoirbenchError(f"{WHERE}.tract must be one of {', '.join(sv.TRACTS)}, got {params['tract']!r}")
    splits = params["splits"]
    if not isinstance(splits, list) or not splits or set(splits) - set(SPLITS):
        raise ChoirbenchError(f"{WHERE}.splits must be a non-empty list of {', '.join(SPLITS)}, got {splits!r}")
    trunc = params["truncate_quarters"]
    if trunc is not None and (not isinstance(trunc, (int, float)) or trunc < 4):
        raise ChoirbenchError(f"{WHERE}.truncate_quarters must be null or a number >= 4, got {trunc!r}")


def choose_pieces(params: dict) -> dict[str, list[str]]:
    """Split -> piece ids: explicit ``pieces_list`` or a seeded draw (no piece in two splits)."""
    explicit = params["pieces_list"]
    if explicit is not None:
        if not isinstance(explicit, dict) or set(explicit) - set(SPLITS):
            raise ChoirbenchError(f"{WHERE}.pieces_list must map train/valid/test to lists of chorale ids, "
                                  f"got {explicit!r}")
        chosen = {split: [str(p) for p in (explicit.get(split) or [])] for split in SPLITS}
        seen: dict[str, str] = {}
        for split, ids in chosen.items():
            for piece in ids:
                if piece in seen:
                    raise ChoirbenchError(f"{WHERE}.pieces_list: chorale {piece!r} is listed in both "
                                          f"{seen[piece]} and {split}")
                seen[piece] = split
        if not seen:
            raise ChoirbenchError(f"{WHERE}.pieces_list names no chorale")
        return chosen
    available = cs.satb_chorale_ids(params["max_quarters"])
    wanted = sum(params["pieces"].values())
    if wanted == 0:
        raise ChoirbenchError(f"{WHERE}.pieces asks for no piece at all")
    if wanted > len(available):
        limit = f" up to {params['max_quarters']} quarter notes long" if params["max_quarters"] is not None else ""
        raise ChoirbenchError(f"{WHERE}.pieces asks for {wanted} chorales but only {len(available)} four-part "
                              f"chorales{limit} exist (raise max_quarters or ask for fewer)")
    order = rng_for(params["seed"], "split").permutation(len(available))
    chosen, k = {}, 0
    for split in SPLITS:
        count = params["pieces"].get(split, 0)
        chosen[split] = sorted((available[i] for i in order[k:k + count]), key=cs.natural_key)
        k += count
    return chosen


# ----------------------------------------------------------------------------- rendering

def singer_traits_for(params: dict, piece_id: str, part: str, singer: int) -> cs.SingerTraits:
    key = piece_id if params["new_singers_per_piece"] else "choir"
    return cs.draw_singer_traits(part, rng_for(params["seed"], key, "traits", part, singer))


def render_piece(piece_id: str, split: str, out_root: Path, params: dict) -> list[dict]:
    """Render every singer of one chorale; returns its manifest rows."""
    started = time.perf_counter()
    seed = params["seed"]
    chorale = cs.load_chorale(piece_id, seed=int(rng_for(seed, piece_id, "syllables").integers(2 ** 31)),
                              truncate_quarters=params["truncate_quarters"])
    time_map = cs.make_time_map(chorale, rng_for(seed, piece_id, "timing"), qpm_range=tuple(params["tempo_qpm"]))
    n_samples = cs.n_samples_for(time_map)
    n_frames = n_samples // HOP
    ir = (sv.room_response(rng_for(seed, piece_id, "room"), rt60_range=tuple(params["rt60_s"]),
                           drr_db_range=tuple(params["drr_db"])) if params["room"] else None)
    rows = []
    for part in PARTS:
        notes = chorale.parts[part]
        write_notes(out_root / "score" / piece_id / f"{part}.csv", cs.nominal_notes(notes, time_map))
        for singer in range(1, params["singers_per_part"] + 1):
            traits = singer_traits_for(params, piece_id, part, singer)
            perf = cs.perform_singer(notes, time_map, traits, rng_for(seed, piece_id, "perform", part, singer),
                                     n_samples, vibrato=params["vibrato"])
            audio = sv.render_voice(perf, part, traits, rng_for(seed, piece_id, "voice", part, singer), n_samples,
                                    oversample=params["oversample"], noises=params["noises"],
                                    noise_floor_db=params["noise_floor_db"], tract=params["tract"],
                                    tract_rng=rng_for(seed, piece_id, "tract", part, singer))
            if ir is not None:
                audio = sv.apply_room(audio, ir)
            audio_rel = f"audio/{piece_id}/{part}{singer}.wav"
            f0_rel = f"f0/{piece_id}/{part}{singer}.csv"
            write_wav(out_root / audio_rel, audio)
            write_f0(out_root / f0_rel, perf.f0_frames(n_frames))
            rows.append({"song": piece_id, "part": part, "singer": str(singer), "split": split,
                         "audio": audio_rel, "f0": f0_rel, "duration_s": n_samples / SAMPLE_RATE})
    elapsed = time.perf_counter() - started
    log.info("%s: %.1f s x %d stems in %.1f s (%.0fx real time)", piece_id, n_samples / SAMPLE_RATE, len(rows),
             elapsed, n_samples / SAMPLE_RATE * len(rows) / elapsed)
    return rows


def _render_task(task) -> list[dict]:
    piece_id, split, out_root, params = task
    return render_piece(piece_id, split, Path(out_root), params)


def prepare(out_root: Path, params: dict) -> None:
    """Generate the dataset into ``out_root`` (params: DEFAULTS merged with the user's config)."""
    _check_params(params)
    out_root = Path(out_root)
    chosen = choose_pieces(params)
    # the draw covers every split, so rendering only some of them keeps the same pieces and singers
    tasks = [(piece, split, str(out_root), params) for split in SPLITS if split in params["splits"]
             for piece in chosen[split]]
    # fail fast on bad ids before spending minutes on the good ones
    index = cs.chorale_index()
    satb = dict(zip(index["piece_id"], index["satb"].astype(bool)))
    for piece, _, _, _ in tasks:
        if not satb.get(piece, False):
            cs._score_parts(piece)   # raises the specific error (unknown id / not four parts)
    out_root.mkdir(parents=True, exist_ok=True)
    log.info("synth-chorales: %s pieces, %d singers per part, %d workers", {s: len(v) for s, v in chosen.items()},
             params["singers_per_part"], params["workers"])
    from tqdm import tqdm
    progress = tqdm(total=len(tasks), desc="synth-chorales", unit="piece", disable=not sys.stderr.isatty())
    rows: list[dict] = []
    if params["workers"] == 1 or len(tasks) == 1:
        for task in tasks:
            rows.extend(_render_task(task))
            progress.update()
    else:
        with concurrent.futures.ProcessPoolExecutor(max_workers=params["workers"]) as pool:
            for piece_rows in pool.map(_render_task, tasks):
                rows.extend(piece_rows)
                progress.update()
    progress.close()
    frame = pd.DataFrame(rows)
    if params["preview"]:
        write_preview(out_root, frame)
    write_manifest(out_root, frame)


# ----------------------------------------------------------------------------- preview

def write_preview(out_root: Path, frame: pd.DataFrame, *, start_s: float = 4.0, length_s: float = 4.0) -> Path:
    """Spectrogram of a 4-s SATB mixture (singer 1 of each part) with the true F0s, plus its WAVs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import signal

    from choirbench.io import read_f0

    test = frame[frame["split"] == "test"]
    song = sorted((test if not test.empty else frame)["song"].unique(), key=cs.natural_key)[0]
    rows = frame[(frame["song"] == song)].sort_values(["part", "singer"]).groupby("part").first()
    duration = float(rows["duration_s"].min())
    start_s = max(0.0, min(start_s, duration - length_s))
    a, n = int(start_s * SAMPLE_RATE), int(min(length_s, duration) * SAMPLE_RATE)
    out = Path(out_root) / "preview"
    stems, f0s = {}, {}
    for part in PARTS:
        row = rows.loc[part]
        stems[part], _ = read_wav(Path(out_root) / row["audio"], start=a, frames=n)
        f0s[part] = read_f0(Path(out_root) / row["f0"])[a // HOP: (a + n) // HOP]
    mixture = sum(stems.values())
    peak = max(float(np.abs(mixture).max()), 1e-9)
    write_wav(out / "mixture.wav", mixture / peak * 0.9)
    for part in PARTS:
        write_wav(out / f"{part}.wav", stems[part] / peak * 0.9)
    freqs, times, spec = signal.spectrogram(mixture, SAMPLE_RATE, nperseg=1024, noverlap=1024 - HOP)
    fig, ax = plt.subplots(figsize=(10, 5))
    ax.pcolormesh(times + start_s, freqs, 10 * np.log10(spec + 1e-12), shading="auto", cmap="Greys",
                  vmin=10 * np.log10(spec.max() + 1e-12) - 80)
    frame_t = (a // HOP + np.arange(len(f0s["S"]))) * HOP / SAMPLE_RATE
    for part, colour in zip(PARTS, ("tab:blue", "tab:green", "tab:orange", "tab:red")):
        f0 = np.where(f0s[part] > 0, f0s[part], np.nan)
        ax.plot(frame_t, f0, color=colour, lw=1.2, label=f"{part} true F0")
    ax.set_yscale("log")
    ax.set_ylim(60, SAMPLE_RATE / 2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(f"synth-chorales {song}: SATB mixture (singer 1 per part), true F0 overlaid")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = out / "spectrogram.png"
    from choirbench.io import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- short phrases (tests, benchmarks)

def sing_phrase(part: str, midis: list[int | None], quarters: list[float], *, vowels: str | list[str] = "a",
                consonants: list[str | None] | None = None, qpm: float = 72.0, seed: int = 0,
                expression: bool = True, vibrato: bool = True, noises: bool = True, jitter: bool = True,
                oversample: int = 8, noise_floor_db: float | None = -60.0, traits: cs.SingerTraits | None = None):
    """Sing a short melody (``None`` = rest) by one singer; returns (audio, f0 frames, traits, notes [n, 3])."""
    if len(midis) != len(quarters):
        raise ValueError("midis and quarters must have the same length")
    vowels = [vowels] * len(midis) if len(vowels) == 1 else list(vowels)
    consonants = consonants or [None] * len(midis)
    notes, pos = [], 0.0
    for midi, q, vowel, cons in zip(midis, quarters, vowels, consonants):
        if midi is not None:
            notes.append(cs.ScoreNote(pos, pos + q, int(midi), vowel=vowel, consonant=cons))
        pos += q
    time_map = cs.linear_time_map(pos, qpm)
    n_samples = cs.n_samples_for(time_map)
    traits = traits or cs.draw_singer_traits(part, rng_for(seed, "phrase-traits", part))
    perf = cs.perform_singer(notes, time_map, traits, rng_for(seed, "phrase-perform", part), n_samples,
                             vibrato=vibrato, expression=expression)
    audio = sv.render_voice(perf, part, traits, rng_for(seed, "phrase-voice", part), n_samples,
                            oversample=oversample, noises=noises, jitter=jitter, noise_floor_db=noise_floor_db)
    return audio, perf.f0_frames(n_samples // HOP), traits, cs.nominal_notes(notes, time_map)
