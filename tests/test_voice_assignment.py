"""Voice assignment from a salience map: each voice gets its own line, silence stays silent."""
import numpy as np
import pytest

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.voice_assignment import (SalienceMap, _order_preserving_match, assign_voices,
                                                   bin_frequencies, estimate_f0, parse_voices)

N_SAL = 384  # 3 VoAS patches of 128 frames, about 4.5 s
SAL_TIMES = np.arange(N_SAL) * 256 / 22050
# four crossing-free glides, one in each part's usual register (a chorale's close position)
GLIDES = {"S": (392.0, 523.0), "A": (294.0, 392.0), "T": (196.0, 262.0), "B": (98.0, 131.0)}


def glide(voice, times=SAL_TIMES):
    lo, hi = GLIDES[voice]
    return lo * (hi / lo) ** (times / SAL_TIMES[-1])


def salience_of(tracks: dict, amp=0.9) -> SalienceMap:
    """A salience map as the multi-F0 CNN draws it: a Gaussian bump (1 bin std) at each F0."""
    k = np.arange(360)[:, None]
    sal = np.zeros((360, N_SAL), np.float32)
    for f0 in tracks.values():
        centre = 60 * np.log2(np.where(f0 > 0, f0, 1e-3) / 32.7)
        sal = np.maximum(sal, amp * np.exp(-0.5 * (k - centre[None]) ** 2) * (f0 > 0)[None])
    return SalienceMap(SAL_TIMES, bin_frequencies(), sal)


def within(estimate, voice, tol_cents=50.0):
    """Share of grid frames where ``estimate`` is voiced and within tol of the voice's glide."""
    grid = np.arange(len(estimate)) * HOP / SAMPLE_RATE
    ref = glide(voice, np.minimum(grid, SAL_TIMES[-1]))
    ok = (estimate > 0) & (np.abs(1200 * np.log2(np.maximum(estimate, 1e-6) / ref)) <= tol_cents)
    return float(np.mean(ok))


@pytest.fixture(scope="module")
def quartet():
    return salience_of({v: glide(v) for v in "SATB"})


@pytest.mark.parametrize("assigner", ["pitch_sort", "voas"])
def test_four_glides_each_voice_gets_its_own(quartet, assigner):
    f0 = assign_voices(quartet, "SATB", {"assigner": assigner})
    assert f0.shape == (4, int(SAL_TIMES[-1] * SAMPLE_RATE / HOP) + 1)
    for j, voice in enumerate("SATB"):
        assert within(f0[j], voice) > 0.95, (assigner, voice)


def test_voas_fast_path_is_the_published_network(quartet):
    """The fast VoAS (channels last, FFT convolutions, folded BN) against the torch module of the
    straightforward port, on a quartet with noise bumps and a last patch cut short: float rounding
    only, and the same peaks above the thresholds."""
    from choirbench.data_prep import voice_assignment as va

    rng = np.random.default_rng(1)
    noisy = quartet.map + rng.uniform(0, 0.5, quartet.map.shape) * (rng.uniform(size=quartet.map.shape) > 0.98)
    values = noisy[:, :300].astype(np.float32)                         # 2 patches and a partial third
    fast, direct = va.voas_saliences(values, impl="fast"), va.voas_saliences(values, impl="direct")
    assert fast.shape == direct.shape == (4, 360, 300)
    np.testing.assert_allclose(fast, direct, atol=2e-4)
    assert np.abs(fast - direct).max() > 0                             # the two paths really differ in code
    for k, part in enumerate(va.PARTS):
        threshold = va.ASSIGN_DEFAULTS["voas_threshold"][part]
        np.testing.assert_array_equal(va.local_peaks(fast[k], threshold), va.local_peaks(direct[k], threshold))
    with pytest.raises(ValueError, match="impl"):
        va.voas_saliences(values, impl="slow")


