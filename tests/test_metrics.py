"""BSS Eval v4 pinned against museval; SI-SDR and the magnitude metrics against closed-form values;
the silence policy (a silent estimate is a failure, only silent references are skipped)."""
import json

import numpy as np
import pytest
import scipy.fft

from choirbench.evaluation.evaluate import METRICS, score_example
from choirbench.evaluation.metrics import (BSS_METRICS, FLOOR_DB, LOWER_IS_BETTER, _mel_basis, bss_eval_v4,
                                           frame_slices, magnitude_metrics, si_sdr, spectral_si_snr,
                                           spectral_snr)
from metric_examples import GOLDEN, golden_example, museval_scores

SR = 16_000


def test_bss_eval_matches_golden_museval_numbers():
    """museval's numbers wherever every estimate sings; where estimate 2 is silent (frame 2) museval
    skips the frame for every voice, we score voice 2 as a failure and the other voices as museval
    scores them once voice 2 sings again (their values do not depend on another voice's estimate)."""
    refs, ests = golden_example()
    ours = bss_eval_v4(refs, ests, win=SR, hop=SR)
    golden = json.loads(GOLDEN.read_text())
    for metric, values in golden.items():
        expected = np.array(values, dtype=float)
        assert np.isnan(expected[:, 2]).all()
        keep = np.isfinite(expected)
        np.testing.assert_allclose(ours[metric][keep], expected[keep], rtol=0, atol=1e-9, err_msg=metric)
        assert ours[metric][2, 2] == FLOOR_DB, metric
    singing = ests.copy()
    singing[2, 2 * SR:3 * SR] = 0.01 * np.random.default_rng(5).standard_normal(SR)
    reference = museval_scores(refs, singing)
    for metric in BSS_METRICS:
        np.testing.assert_allclose(ours[metric][[0, 1, 3], 2], np.asarray(reference[metric])[[0, 1, 3], 2],
                                   rtol=0, atol=1e-9, err_msg=metric)


@pytest.mark.parametrize("J", [2, 3])
def test_bss_eval_matches_live_museval(J):
    rng = np.random.default_rng(J)
    refs = rng.standard_normal((J, 3 * SR)) * np.linspace(0.2, 1, 3 * SR)
    ests = refs + 0.5 * rng.standard_normal(refs.shape) + 0.3 * refs[::-1]
    expected = museval_scores(refs, ests)
    ours = bss_eval_v4(refs, ests, win=SR, hop=SR)
    for metric, values in expected.items():
        np.testing.assert_allclose(ours[metric], values, rtol=0, atol=1e-9, err_msg=metric)


def test_si_sdr_of_reference_plus_white_noise_equals_the_snr():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((1, 4 * SR))
    for snr_db in (-5.0, 0.0, 10.0, 30.0):
        noise = rng.standard_normal(s.shape)
        noise *= np.sqrt(np.sum(s ** 2) / np.sum(noise ** 2) / 10 ** (snr_db / 10))
        score = si_sdr(s, s + noise, win=4 * SR, hop=4 * SR)[0, 0]
        assert abs(score - snr_db) < 0.1, (snr_db, score)


def test_si_sdr_is_scale_invariant_and_sdr_is_not():
    """Documented values: SI-SDR(s, c*s) is +inf (or numerically huge); BSS SDR(s, 2s) = 0 dB."""
    rng = np.random.default_rng(1)
    refs = rng.standard_normal((2, 2 * SR))
    assert np.all(si_sdr(refs, 0.5 * refs, SR, SR) > 100)
    sdr = bss_eval_v4(refs, 2 * refs, SR, SR)["SDR"]
    np.testing.assert_allclose(sdr, 0.0, atol=1e-6)


def test_only_a_silent_reference_skips_a_frame():
    rng = np.random.default_rng(2)
    refs = rng.standard_normal((2, 2 * SR))
    refs[1, :SR] = 0
    ests = refs + 0.1 * rng.standard_normal(refs.shape)
    ests[1, :SR] = 0
    scores = score_example(refs, ests, SR)
    assert set(scores) == set(METRICS)
    for metric in BSS_METRICS:  # museval's reference test: the projection needs every reference
        assert np.isnan(scores[metric][:, 0]).all() and np.isfinite(scores[metric][:, 1]).all(), metric
    for metric in set(METRICS) - set(BSS_METRICS):
        assert np.isnan(scores[metric][1, 0]) and np.isfinite(scores[metric][0, 0]), metric
        assert np.isfinite(scores[metric][:, 1]).all(), metric


