"""Shared fixtures: a tiny prepared dataset made of vibrato tones, and the shared data folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.signal

from choirbench import HOP, PARTS, SAMPLE_RATE
from choirbench.data_prep.prepared import ExcerptSampler, write_manifest
from choirbench.io import write_f0, write_notes, write_wav

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PART_MIDI = {"S": 70, "A": 64, "T": 57, "B": 48}


def tone(f0_frames: np.ndarray, n: int, rng: np.random.Generator, formant_hz: float) -> np.ndarray:
    """A harmonic tone following a frame-rate F0, through one resonance (not the sf model's source)."""
    t_frames = np.arange(len(f0_frames)) * HOP
    f0 = np.interp(np.arange(n), t_frames, f0_frames)
    voiced = f0 > 0
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    out = np.zeros(n)
    for k in range(1, 30):
        alive = voiced & (k * f0 < SAMPLE_RATE / 2 - 200)
        out += alive * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k
    b, a = scipy.signal.iirpeak(formant_hz, 3.0, fs=SAMPLE_RATE)
    out = 0.5 * out + scipy.signal.lfilter(b, a, out)
    return (0.1 * out / (np.max(np.abs(out)) + 1e-9)).astype(np.float32)


def make_tiny_dataset(root: Path, *, seed: int = 0, songs: dict[str, str] | None = None,
                      seconds: float = 10.0, singers: int = 2) -> Path:
    """A prepared dataset of random melodies per part: notes of 0.5-1 s with short rests and vibrato."""
    rng = np.random.default_rng(seed)
    songs = songs or {"song1": "train", "song2": "train", "song3": "train", "song4": "valid", "song5": "test"}
    n = int(seconds * SAMPLE_RATE)
    n_frames = n // HOP
    rows = []
    for song, split in songs.items():
        for part in PARTS:
            notes, t = [], 0.1
            while t < seconds - 0.6:
                dur = rng.uniform(0.5, 1.0)
                notes.append((t, t + dur, PART_MIDI[part] + int(rng.integers(-4, 5))))
                t += dur + rng.choice([0.0, 0.1])
            write_notes(root / "score" / song / f"{part}.csv", np.array(notes))
            for s in range(1, singers + 1):
                times = np.arange(n_frames) * HOP / SAMPLE_RATE
                f0 = np.zeros(n_frames)
                for on, off, midi in notes:
                    inside = (times >= on + 0.01 * s) & (times < off)
                    f0[inside] = 440 * 2 ** ((midi - 69) / 12)
                f0 *= 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * times)) * (f0 > 0)
                f0 = np.round(f0, 4)
                audio = tone(f0, n, rng, formant_hz=rng.uniform(500, 900))
                write_wav(root / "audio" / song / f"{part}{s}.wav", audio)
                write_f0(root / "f0" / song / f"{part}{s}.csv", f0)
                rows.append({"song": song, "part": part, "singer": str(s), "split": split,
                             "audio": f"audio/{song}/{part}{s}.wav", "f0": f"f0/{song}/{part}{s}.csv",
                             "duration_s": n / SAMPLE_RATE})
    write_manifest(root, pd.DataFrame(rows))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Root of a small prepared dataset (5 songs of 10 s, 2 singers per part)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


class Killed(Exception):
    """Stands for the process being killed mid-training."""


class KillableSampler(ExcerptSampler):
    """A training sampler that raises :class:`Killed` when asked for batch number ``kill_at``."""

    def __init__(self, root, kill_at=None, **sampler_kwargs):
        super().__init__(root, "train", **sampler_kwargs)
        self.kill_at, self.batches = kill_at, 0

    def batch(self, size):
        self.batches += 1
        if self.batches == self.kill_at:
            raise Killed
        return super().batch(size)


@pytest.fixture
def one_thread():
    """One torch thread for the test (``pytestmark = pytest.mark.usefixtures("one_thread")``): on a loaded
    2-core machine, two OpenMP threads per process slow training ~10x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