@pytest.mark.parametrize("assigner", ["pitch_sort", "voas"])
@pytest.mark.parametrize("voices", ["SA", "TB", "ATB", "SB"])
def test_named_voices_of_a_smaller_ensemble(assigner, voices):
    """A recording of J < 4 voices, the voices named: each gets its own line."""
    f0 = assign_voices(salience_of({v: glide(v) for v in voices}), voices, {"assigner": assigner}, n_frames=200)
    assert f0.shape == (len(voices), 200)
    for j, voice in enumerate(voices):
        assert within(f0[j], voice) > 0.9, (assigner, voices, voice)


def test_pitch_sort_leaves_a_resting_voice_unvoiced():
    """Alto rests in the middle third: the other voices keep their lines, alto is unvoiced there."""
    tracks = {v: glide(v) for v in "SATB"}
    rest = (SAL_TIMES > 1.5) & (SAL_TIMES < 3.0)
    tracks["A"] = np.where(rest, 0.0, tracks["A"])
    f0 = assign_voices(salience_of(tracks), "SATB", {"assigner": "pitch_sort"})
    grid = np.arange(f0.shape[1]) * HOP / SAMPLE_RATE
    inside = (grid > 1.6) & (grid < 2.9)
    assert np.all(f0[1, inside] == 0)
    for j, voice in zip((0, 2, 3), "STB"):
        assert within(f0[j], voice) > 0.95


@pytest.mark.parametrize("assigner", ["pitch_sort", "voas"])
def test_silence_gives_all_voices_unvoiced(assigner):
    silent = SalienceMap(SAL_TIMES, bin_frequencies(), np.zeros((360, N_SAL), np.float32))
    assert not assign_voices(silent, "SATB", {"assigner": assigner}).any()


def test_silent_recording_is_unvoiced_without_running_the_estimator():
    f0 = estimate_f0(np.zeros(16000, np.float32), 16000, "ATB")
    assert f0.shape == (3, 16000 // HOP + 1) and not f0.any()


def test_order_preserving_match_prefers_fitting_peaks():
    # two voices, three peaks: the middle one fits nobody, so it is left over
    cost = np.array([[0.5, 6.0, 12.0], [12.0, 6.0, 0.5]])
    assert _order_preserving_match(cost, 8.0, np.array([3.0, 3.0, 3.0])) == [0, 2]
    # a voice far from every peak is left unvoiced rather than forced onto one
    cost = np.array([[40.0], [0.1]])
    assert _order_preserving_match(cost, 8.0, np.array([3.0])) == [-1, 0]


@pytest.mark.parametrize("voices, message", [("", "no voice"), ("SX", "unknown voice"), ("SAS", "twice")])
def test_bad_voices(voices, message):
    with pytest.raises(ChoirbenchError, match=message):
        parse_voices(voices)
    assert parse_voices("b-s") == ("S", "B")


@pytest.mark.parametrize("change, message", [
    (lambda s: SalienceMap(s.times_s, s.freqs_hz, s.map[:100]), "shape"),
    (lambda s: SalienceMap(s.times_s, s.freqs_hz, np.where(s.map > 0.5, np.nan, s.map)), "NaN"),
    (lambda s: SalienceMap(s.times_s[:0], s.freqs_hz, s.map[:, :0]), "no frames"),
    (lambda s: SalienceMap(s.times_s, s.freqs_hz * 2, s.map), "bins"),
])
def test_bad_salience(quartet, change, message):
    with pytest.raises(ChoirbenchError, match=message):
        assign_voices(change(quartet), "SATB", {"assigner": "pitch_sort"})


def test_bad_knobs(quartet):
    with pytest.raises(ChoirbenchError, match="assigner"):
        assign_voices(quartet, "SATB", {"assigner": "nearest"})
    with pytest.raises(ChoirbenchError, match="f0_mixture.peak_thresh"):
        assign_voices(quartet, "SATB", {"peak_thresh": 0.2})


@pytest.mark.parametrize("audio, message", [
    (np.zeros(0, np.float32), "empty"),
    (np.zeros((2, 1000), np.float32), "mono"),
    (np.full(1000, np.nan, np.float32), "NaN"),
])
def test_bad_audio(audio, message):
    with pytest.raises(ChoirbenchError, match=message):
        estimate_f0(audio, 16000)
