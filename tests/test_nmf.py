"""The NMF baselines: monotone updates, zeros kept, masks summing to one, separation of known tones, edge cases."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.registry import get
from choirbench.methods._nmf_common import f0_on_frames, notes_from_f0, ratio_masks
from choirbench.methods.nmf1 import nmf_mu, nmf_sklearn
from choirbench.methods.nmf2 import klglott88_harmonics

FAST = {"iterations": 10}  # edge-case tests: fewer updates, same code paths
SECONDS = 2.0
N = int(SECONDS * SAMPLE_RATE)
T = N // HOP


def sdr(reference, estimate):
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2))


def harmonic_tone(f0_frames, seed):
    """Harmonics 1/k of a frame-rate F0 track (0 = silent), sample-rate phase, no amplitude clicks."""
    rng = np.random.default_rng(seed)
    f = np.interp(np.arange(N), np.arange(len(f0_frames)) * HOP, f0_frames)
    voiced = np.interp(np.arange(N), np.arange(len(f0_frames)) * HOP, (f0_frames > 0).astype(float))
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    out = np.zeros(N)
    for k in range(1, 25):
        out += (k * f < 7800) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k
    return 0.1 * voiced * out


@pytest.fixture(scope="module")
def two_voices():
    """Voice 0: A3 then B3; voice 1: E4 then D4, silent for its first 0.3 s. Known F0s and notes."""
    t = np.arange(T) * HOP / SAMPLE_RATE
    f0 = np.zeros((2, T))
    f0[0] = np.where(t < 1.0, 220.0, 246.94)
    f0[1] = np.where(t < 1.0, 329.63, 293.66) * (t >= 0.3)
    stems = np.stack([harmonic_tone(f0[j], seed=j) for j in range(2)])
    notes = [np.array([[0.0, 1.0, 57], [1.0, 2.0, 59]]), np.array([[0.3, 1.0, 64], [1.0, 2.0, 62]])]
    return stems, stems.sum(axis=0).astype(np.float32), f0, notes


# ---------------------------------------------------------------- separation quality

@pytest.mark.parametrize("name,use_notes", [("nmf1", True), ("nmf1", False), ("nmf2", False)])
def test_two_tones_separated(two_voices, name, use_notes):
    stems, mixture, f0, notes = two_voices
    voices = get(name)().separate(mixture, SAMPLE_RATE, f0, notes if use_notes else None)
    assert voices.shape == (2, N) and voices.dtype == np.float32
    scores = [sdr(stems[j], voices[j]) for j in range(2)]
    assert min(scores) >= 10.0, scores
    # the ratio masks sum to one, so the voices add back to the mixture
    np.testing.assert_allclose(voices.sum(axis=0), mixture, atol=1e-5)


def test_wrong_f0_separates_worse(two_voices):
    """The F0 really drives nmf2: swapped F0s give a much worse first voice."""
    stems, mixture, f0, _ = two_voices
    good = sdr(stems[0], get("nmf2")(FAST).separate(mixture, SAMPLE_RATE, f0)[0])
    bad = sdr(stems[0], get("nmf2")(FAST).separate(mixture, SAMPLE_RATE, f0[::-1])[0])
    assert bad < good - 10


# ---------------------------------------------------------------- the updates

@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_nmf1_monotone_and_zeros_kept(two_voices, beta):
    _, mixture, f0, notes = two_voices
    method = get("nmf1")({"beta": beta, "iterations": 15, "onset_templates": True})
    parts = method.decompose(mixture, SAMPLE_RATE, f0, notes, track=True)
    trace = np.asarray(parts["trace"])
    assert len(trace) == 2 * 15 + 1
    assert np.all(np.diff(trace) <= 1e-6 * np.abs(trace[1:])), np.diff(trace).max()
    assert trace[-1] < 0.5 * trace[0]  # it does fit
    zeros_w, zeros_h = parts["W0"] == 0, parts["H0"] == 0
    assert zeros_w.mean() > 0.1 and zeros_h.mean() > 0.3  # the constraints are real
    assert np.all(parts["W"][zeros_w] == 0) and np.all(parts["H"][zeros_h] == 0)
    assert np.all(parts["W"][~zeros_w] > 0)


def test_nmf_mu_monotone_on_random_problem():
    rng = np.random.default_rng(3)
    W = rng.random((60, 8)) * (rng.random((60, 8)) > 0.5)
    H = rng.random((8, 40)) * (rng.random((8, 40)) > 0.5)
    V = rng.random((60, 40))
    for beta in (0.0, 0.5, 1.0, 2.0):
        _, _, trace = nmf_mu(V, W.copy(), H.copy(), beta=beta, iterations=20, eps=1e-6, track=True)
        assert np.all(np.diff(trace) <= 1e-6 * np.abs(np.asarray(trace[1:]))), beta


@pytest.mark.parametrize("knobs", [{}, {"n_residual": 0}, {"beta": 1.0}])
def test_nmf2_monotone_and_zeros_kept(two_voices, knobs):
    _, mixture, f0, _ = two_voices
    method = get("nmf2")({"iterations": 6, "tolerance": 0.0, **knobs})  # all 6 iterations
    parts = method.decompose(mixture, SAMPLE_RATE, f0, track=True)
    trace = np.asarray(parts["trace"])
    assert len(trace) > 6
    assert np.all(np.diff(trace) <= 1e-6 * np.abs(trace[1:])), np.diff(trace).max()
    assert trace[-1] < trace[0]
    allowed = parts["allowed"]
    assert (~allowed).mean() > 0.05  # voice 1 is unvoiced for 0.3 s
    assert np.all(parts["h"][~allowed] == 0) and np.all(parts["h"][allowed] > 0)


def test_nmf2_stops_on_its_tolerance_and_never_increases(two_voices):
    """nmf2 runs until one iteration lowers the IS divergence by <= tolerance of its value: the last
    iteration's relative decrease is below the tolerance and every earlier one above it; the
    divergence never increases (after any single update); a smaller tolerance runs longer; the
    cap ``iterations`` wins when it is reached first."""
    _, mixture, f0, _ = two_voices
    tolerance = 1e-2
    method = get("nmf2")({"tolerance": tolerance, "iterations": 500})
    parts = method.decompose(mixture, SAMPLE_RATE, f0, track=True)
    per_iteration = np.asarray(parts["per_iteration"])
    decrease = -np.diff(per_iteration) / per_iteration[:-1]
    assert parts["iterations"] == len(decrease) < 500
    assert decrease[-1] <= tolerance and np.all(decrease[:-1] > tolerance), decrease
    trace = np.asarray(parts["trace"])
    assert np.all(np.diff(trace) <= 1e-6 * np.abs(trace[1:])), np.diff(trace).max()
    tighter = get("nmf2")({"tolerance": tolerance / 3, "iterations": 500}).decompose(mixture, SAMPLE_RATE, f0)
    assert tighter["iterations"] > parts["iterations"]
    capped = get("nmf2")({"tolerance": tolerance, "iterations": 3}).decompose(mixture, SAMPLE_RATE, f0)
    assert capped["iterations"] == 3
    # same result whether or not every update is tracked
    untracked = method.decompose(mixture, SAMPLE_RATE, f0)
    assert untracked["iterations"] == parts["iterations"] and np.array_equal(untracked["S"], parts["S"])


@pytest.mark.parametrize("bad", [{"tolerance": -1e-3}, {"tolerance": 1.0}, {"iterations": 0}, {"iterations": 2.5}])
def test_nmf2_bad_stopping_knobs(bad):
    with pytest.raises(ChoirbenchError, match=next(iter(bad))):
        get("nmf2")(bad)


def test_sklearn_keeps_zeros_and_matches_structure():
    """scikit-learn's MU solver keeps zeros in both factors exactly (so it can serve as nmf1's solver),
    and, given the same start, reaches nearly the same factorisation as the in-house updates."""
    rng = np.random.default_rng(0)
    W0 = (rng.random((80, 10)) * (rng.random((80, 10)) > 0.6) + 0.0).astype(np.float64)
    H0 = (rng.random((10, 50)) * (rng.random((10, 50)) > 0.6)).astype(np.float64)
    V = W0 @ H0 + 0.01 * rng.random((80, 50))
    W, H = nmf_sklearn(V, W0.copy(), H0.copy(), beta=1.0, iterations=50)
    assert np.all(W[W0 == 0] == 0) and np.all(H[H0 == 0] == 0)
    W2, H2, _ = nmf_mu(V, W0.copy(), H0.copy(), beta=1.0, iterations=50, eps=1e-12)
    np.testing.assert_allclose(W @ H, W2 @ H2, rtol=1e-3, atol=1e-6)


def test_nmf1_sklearn_solver_separates(two_voices):
    stems, mixture, f0, notes = two_voices
    voices = get("nmf1")({"solver": "sklearn"}).separate(mixture, SAMPLE_RATE, f0, notes)
    assert min(sdr(stems[j], voices[j]) for j in range(2)) >= 10.0


# ---------------------------------------------------------------- masks

@pytest.mark.parametrize("name", ["nmf1", "nmf2"])
def test_masks_sum_to_one(two_voices, name):
    _, mixture, f0, notes = two_voices
    method = get(name)({"iterations": 5})
    parts = method.decompose(mixture, SAMPLE_RATE, f0, notes if name == "nmf1" else None)
    masks = method.masks(parts)
    assert np.all(masks >= 0)
    energy = np.abs(parts["X"]) > 0
    np.testing.assert_allclose(masks.sum(axis=0)[energy], 1.0, atol=1e-9)


def test_ratio_masks_fallback():
    models = np.zeros((3, 4, 5))
    models[0, 0, 0] = 2.0
    models[1, 0, 0] = 2.0
    active = np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)
    masks = ratio_masks(models, 2.0, active)
    np.testing.assert_allclose(masks.sum(axis=0), 1.0)
    assert masks[0, 0, 0] == 0.5 and masks[0, 1, 1] == 1.0  # only voice 0 sings in frame 1
    assert np.all(masks[2] == 0)  # never active: silent
    assert masks[0, 2, 3] == 0.5  # no voice active: shared by those active somewhere


# ---------------------------------------------------------------- edge cases

@pytest.mark.parametrize("name", ["nmf1", "nmf2"])
def test_silent_voice_and_silence(two_voices, name):
    stems, mixture, f0, notes = two_voices
    f0_3 = np.concatenate([f0, np.zeros((1, T))])
    notes_3 = notes + [np.zeros((0, 3))] if name == "nmf1" else None
    method = get(name)(FAST)
    voices = method.separate(mixture, SAMPLE_RATE, f0_3, notes_3)
    assert voices.shape == (3, N) and np.all(np.isfinite(voices))
    assert np.all(voices[2] == 0)
    assert min(sdr(stems[j], voices[j]) for j in range(2)) >= 10.0
    silent = method.separate(np.zeros(N, np.float32), SAMPLE_RATE, f0, notes if name == "nmf1" else None)
    assert np.all(silent == 0)
    nobody = method.separate(mixture, SAMPLE_RATE, np.zeros((2, T)), None)
    assert np.all(nobody == 0)


def test_nmf1_notes_outside_excerpt(two_voices):
    stems, mixture, f0, _ = two_voices
    notes = [np.array([[-1.0, 1.0, 57], [1.0, 5.0, 59], [3.0, 4.0, 60], [-2.0, -1.0, 40]]),
             np.array([[0.3, 1.0, 64], [1.0, 9.0, 62], [np.nan, 1.0, 70]])]
    method = get("nmf1")({"onset_templates": True, **FAST})
    parts = method.decompose(mixture, SAMPLE_RATE, f0, notes)
    assert len(parts["owner"]) == 2 * 4  # 2 pitches x (harmonic + onset) per voice: the outside notes are gone
    voices = method.separate(mixture, SAMPLE_RATE, f0, notes)
    assert min(sdr(stems[j], voices[j]) for j in range(2)) >= 10.0


@pytest.mark.parametrize("name", ["nmf1", "nmf2"])
def test_f0_outside_grid(two_voices, name, caplog):
    stems, mixture, f0, _ = two_voices
    odd = f0.copy()
    odd[1] = np.where(odd[1] > 0, 9000.0, 0.0)  # above Nyquist: no template can exist
    odd[0, :10] = 5.0  # far below the grid for a few frames
    odd[0, 10:12] = np.nan
    kw = {"midi_min": 30, **FAST} if name == "nmf1" else FAST
    with caplog.at_level(logging.WARNING):
        voices = get(name)(kw).separate(mixture, SAMPLE_RATE, odd, None)
    assert np.all(np.isfinite(voices))
    assert np.all(voices[1] == 0)  # nothing in the grid: a silent estimate
    assert np.sum(voices[0] ** 2) > 0.5 * np.sum(stems[0] ** 2)
    assert "outside" in caplog.text


@pytest.mark.parametrize("name", ["nmf1", "nmf2"])
@pytest.mark.parametrize("delta", [-1, 1])
def test_f0_length_off_by_one(two_voices, name, delta):
    stems, mixture, f0, _ = two_voices
    f0_other = f0[:, :T + delta] if delta < 0 else np.concatenate([f0, f0[:, -1:]], axis=1)
    voices = get(name)(FAST).separate(mixture, SAMPLE_RATE, f0_other, None)
    assert min(sdr(stems[j], voices[j]) for j in range(2)) >= 10.0


def test_bad_inputs(two_voices):
    _, mixture, f0, notes = two_voices
    with pytest.raises(ValueError, match="16000"):
        get("nmf1")().separate(mixture, 44100, f0, notes)
    with pytest.raises(ValueError, match="note lists"):
        get("nmf1")().separate(mixture, SAMPLE_RATE, f0, notes[:1])
    with pytest.raises(ChoirbenchError, match="iteration"):
        get("nmf2")({"iteration": 3})


@pytest.mark.parametrize("name", ["nmf1", "nmf2"])
def test_deterministic(two_voices, name):
    _, mixture, f0, _ = two_voices
    a = get(name)({"iterations": 5}).separate(mixture, SAMPLE_RATE, f0, None)
    b = get(name)({"iterations": 5}).separate(mixture, SAMPLE_RATE, f0, None)
    assert np.array_equal(a, b)


# ---------------------------------------------------------------- helpers

def test_notes_from_f0():
    hop_s = HOP / SAMPLE_RATE
    t = np.arange(200) * hop_s
    track = np.where(t < 1.0, 220.0 * 2 ** (0.45 / 12 * np.sin(2 * np.pi * 5.5 * t)), 0.0)  # A3 with wide vibrato
    track[(t >= 1.2) & (t < 2.0)] = 261.63  # rest, then C4
    track[100] = 500.0  # one-frame glitch
    notes = notes_from_f0(track)
    assert notes.shape == (2, 3)
    np.testing.assert_allclose(notes[:, 2], [57, 60])
    assert abs(notes[0, 0]) < 1e-9 and abs(notes[0, 1] - 1.0) < 2 * hop_s
    assert abs(notes[1, 0] - 1.2) < 2 * hop_s and abs(notes[1, 1] - 2.0) < 2 * hop_s
    assert notes_from_f0(np.zeros(50)).shape == (0, 3)


def test_f0_on_frames():
    f0 = np.arange(1, 11, dtype=float)[None]
    np.testing.assert_array_equal(f0_on_frames(f0, 11, HOP)[0], list(range(1, 11)) + [10])
    np.testing.assert_array_equal(f0_on_frames(f0, 14, HOP)[0, 12:], [0, 0])
    np.testing.assert_array_equal(f0_on_frames(f0, 5, 2 * HOP)[0], [1, 3, 5, 7, 9])


def test_klglott88_closed_form_matches_dft():
    oq, M = 0.6, 1 << 16
    u = np.arange(M) / M
    flow_derivative = np.where(u < oq, 2 * u / oq ** 2 - 3 * u ** 2 / oq ** 3, 0.0)
    numeric = np.abs(np.fft.rfft(flow_derivative)[1:21] / M) ** 2
    np.testing.assert_allclose(klglott88_harmonics(20, oq), numeric, rtol=2e-3)
