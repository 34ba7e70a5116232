"""The lower and upper bounds every benchmark reports beside real methods (SiSEC convention)."""
from __future__ import annotations

import numpy as np

from choirbench.registry import Method, register
from choirbench.params import POSITIVE
from choirbench.methods.stft import istft, stft


@register
class MixtureBound(Method):
    """Lower bound: every voice estimated as the mixture divided by J."""

    name = "mixture"

    def separate(self, mixture, sr, f0, notes=None, **kwargs):
        J = len(f0)
        return np.repeat(mixture[None, :] / J, J, axis=0).astype(np.float32)


@register
class OracleBound(Method):
    """Upper bound: ideal ratio masks |S_j|^p / sum_k |S_k|^p from the true voices.

    p = 2 (power-spectrogram ratios, "IRM2") by default: on the synthetic choir it is
    about 1 dB better than magnitude ratios (p = 1), i.e. the tighter upper bound.
    """

    name = "oracle"
    needs_references = True
    defaults = {"n_fft": 2048, "hop": 256, "power": 2.0}
    limits = {"n_fft": POSITIVE, "hop": POSITIVE, "power": POSITIVE}

    def separate(self, mixture, sr, f0, notes=None, *, references=None, **kwargs):
        if references is None:
            raise ValueError("the oracle needs the true voices (references=...)")
        p = self.params
        mix_spec = stft(mixture, p["n_fft"], p["hop"])
        mags = np.abs(stft(references, p["n_fft"], p["hop"])) ** p["power"]
        total = mags.sum(axis=0, keepdims=True)
        masks = np.divide(mags, total, out=np.zeros_like(mags), where=total > 0)
        return istft(masks * mix_spec[None], p["hop"], len(mixture)).astype(np.float32)