def test_an_all_zero_estimate_cannot_outrank_a_correct_one():
    """A poor but correct estimate (the mixture / J, SDR below 0 dB) against a silent one, on every
    metric: silence used to be skipped (NaN), so a method could gain by going silent."""
    rng = np.random.default_rng(3)
    t = np.arange(3 * SR) / SR
    refs = np.stack([np.sin(2 * np.pi * f * t) * (1 + 0.3 * rng.standard_normal(len(t))) for f in (220, 330, 440)])
    refs[1] *= 0.3  # a quiet voice: the mixture / J is a poor estimate of it
    mixture = refs.sum(0)
    correct = score_example(refs, np.tile(mixture / 3, (3, 1)), SR, mixture)
    silent_voice = np.tile(mixture / 3, (3, 1))
    silent_voice[1] = 0.0
    silent = score_example(refs, silent_voice, SR, mixture)
    assert correct["SDR"][1].max() < 0  # a weak estimate, which museval's 0-dB "silent SDR" would beat
    for metric in METRICS:
        ok, zero = correct[metric][1], silent[metric][1]
        assert np.isfinite(zero).all(), metric
        worse = zero > ok if metric in LOWER_IS_BETTER else zero < ok
        assert worse.all(), (metric, ok, zero)
        if metric not in LOWER_IS_BETTER and metric != "SI-SDRi":
            assert (zero == FLOOR_DB).all(), metric
        # the other voices are still scored, not skipped
        assert np.isfinite(silent[metric][[0, 2]]).all(), metric


def test_an_estimate_far_below_its_reference_counts_as_silent():
    rng = np.random.default_rng(4)
    refs = rng.standard_normal((2, SR))
    quiet = refs * 1e-5  # 100 dB down: a scaled copy, but nothing anyone would hear
    assert (si_sdr(refs, quiet, SR, SR) == FLOOR_DB).all()
    assert (si_sdr(refs, refs * 1e-3, SR, SR) > 100).all()  # 60 dB down still counts as singing


def test_si_sdr_improvement_of_the_mixture_is_zero():
    rng = np.random.default_rng(6)
    refs = rng.standard_normal((4, 2 * SR))
    mixture = refs.sum(0)
    scores = score_example(refs, np.tile(mixture / 4, (4, 1)), SR, mixture)
    np.testing.assert_allclose(scores["SI-SDRi"], 0.0, atol=1e-9)
    better = score_example(refs, refs + 0.1 * rng.standard_normal(refs.shape), SR, mixture)
    np.testing.assert_allclose(better["SI-SDRi"], better["SI-SDR"] - scores["SI-SDR"], atol=1e-9)


def test_spectral_snrs_of_constructed_spectrograms():
    rng = np.random.default_rng(7)
    R = rng.uniform(0.1, 1.0, (3, 257, 65))
    np.testing.assert_allclose(spectral_snr(R, 2 * R), 0.0, atol=1e-12)        # |2S| - |S| = |S|
    assert np.all(spectral_si_snr(R, 2 * R) > 200)                              # the scale is forgiven
    D = rng.uniform(0.0, 0.1, R.shape)                                          # a known additive error
    expected = 10 * np.log10(np.sum(R ** 2, axis=(1, 2)) / np.sum(D ** 2, axis=(1, 2)))
    np.testing.assert_allclose(spectral_snr(R, R + D), expected, rtol=1e-12)
    a = np.sum(R * (R + D), axis=(1, 2)) / np.sum(R ** 2, axis=(1, 2))
    target = a[:, None, None] * R
    expected_si = 10 * np.log10(np.sum(target ** 2, axis=(1, 2)) / np.sum((R + D - target) ** 2, axis=(1, 2)))
    np.testing.assert_allclose(spectral_si_snr(R, R + D), expected_si, rtol=1e-12)


def test_magnitude_metrics_of_scaled_waveforms():
    """|STFT(c s)| = c |STFT(s)|: spectral SNR = -20 log10|c - 1|, spectral SI-SNR ~ inf; the MCD of c s
    is the shift ln(c^2) of every non-empty mel band, through the orthonormal DCT."""
    rng = np.random.default_rng(8)
    refs = rng.standard_normal((2, 2 * SR))
    for c in (2.0, 1.1, 0.5):
        m = magnitude_metrics(refs, c * refs, SR, SR)
        np.testing.assert_allclose(m["spec-SNR"], -20 * np.log10(abs(c - 1)), atol=1e-9)
        assert np.all(m["spec-SI-SNR"] > 200)
        shift = np.log(c ** 2) * (_mel_basis(SR, 512).sum(axis=1) > 0)
        expected = np.linalg.norm(scipy.fft.dct(shift, type=2, norm="ortho")[:13])
        np.testing.assert_allclose(m["MCD"], expected, rtol=1e-4)
    same = magnitude_metrics(refs, refs, SR, SR)
    np.testing.assert_allclose(same["MCD"], 0.0, atol=1e-12)
    assert np.all(np.isinf(same["spec-SNR"]))


def test_magnitude_metrics_rank_a_better_estimate_higher():
    rng = np.random.default_rng(9)
    refs = rng.standard_normal((2, 2 * SR))
    good = magnitude_metrics(refs, refs + 0.1 * rng.standard_normal(refs.shape), SR, SR)
    bad = magnitude_metrics(refs, refs + 1.0 * rng.standard_normal(refs.shape), SR, SR)
    assert np.all(good["spec-SNR"] > bad["spec-SNR"]) and np.all(good["spec-SI-SNR"] > bad["spec-SI-SNR"])
    assert np.all(good["MCD"] < bad["MCD"])


def test_framing_follows_museval():
    assert [(s.start, s.stop) for s in frame_slices(64000, 16000, 16000)] == [
        (0, 16000), (16000, 32000), (32000, 48000), (48000, 64000)]
    assert frame_slices(10000, 16000, 16000) == [slice(0, 10000)]
