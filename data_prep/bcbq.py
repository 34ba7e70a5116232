"""The paper's commercial training set: Bach Chorales (BC) + Barbershop Quartets (BQ), local copy only.

Layout (as used by the paper's code)::

    {BC,BQ}/audio_16kHz/<idx>_<piece>_part<k>_<s|a|t|b>_1ch.wav    16 kHz, 10-s segment k of song idx
    {BC,BQ}/crepe_f0_center/<same stem>_frequency.npy              optional CREPE F0 (hop 256, centred)
    {BC,BQ}/crepe_f0_center/<same stem>_confidence.npy             and its confidence

A song is ``<idx>_<piece>`` (e.g. ``1_BC001``, song id ``BC01_BC001``); its
segments are joined in order of ``k`` (each segment zero-padded to its longest
voice first, so the voices stay aligned). A segment where a voice is empty or
silent is left out (warning): the release has one such file (17_BC021_part11_s).
One singer per part (``"1"``). F0 ``truth``: the CREPE files when present,
voiced where confidence >= ``crepe_confidence`` (0.4 as in the paper), else
librosa.pyin on the stem (warning). Songs 8 and 9 of each set are validation,
the rest trains.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.f0 import pyin_f0
from choirbench.data_prep.release import PreparedWriter, load_audio, release_root, select

log = logging.getLogger(__name__)

FILE_RE = re.compile(r"^(\d+)_([A-Za-z0-9]+)_part(\d+)_([satb])_1ch\.wav$")
PART_OF = {"s": "S", "a": "A", "t": "T", "b": "B"}

DEFAULTS = {
    "root": "",                 # folder holding BC/ and BQ/ (commercial data: never downloaded)
    "resources": "resources",   # else looked for in resources/bcbq/
    "sets": ["BC", "BQ"],
    "songs": [],                # song ids (BC01_BC001) or prefixes (BC01); empty = all
    "valid_indices": [8, 9],    # song numbers <idx> that are validation in every set (the paper's split)
    "crepe_confidence": 0.4,
    "skip_silent_segments": True,
}

HOW_TO = ("The Bach Chorales / Barbershop Quartets data is commercial and cannot be downloaded: put your copy "
          "in resources/bcbq/ (so that resources/bcbq/BC/audio_16kHz/1_BC001_part1_s_1ch.wav exists) or set "
          "datasets.bcbq.root: PATH to the folder holding BC/ and BQ/.")


def find_songs(root: Path, sets: list[str]) -> dict[str, dict]:
    """song id -> {"set", "index", "segments": {k: {part: wav}}}."""
    songs: dict[str, dict] = {}
    for name in sets:
        folder = next((p for p in Path(root).rglob(f"{name}/audio_16kHz") if p.is_dir()), None)
        if folder is None:
            log.warning("bcbq: no %s/audio_16kHz folder under %s", name, root)
            continue
        for path in sorted(folder.glob("*_1ch.wav")):
            match = FILE_RE.match(path.name)
            if not match:
                continue
            idx, piece, segment, voice = match.groups()
            song = f"{name}{int(idx):02d}_{piece}"
            entry = songs.setdefault(song, {"set": name, "index": int(idx), "segments": {}})
            entry["segments"].setdefault(int(segment), {})[PART_OF[voice]] = path
    if not songs:
        raise ChoirbenchError(f"{root}: no <idx>_<piece>_part<k>_<v>_1ch.wav files found. {HOW_TO}")
    return songs


def crepe_track(wav: Path, threshold: float) -> np.ndarray | None:
    folder = wav.parent.parent / "crepe_f0_center"
    freq, conf = folder / f"{wav.stem}_frequency.npy", folder / f"{wav.stem}_confidence.npy"
    if not (freq.is_file() and conf.is_file()):
        return None
    hz, c = np.load(freq).astype(np.float64).reshape(-1), np.load(conf).astype(np.float64).reshape(-1)
    n = min(len(hz), len(c))
    return np.where((c[:n] >= threshold) & (hz[:n] > 0), hz[:n], 0.0)


def prepare(out_root: Path, params: dict) -> None:
    root = release_root("bcbq", params, probe="*_part*_*_1ch.wav", how_to=HOW_TO)
    found = find_songs(root, params["sets"])
    songs = select(sorted(found), params["songs"], "datasets.bcbq.songs")
    valid = {int(i) for i in params["valid_indices"]}
    writer = PreparedWriter(out_root, "bcbq")
    for song in tqdm(songs, desc="bcbq", unit="song", disable=None):
        info = found[song]
        parts = sorted({p for seg in info["segments"].values() for p in seg}, key="SATB".index)
        stems = {p: [] for p in parts}
        tracks: dict[str, list] = {p: [] for p in parts}
        have_crepe = True
        offset = 0
        for k in sorted(info["segments"]):
            seg = info["segments"][k]
            if set(seg) != set(parts):
                log.warning("bcbq: %s segment %d lacks part(s) %s; left out", song, k, set(parts) - set(seg))
                continue
            audio = {p: load_audio(seg[p]) for p in parts}
            if params["skip_silent_segments"] and any(len(a) == 0 or not np.any(a) for a in audio.values()):
                log.warning("bcbq: %s segment %d has an empty or silent voice; left out", song, k)
                continue
            n = max(len(a) for a in audio.values())
            for p in parts:
                stems[p].append(np.pad(audio[p], (0, n - len(audio[p]))))
                track = crepe_track(seg[p], float(params["crepe_confidence"]))
                if track is None:
                    have_crepe = False
                else:
                    times = (offset + np.arange(len(track)) * HOP) / SAMPLE_RATE
                    tracks[p].append((times, track))
            offset += n
        if offset == 0:
            log.warning("bcbq: %s has no usable segment; skipped", song)
            continue
        joined = {(p, "1"): np.concatenate(stems[p]) for p in parts}
        f0 = {}
        for p in parts:
            if have_crepe:
                f0[p, "1"] = (np.concatenate([t for t, _ in tracks[p]]), np.concatenate([v for _, v in tracks[p]]))
            else:
                log.warning("bcbq: %s %s has no CREPE F0; estimated with pYIN", song, p)
                f0[p, "1"] = pyin_f0(joined[p, "1"], p)
        split = "valid" if info["index"] in valid else "train"
        writer.add_song(song, split, joined, f0)
    writer.finish()
