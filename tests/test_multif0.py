"""The Late/Deep multi-F0 port: HCQT grid, chord peaks, silence, bad input, seamless blocks, golden map."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from choirbench import ChoirbenchError
from choirbench.data_prep import multif0

GOLDEN = Path(__file__).with_name("data") / "multif0_golden.npz"
CHORD_HZ = (523.25, 392.00, 329.63, 130.81)  # C5 G4 E4 C3: one note per part of an SATB C major chord


def harmonic_chord(f0s, seconds: float, sr: int, *, seed: int = 0, vibrato_cents: float = 0.0) -> np.ndarray:
    """Sum of harmonic tones (8 partials, 1/k amplitudes, random phases) with short fades, peak 0.1,
    over a -60 dB white-noise floor like a microphone's. Without the floor the phase of the empty
    bins is float rounding, and the network does look at it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    out = np.zeros_like(t)
    for f0 in f0s:
        rate = rng.uniform(4.5, 6.0)
        inst = f0 * 2 ** (vibrato_cents / 1200 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
        phase = 2 * np.pi * np.cumsum(inst) / sr
        for k in range(1, 9):
            if k * f0 < sr / 2 - 500:
                out += np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05)
    out = 0.1 * out * fade / np.max(np.abs(out)) + 1e-4 * rng.standard_normal(len(t))
    return out.astype(np.float32)


def cents(a, b):
    return 1200 * np.abs(np.log2(np.asarray(a) / np.asarray(b)))


@pytest.fixture(scope="module")
def chord_salience():
    return multif0.salience(harmonic_chord(CHORD_HZ, 3.0, 16_000), 16_000, threads=2)


