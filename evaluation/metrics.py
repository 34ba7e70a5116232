"""Separation metrics, framewise: BSS Eval v4 (the museval definition), SI-SDR, and the
magnitude-domain metrics the paper's authors used for synthesised voices.

:func:`bss_eval_v4` computes exactly what ``museval.evaluate(refs, ests,
win, hop, mode="v4")`` computes for mono sources — the same distortion filters
(512 taps, fitted once on the whole excerpt) and the same framewise
decomposition — but solves all the least-squares problems that share the
references' Gram matrix at once and projects every frame in the frequency
domain. museval solves one 2048 x 2048 system per estimate and convolves per
frame and source; here one factorisation serves all J estimates. A test pins
the values against museval itself.

:func:`magnitude_metrics` computes spectral SNR, spectral SI-SNR and the
mel-cepstral distance (MCD) as defined in the authors' evaluation code
(Schulze-Forster et al., TASLP 2023; github.com/schufo/umss,
``evaluation_metrics.py``): they compare magnitude spectrograms, so they do
not punish a synthesised voice for its random noise phase the way SI-SDR does.

Silence policy (one rule for every metric, see :data:`FLOOR_DB`):

* a frame is skipped (NaN) only where the *reference* is silent (all zeros in
  the frame). BSS Eval keeps museval's test: its projection uses every
  reference, so a frame is NaN for every voice when any reference is silent;
* a *silent estimate* of a sounding reference — all zeros, or more than
  :data:`SILENT_ESTIMATE_DB` below its reference in the frame — is a failure,
  never a skipped frame: every dB metric scores it :data:`FLOOR_DB`, the MCD
  scores it as the all-zero signal (its defined value, a large distance);
* no dB score goes below :data:`FLOOR_DB`, so nothing is worse than silence and
  silence cannot outrank an estimate that sings.

Where every estimate sings, the BSS Eval values are museval's, bit for bit up
to rounding; museval itself marks a frame NaN for every voice when any
estimate is silent, which would let a method gain by going silent.
"""
from __future__ import annotations

import warnings
from functools import cache

import librosa
import numpy as np
import scipy.fft
import scipy.linalg

FILTERS_LEN = 512
"""Distortion filter length of BSS Eval v4 (museval's default)."""
BSS_METRICS = ("SDR", "ISR", "SIR", "SAR")
MAGNITUDE_METRICS = ("spec-SNR", "spec-SI-SNR", "MCD")
LOWER_IS_BETTER = frozenset({"MCD"})
"""Metrics where a smaller value is a better estimate (every other metric is in dB, higher is better)."""
FLOOR_DB = -80.0
"""The score of a failed (silent) estimate, and the lowest score any dB metric can take. It is the
floor the authors' own code puts under SI-SDR and spectral SI-SNR (10 log10(ratio + 1e-8)), where a
silent estimate scores exactly this."""
SILENT_ESTIMATE_DB = 80.0
"""An estimate frame more than this many dB below its reference frame counts as silent."""
MAG_FFT = 512
"""FFT size (Hann window, hop MAG_FFT/2) of the magnitude metrics (the authors' ``n_fft_metrics``)."""
MCD_MELS, MCD_COEFFS, MCD_LOG_EPS = 128, 13, 1e-6
"""MCD front end: torchaudio's MFCC defaults as the authors call it (128 HTK mel bands 0 Hz - Nyquist,
power spectrogram, ln(mel + 1e-6), orthonormal DCT-II, coefficients 0..12)."""


def frame_slices(n: int, win: int, hop: int) -> list[slice]:
    """museval's framing: windows of ``win`` every ``hop``; one window if the signal is shorter."""
    if win >= n:
        return [slice(0, n)]
    count = (n - win + hop) // hop
    return [slice(t * hop, min(t * hop + win, n)) for t in range(count)]


def _next_pow2(n: int) -> int:
    return 1 << int(np.ceil(np.log2(n)))


def _lagged(xcorr: np.ndarray, L: int) -> np.ndarray:
    """Lags 0, -1, ..., -(L-1) of a circular cross-correlation (last axis)."""
    return np.concatenate([xcorr[..., :1], xcorr[..., :-L:-1]], axis=-1)


