"""A centred, Hann-windowed STFT pair shared by the masking methods (numpy).

The inverse is exact (``istft(stft(x)) == x`` up to rounding) for hop <= n_fft / 2,
so a mask of ones returns the mixture and masks that sum to one return voices
that sum to the mixture.
"""
from __future__ import annotations

import numpy as np
import scipy.signal


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """[..., N] -> complex [..., n_fft // 2 + 1, frames]."""
    _, _, spec = scipy.signal.stft(x, nperseg=n_fft, noverlap=n_fft - hop, window="hann",
                                   boundary="even", padded=True, return_onesided=True)
    return spec


def istft(spec: np.ndarray, hop: int, length: int) -> np.ndarray:
    """Inverse of :func:`stft`, cut or padded to ``length`` samples."""
    n_fft = 2 * (spec.shape[-2] - 1)
    _, x = scipy.signal.istft(spec, nperseg=n_fft, noverlap=n_fft - hop, window="hann", boundary=True)
    if x.shape[-1] >= length:
        return x[..., :length]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])])
