"""BSS Eval v4 (the museval definition) and SI-SDR, framewise.

:func:`bss_eval_v4` computes exactly what ``museval.evaluate(refs, ests,
win, hop, mode="v4")`` computes for mono sources — the same distortion filters
(512 taps, fitted once on the whole excerpt) and the same framewise
decomposition — but solves all the least-squares problems that share the
references' Gram matrix at once and projects every frame in the frequency
domain. museval solves one 2048 x 2048 system per estimate and convolves per
frame and source; here one factorisation serves all J estimates. A test pins
the values against museval itself.

Silence follows museval: a frame is NaN for every voice when any reference or
any estimate is all zeros there.
"""
from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.linalg

FILTERS_LEN = 512
"""Distortion filter length of BSS Eval v4 (museval's default)."""
BSS_METRICS = ("SDR", "ISR", "SIR", "SAR")


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
    with np.errstate(divide="ignore"):
        return np.where(den == 0, np.inf, 10 * np.log10(num / np.where(den == 0, 1.0, den)))


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
        if np.any(~r.any(axis=1)) or np.any(~e.any(axis=1)):
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
    return out


def si_sdr(references: np.ndarray, estimates: np.ndarray, win: int, hop: int) -> np.ndarray:
    """Scale-invariant SDR per source and frame, [J, frames] in dB.

    alpha = <s, s_hat> / ||s||^2, SI-SDR = 10 log10(||alpha s||^2 / ||alpha s - s_hat||^2).
    NaN where the reference frame is silent, and where the estimate is silent
    (alpha = 0 makes the ratio 0/0) - the same frames museval marks NaN.
    """
    refs = np.asarray(references, dtype=np.float64)
    ests = np.asarray(estimates, dtype=np.float64)
    slices = frame_slices(refs.shape[-1], win, hop)
    out = np.full((refs.shape[0], len(slices)), np.nan)
    for t, sl in enumerate(slices):
        s, s_hat = refs[:, sl], ests[:, sl]
        power = np.sum(s ** 2, axis=-1)
        ok = power > 0
        alpha = np.divide(np.sum(s * s_hat, axis=-1), power, out=np.zeros_like(power), where=ok)
        target = alpha[:, None] * s
        num, den = np.sum(target ** 2, axis=-1), np.sum((target - s_hat) ** 2, axis=-1)
        valid = ok & (num > 0)
        with np.errstate(divide="ignore"):
            out[valid, t] = np.where(den[valid] == 0, np.inf, 10 * np.log10(num[valid] / np.where(den[valid] == 0, 1, den[valid])))
    return out