def _energy(x: np.ndarray) -> np.ndarray:
    return np.sum(x ** 2, axis=-1)


def _spd_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve a x = b for symmetric positive definite a; LU when a is numerically singular."""
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, check_finite=False), b, check_finite=False)
    except np.linalg.LinAlgError:
        return np.linalg.solve(a, b)


def _db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """10 log10(num / den), +inf for a zero denominator, never below FLOOR_DB."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den == 0, np.inf, 10 * np.log10(num / np.where(den == 0, 1.0, den)))
    return np.maximum(ratio, FLOOR_DB)


def silent_estimates(ref_energy: np.ndarray, est_energy: np.ndarray) -> np.ndarray:
    """True where an estimate frame is silent: zero energy, or SILENT_ESTIMATE_DB below its reference."""
    return est_energy <= ref_energy * 10 ** (-SILENT_ESTIMATE_DB / 10)


def bss_eval_v4(references: np.ndarray, estimates: np.ndarray, win: int, hop: int,
                filters_len: int = FILTERS_LEN) -> dict[str, np.ndarray]:
    """SDR, ISR, SIR, SAR per source and frame: dict of arrays [J, frames] in dB.

    ``references`` and ``estimates`` are [J, N] (mono). Estimate j is scored
    against reference j (no permutation), all J references together.
    """
    refs = np.asarray(references, dtype=np.float64)
    ests = np.asarray(estimates, dtype=np.float64)
    if refs.shape != ests.shape or refs.ndim != 2:
        raise ValueError(f"references {refs.shape} and estimates {ests.shape} must both be [J, N]")
    J, N = refs.shape
    L = filters_len
    eps = np.finfo(float).eps

    # Gram matrix of the delayed references, G[(i, a), (j, b)] = <r_i(t - a), r_j(t - b)>
    n_fft = _next_pow2(N + L - 1)
    ref_spec = scipy.fft.fft(refs, n=n_fft, axis=-1)
    est_spec = scipy.fft.fft(ests, n=n_fft, axis=-1)
    xcorr = np.real(scipy.fft.ifft(ref_spec[None, :, :] * np.conj(ref_spec[:, None, :]), axis=-1))  # [i, j, lag]
    G = np.zeros((J, L, J, L))
    for i in range(J):
        for j in range(i, J):
            block = scipy.linalg.toeplitz(_lagged(xcorr[i, j], L), xcorr[i, j, :L])
            G[j, :, i, :] = block
            G[i, :, j, :] = block.T
    G = G.reshape(J * L, J * L)
    # cross-correlations of every reference with every estimate, D[(j, a), e]
    D = _lagged(np.real(scipy.fft.ifft(ref_spec[:, None, :] * np.conj(est_spec[None, :, :]), axis=-1)), L)
    D = D.transpose(0, 2, 1).reshape(J * L, J)

    # interference filters (all references) and spatial filters (own reference). museval solves
    # G + eps*I once per estimate by LU; G is a Gram matrix (symmetric positive definite), so one
    # Cholesky factorisation serves all J right-hand sides at a third of the cost.
    own_blocks = [G[j * L:(j + 1) * L, j * L:(j + 1) * L] + eps * np.eye(L) for j in range(J)]
    G[np.diag_indices_from(G)] += eps
    C = _spd_solve(G, D).reshape(J, L, J)                                        # [ref k, tap, estimate j]
    C_own = np.stack([_spd_solve(own_blocks[j], D[j * L:(j + 1) * L, j]) for j in range(J)])  # [j, tap]

    slices = frame_slices(N, win, hop)
    out = {m: np.full((J, len(slices)), np.nan) for m in BSS_METRICS}
    filter_spectra: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # FFT size -> (interference, own) filters
    for t, sl in enumerate(slices):
        r, e = refs[:, sl], ests[:, sl]
        if np.any(~r.any(axis=1)):  # museval's reference test: the projection needs every reference
            continue
        W = sl.stop - sl.start
        n_conv = _next_pow2(W + L - 1)
        r_f = scipy.fft.rfft(r, n=n_conv, axis=-1)
        if n_conv not in filter_spectra:  # frames share one size but for a shorter last frame
            filter_spectra[n_conv] = (scipy.fft.rfft(C.transpose(2, 0, 1), n=n_conv, axis=-1),
                                      scipy.fft.rfft(C_own, n=n_conv, axis=-1))
        Cf, own_f = filter_spectra[n_conv]
        proj_all = scipy.fft.irfft(np.einsum("jkf,kf->jf", Cf, r_f), n=n_conv, axis=-1)[:, :W + L - 1]
        proj_own = scipy.fft.irfft(own_f * r_f, n=n_conv, axis=-1)[:, :W + L - 1]
        s_true = np.zeros((J, W + L - 1))
        s_true[:, :W] = r
        est = np.zeros((J, W + L - 1))
        est[:, :W] = e
        out["SDR"][:, t] = _db(_energy(s_true), _energy(est - s_true))
        out["ISR"][:, t] = _db(_energy(s_true), _energy(proj_own - s_true))
        out["SIR"][:, t] = _db(_energy(proj_own), _energy(proj_all - proj_own))
        out["SAR"][:, t] = _db(_energy(proj_all), _energy(est - proj_all))
        # a silent estimate is a failure (museval would skip the frame for every voice instead)
        silent = silent_estimates(_energy(r), _energy(e))
        for metric in BSS_METRICS:
            out[metric][silent, t] = FLOOR_DB
    return out