def test_hcqt_bins_sit_where_the_formula_puts_them():
    freqs = multif0.hcqt_frequencies()
    assert freqs.shape == (360,)
    np.testing.assert_allclose(freqs, 32.7 * 2 ** (np.arange(360) / 60), rtol=1e-12)
    np.testing.assert_allclose(freqs[60] / freqs[0], 2.0)  # 60 bins per octave
    # a pure tone lands in the bin the formula names, in every harmonic channel that reaches it
    sr, f = 22_050, 220.0
    y = (0.1 * np.sin(2 * np.pi * f * np.arange(2 * sr) / sr)).astype(np.float32)
    mag, dphase, times = multif0.hcqt(y, sr)
    assert mag.shape == dphase.shape == (5, 360, 2 * sr // 256)
    assert mag.dtype == np.float32 and times.shape == (mag.shape[2],)
    np.testing.assert_allclose(times[:3], np.arange(3) * 256 / sr)
    middle = mag[:, :, mag.shape[2] // 2]
    for i, h in enumerate(multif0.HARMONICS):
        expected = int(round(60 * np.log2(f / (h * 32.7))))
        if 0 <= expected < 360:
            assert abs(int(np.argmax(middle[i])) - expected) <= 0, (h, int(np.argmax(middle[i])), expected)
    # dB relative to each harmonic's own maximum, floored at -80 (amplitude_to_db(ref=max))
    assert np.allclose(mag.reshape(5, -1).max(axis=1), 0.0) and mag.min() >= -80.0
    # phase differential along time: a steady tone advances by 2 pi f hop / sr per frame (wrapped)
    k = int(round(60 * np.log2(f / 32.7)))
    advance = np.angle(np.exp(1j * 2 * np.pi * f * 256 / sr))
    observed = dphase[0, k, 20:-20]
    assert np.max(np.abs(np.angle(np.exp(1j * (observed - advance))))) < 0.05
    assert np.all(np.abs(dphase[:, :, 1:]) <= np.pi + 1e-6)


def test_chord_gives_peaks_at_each_f0_and_nothing_else(chord_salience):
    sal = chord_salience
    assert sal.map.shape == (360, len(sal.times_s)) and sal.map.dtype == np.float32
    assert 0.0 <= sal.map.min() and sal.map.max() <= 1.0
    times, freqs = multif0.peaks(sal)
    assert len(freqs) == len(times)
    inner = [f for t, f in zip(times, freqs) if 0.3 < t < 2.7]
    for frame in inner:
        assert len(frame) == len(CHORD_HZ), frame
        for f0 in CHORD_HZ:
            assert cents(frame, f0).min() < 20.0, (frame, f0)


def test_silence_gives_no_peaks():
    sal = multif0.salience(np.zeros(16_000, dtype=np.float32), 16_000)
    assert not sal.map.any()
    _, freqs = multif0.peaks(sal)
    assert all(len(f) == 0 for f in freqs)


def test_peaks_follow_the_one_peak_rule_of_the_assigners():
    """multif0.peaks and the assigners' local_peaks are one rule: strict maxima along frequency at or above
    the threshold, never the first or last bin (argrelmax in Cuesta et al.'s post-processing)."""
    from choirbench.data_prep.voice_assignment import local_peaks

    values = np.zeros((360, 4), dtype=np.float32)
    values[0, 0] = values[359, 0] = 0.9          # rising to an edge: no peak
    values[100, 1] = 0.9                         # a strict maximum: a peak
    values[200:202, 2] = 0.9                     # a plateau of two bins: no strict maximum
    values[50, 3], values[300, 3] = 0.49, 0.5    # below and at the threshold 0.5
    sal = multif0.Salience(np.arange(4) * 0.01, multif0.hcqt_frequencies(), values)
    _, freqs = multif0.peaks(sal, 0.5)
    bins = [np.flatnonzero(np.isin(sal.freqs_hz, f)).tolist() for f in freqs]
    assert bins == [[], [100], [], [300]]
    assert [np.flatnonzero(local_peaks(values, 0.5)[:, t]).tolist() for t in range(4)] == bins


@pytest.mark.parametrize("audio, sr, message", [
    (np.zeros(0), 16_000, "empty"),
    (np.zeros(100), 16_000, "shorter than one HCQT frame"),
    (np.array([0.0, np.nan] * 4000), 16_000, "NaN"),
    (np.array([0.0, np.inf] * 4000), 16_000, "NaN or infinite"),
    (np.zeros((2, 16_000)), 16_000, "mono"),
    (np.zeros((16_000, 2)), 16_000, "mono"),
    (np.zeros(16_000), 0, "sampling rate"),
    (np.zeros(16_000), float("nan"), "sampling rate"),
])
def test_bad_input_is_one_line_error(audio, sr, message):
    with pytest.raises(ChoirbenchError, match=message) as info:
        multif0.salience(audio, sr)
    assert "\n" not in str(info.value)
    with pytest.raises(ChoirbenchError, match=message):
        multif0.hcqt(audio, sr)


def test_bad_knobs_are_one_line_errors(chord_salience):
    with pytest.raises(ChoirbenchError, match="threshold"):
        multif0.peaks(chord_salience, 0.0)
    with pytest.raises(ChoirbenchError, match="block_s"):
        multif0.salience(np.zeros(16_000), 16_000, block_s=0)


def test_blocks_join_without_seams():
    """Blocks of 1 s (with their margins) give the map of one pass over the whole clip (to float rounding)."""
    y = harmonic_chord((440.0, 330.0, 220.0, 110.0), 4.0, 22_050, seed=3, vibrato_cents=40.0)
    whole = multif0.salience(y, 22_050, block_s=60.0)
    blocked = multif0.salience(y, 22_050, block_s=1.0)
    np.testing.assert_array_equal(whole.times_s, blocked.times_s)
    # a seam (a block edge without its margins) moves the map by 0.1-0.3 near the edge; float
    # rounding in the CQT of a different segment moves the phase of the quietest bins a little
    assert np.max(np.abs(whole.map - blocked.map)) < 5e-3
    _, a = multif0.peaks(whole)
    _, b = multif0.peaks(blocked)
    assert np.mean([np.array_equal(x, y) for x, y in zip(a, b)]) > 0.99


def test_fast_network_equals_the_straightforward_port():
    """FFT convolutions along frequency, channels last: the same map as conv2d on every layer."""
    import torch

    y = harmonic_chord((493.88, 392.0, 293.66, 196.0), 1.0, 22_050, seed=5, vibrato_cents=30.0)
    mag, dphase, _ = multif0.hcqt(y, 22_050)
    model = multif0.LateDeep()
    args = torch.from_numpy(mag[..., 10:70].copy()), torch.from_numpy(dphase[..., 10:70].copy())
    fast, direct = model(*args, impl="fast"), model(*args, impl="direct")
    assert fast.shape == direct.shape == (360, 60)
    assert float(direct.max()) > 0.5  # the chord is found, so the comparison is not between two blanks
    assert float((fast - direct).abs().max()) < 1e-4


def golden_clip() -> tuple[np.ndarray, int]:
    """A fixed 2-s clip: an SATB chord with vibrato, then its voices moving (deterministic)."""
    sr = 16_000
    first = harmonic_chord((587.33, 440.0, 293.66, 146.83), 1.0, sr, seed=7, vibrato_cents=30.0)
    second = harmonic_chord((523.25, 392.0, 329.63, 130.81), 1.0, sr, seed=8, vibrato_cents=30.0)
    return np.concatenate([first, second]), sr


def summarise(sal: multif0.Salience) -> np.ndarray:
    """Every 4th frame of the map, quantised to 1/255 (uint8): small enough to pin in git."""
    return np.round(sal.map[:, ::4] * 255).astype(np.uint8)


def test_golden_salience_map():
    """The validated port's map of a fixed clip (regenerate: python tests/test_multif0.py)."""
    if not GOLDEN.is_file():
        pytest.skip(f"{GOLDEN} missing")
    audio, sr = golden_clip()
    got = summarise(multif0.salience(audio, sr))
    with np.load(GOLDEN, allow_pickle=False) as stored:
        want = stored["map_u8"]
    assert got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 2, f"salience moved by up to {diff.max()}/255"


if __name__ == "__main__":
    audio, sr = golden_clip()
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, map_u8=summarise(multif0.salience(audio, sr)))
    print("wrote", GOLDEN)