def si_sdr(references: np.ndarray, estimates: np.ndarray, win: int, hop: int) -> np.ndarray:
    """Scale-invariant SDR per source and frame, [J, frames] in dB (Le Roux et al., ICASSP 2019).

    alpha = <s, s_hat> / ||s||^2, SI-SDR = 10 log10(||alpha s||^2 / ||alpha s - s_hat||^2).
    NaN where the reference frame is silent; FLOOR_DB where the estimate is silent (see the module
    docstring) and the least any frame can score; +inf for an exact scaled copy.
    """
    refs = np.asarray(references, dtype=np.float64)
    ests = np.asarray(estimates, dtype=np.float64)
    slices = frame_slices(refs.shape[-1], win, hop)
    out = np.full((refs.shape[0], len(slices)), np.nan)
    for t, sl in enumerate(slices):
        s, s_hat = refs[:, sl], ests[:, sl]
        power = _energy(s)
        sounding = power > 0
        alpha = np.divide(np.sum(s * s_hat, axis=-1), power, out=np.zeros_like(power), where=sounding)
        target = alpha[:, None] * s
        score = _db(_energy(target), _energy(target - s_hat))
        score[silent_estimates(power, _energy(s_hat))] = FLOOR_DB
        out[sounding, t] = score[sounding]
    return out


def spectral_snr(ref_mag: np.ndarray, est_mag: np.ndarray) -> np.ndarray:
    """10 log10(sum |S|^2 / sum (|S^| - |S|)^2) over the last two axes (bins, frames) of magnitude
    spectrograms [..., bins, frames], in dB (at least FLOOR_DB; +inf when they are equal)."""
    return _db(np.sum(ref_mag ** 2, axis=(-2, -1)), np.sum((est_mag - ref_mag) ** 2, axis=(-2, -1)))


def spectral_si_snr(ref_mag: np.ndarray, est_mag: np.ndarray) -> np.ndarray:
    """Scale-invariant :func:`spectral_snr`: |S| first scaled by a = <|S|, |S^|> / sum |S|^2."""
    power = np.sum(ref_mag ** 2, axis=(-2, -1))
    scale = np.divide(np.sum(ref_mag * est_mag, axis=(-2, -1)), power, out=np.zeros_like(power), where=power > 0)
    target = scale[..., None, None] * ref_mag
    return _db(np.sum(target ** 2, axis=(-2, -1)), np.sum((est_mag - target) ** 2, axis=(-2, -1)))


def _frames(x: np.ndarray, slices: list[slice]) -> np.ndarray:
    """[J, N] -> [J, frames, win]; a shorter last frame is zero-padded (only when N < win)."""
    width = max(sl.stop - sl.start for sl in slices)
    out = np.zeros(x.shape[:-1] + (len(slices), width))
    for t, sl in enumerate(slices):
        out[..., t, :sl.stop - sl.start] = x[..., sl]
    return out


def _stft_mag(x: np.ndarray, n_fft: int, pad_end: bool) -> np.ndarray:
    """|STFT| along the last axis: periodic Hann window of n_fft, hop n_fft/2, centred frames
    (reflect padding of n_fft/2); ``pad_end`` first zero-pads the end until the last window lies
    beyond the signal (tf.signal.stft's pad_end, which the authors' magnitude metrics use).
    Returns [..., bins, stft frames]."""
    hop = n_fft // 2
    if pad_end:
        n = x.shape[-1]
        pad = max(0, n_fft + hop * (-(-n // hop) - 1) - n)
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
    return np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="reflect"))


@cache
def _mel_basis(sample_rate: int, n_fft: int) -> np.ndarray:
    with warnings.catch_warnings():  # 128 bands on 257 bins leaves some low bands empty, as in the original
        warnings.simplefilter("ignore")
        return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=MCD_MELS, fmin=0.0, fmax=sample_rate / 2,
                                   htk=True, norm=None)


def _mfcc(x: np.ndarray, sample_rate: int, n_fft: int) -> np.ndarray:
    """[..., N] -> [..., MCD_COEFFS, stft frames]."""
    power = _stft_mag(x, n_fft, pad_end=False) ** 2
    log_mel = np.log(np.matmul(_mel_basis(sample_rate, n_fft), power) + MCD_LOG_EPS)  # BLAS, not einsum
    return scipy.fft.dct(log_mel, type=2, norm="ortho", axis=-2)[..., :MCD_COEFFS, :]


def magnitude_metrics(references: np.ndarray, estimates: np.ndarray, win: int, hop: int, *,
                      sample_rate: int = 16_000, n_fft: int = MAG_FFT) -> dict[str, np.ndarray]:
    """Spectral SNR, spectral SI-SNR (dB) and MCD per source and frame: dict of [J, frames].

    In each frame (museval's framing, as for the other metrics), with |S| and |S^| the magnitude
    spectrograms of reference and estimate (n_fft-point, Hann, 50 % overlap, see ``_stft_mag``):

    * spec-SNR = 10 log10(sum |S|^2 / sum (|S^| - |S|)^2);
    * spec-SI-SNR: the same with |S| scaled by a = <|S|, |S^|> / sum |S|^2 (the SI-SDR of magnitudes);
    * MCD = mean over STFT frames of the Euclidean distance between the 13 MFCCs (c0 included) of
      reference and estimate (natural-log units, lower is better; see MCD_MELS).

    Definitions from the authors' ``evaluation_metrics.py`` (spectral_snr, spectral_si_snr,
    mel_cepstral_distance); their +1e-8 inside the log is :data:`FLOOR_DB` here. Silence follows
    the module's policy: NaN where the reference frame is silent, a silent estimate scores FLOOR_DB
    (spec-SNR, spec-SI-SNR) or is scored as zeros (MCD).
    """
    refs = np.asarray(references, dtype=np.float64)
    ests = np.asarray(estimates, dtype=np.float64)
    if refs.shape != ests.shape or refs.ndim != 2:
        raise ValueError(f"references {refs.shape} and estimates {ests.shape} must both be [J, N]")
    slices = frame_slices(refs.shape[-1], win, hop)
    r, e = _frames(refs, slices), _frames(ests, slices)             # [J, T, win]
    ref_energy, est_energy = _energy(r), _energy(e)
    sounding = ref_energy > 0
    silent = silent_estimates(ref_energy, est_energy)
    e = np.where(silent[..., None], 0.0, e)

    R, E = _stft_mag(r, n_fft, pad_end=True), _stft_mag(e, n_fft, pad_end=True)    # [J, T, bins, frames]
    snr, si_snr = spectral_snr(R, E), spectral_si_snr(R, E)
    snr[silent], si_snr[silent] = FLOOR_DB, FLOOR_DB
    mcd = np.mean(np.sqrt(np.sum((_mfcc(r, sample_rate, n_fft) - _mfcc(e, sample_rate, n_fft)) ** 2, axis=-2)),
                  axis=-1)
    out = {"spec-SNR": snr, "spec-SI-SNR": si_snr, "MCD": mcd}
    for values in out.values():
        values[~sounding] = np.nan
    return out
