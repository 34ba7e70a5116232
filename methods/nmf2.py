"""``nmf2``: F0-informed source-filter NMF (SIMM after Durrieu, David & Richard, IEEE JSTSP 2011), J voices.

The power spectrogram is modelled as a sum of J voices, each a product of a source and a filter part,

    S_X ~ sum_j (W_F0 H_F0^j) * (W_G H_G^j H_Phi^j)  [+ W_M H_M, a small free part] + eps,

* W_F0: fixed glottal-source combs, the KLGLOTT88 flow-derivative harmonics seen through the
  analysis window, on a log-F0 grid of ``steps_per_semitone`` steps (built for 16 kHz and the STFT size);
* W_G: ``n_filter_atoms`` Hann atoms on a linear frequency axis (75 % overlap); H_G^j: that voice's
  ``n_filter_shapes`` filter shapes; H_Phi^j their weights over time;
* H_F0^j is non-zero only within +-``f0_tolerance`` semitones of voice j's given F0, and zero where
  the voice is unvoiced (zeros that multiplicative updates keep).

Itakura-Saito multiplicative updates (``beta`` = 0) with the majorise-minimise exponent (1/2 for IS),
so the divergence never increases; they run until one iteration lowers the divergence by less than
``tolerance`` of its value (at most ``iterations``). Wiener masks M_j = S_j^p / sum_k S_k^p on the
complex STFT.

Defaults chosen on the validation split of the synthetic choir (``benchmarks/tune_nmf.py``, the default
run's three validation chorales, 8 excerpts each at J = 2 and 4; mean over J of the median SDR): F0
band +-0.5 semitone (0.25: -0.6 dB; 1.0: +0.05 dB for 50 % more time), K = 4 filter shapes per voice
(10: -0.1 to -0.2 dB), stopping tolerance 1e-2 (about 27 iterations; 3e-3 and 1e-3, 44 and 69
iterations, changed the SDR by less than 0.02 dB).

Only the ~(2 * f0_tolerance * steps + 1) source atoms a frame may use are gathered per voice and frame,
which keeps an iteration cheap (the full F0 grid has several hundred atoms).
"""
from __future__ import annotations

import functools
import logging

import numpy as np
import scipy.signal

from choirbench import ChoirbenchError
from choirbench.methods._nmf_common import check_inputs, f0_on_frames, ratio_masks
from choirbench.registry import Method, register
from choirbench.params import NON_NEGATIVE, POSITIVE, Limit
from choirbench.methods.nmf1 import beta_divergence, mu_exponent
from choirbench.methods.stft import istft, stft

log = logging.getLogger(__name__)


def klglott88_harmonics(n_harmonics: int, open_quotient: float) -> np.ndarray:
    """|c_h|^2, h = 1..n: power of the Fourier series of the KLGLOTT88 glottal-flow derivative.

    Over one period (u in [0, 1)) the flow derivative is 2u/Oq^2 - 3u^2/Oq^3 while the glottis is
    open (u < Oq) and 0 after; the integrals of u e^{-iwu} and u^2 e^{-iwu} have closed forms.
    """
    oq = float(open_quotient)
    w = 2.0 * np.pi * np.arange(1, n_harmonics + 1)
    e = np.exp(-1j * w * oq)
    int_u = e * (1j * oq / w + 1.0 / w ** 2) - 1.0 / w ** 2
    int_u2 = e * (1j * oq ** 2 / w + 2.0 * oq / w ** 2 - 2j / w ** 3) + 2j / w ** 3
    c = 2.0 * int_u / oq ** 2 - 3.0 * int_u2 / oq ** 3
    return np.abs(c) ** 2


@functools.lru_cache(maxsize=8)
def window_lobe(n_fft: int, oversample: int = 64) -> np.ndarray:
    """|DTFT of the periodic Hann window|^2 at offsets k / oversample bins (k >= 0), 1 at 0."""
    spectrum = np.abs(np.fft.rfft(scipy.signal.get_window("hann", n_fft), n_fft * oversample))
    return (spectrum / spectrum[0]) ** 2


@functools.lru_cache(maxsize=8)
def source_table(n_fft: int, sr: int, steps_per_semitone: int, grid_min: int, grid_max: int,
                 open_quotient: float, max_frequency_hz: float, lobe_bins: int) -> np.ndarray:
    """W_F0 [F, U] float32 for grid indices u = grid_min..grid_max, f0(u) = 440 * 2^(u / (12 * steps)).

    Each atom is sum_h |c_h|^2 |Win(f - h f0)|^2 over harmonics below ``max_frequency_hz``, kept
    within +-``lobe_bins`` bins of each harmonic, and scaled to unit sum.
    """
    n_bins = n_fft // 2 + 1
    bin_hz = sr / n_fft
    oversample = 64
    lobe = window_lobe(n_fft, oversample)
    f0s = 440.0 * 2.0 ** (np.arange(grid_min, grid_max + 1) / (12.0 * steps_per_semitone))
    top = min(max_frequency_hz, sr / 2)
    n_harm = np.floor(top / f0s).astype(int)
    powers = klglott88_harmonics(int(n_harm.max(initial=1)), open_quotient)
    atom = np.repeat(np.arange(len(f0s)), n_harm)
    harmonic = np.concatenate([np.arange(1, n + 1) for n in n_harm]) if len(f0s) else np.zeros(0, int)
    centre = harmonic * f0s[atom] / bin_hz  # fractional bin of each (atom, harmonic)
    offsets = np.arange(-lobe_bins, lobe_bins + 1)
    bins = np.rint(centre)[:, None].astype(int) + offsets[None, :]
    distance = np.abs(bins - centre[:, None])
    value = powers[harmonic - 1][:, None] * lobe[np.minimum(np.rint(distance * oversample).astype(int), len(lobe) - 1)]
    ok = (bins >= 0) & (bins < n_bins)
    flat = (np.broadcast_to(atom[:, None], bins.shape)[ok] * n_bins + bins[ok])
    table = np.bincount(flat, weights=value[ok], minlength=len(f0s) * n_bins).reshape(len(f0s), n_bins)
    table /= np.maximum(table.sum(axis=1, keepdims=True), 1e-30)
    return np.ascontiguousarray(table.T, dtype=np.float32)


def filter_atoms(n_bins: int, n_atoms: int) -> np.ndarray:
    """W_G [F, P]: Hann atoms on a linear frequency axis, 75 % overlap, centres spread over all bins."""
    spacing = (n_bins - 1) / max(n_atoms - 1, 1)
    f = np.arange(n_bins)[:, None]
    centres = np.arange(n_atoms)[None, :] * spacing
    d = (f - centres) / (2.0 * spacing)  # atom spans 4 spacings: neighbours overlap by 75 %
    return np.where(np.abs(d) < 1.0, 0.5 * (1.0 + np.cos(np.pi * d)), 0.0).astype(np.float32)


@register
class NMF2(Method):
    """Source-filter NMF with per-voice source activations held around each voice's given F0."""

    name = "nmf2"
    defaults = {
        "n_fft": 2048,
        "hop": 256,
        "iterations": 200,            # at most this many iterations (a cap: ``tolerance`` decides when to stop)
        "tolerance": 1e-2,            # stop when an iteration lowers the divergence by less than this fraction
        "beta": 0.0,                  # 0 = Itakura-Saito (paper), 1 = KL
        "update_exponent": "auto",    # "auto": majorise-minimise exponent (monotone); or a number (1 = plain MU)
        "eps": 1e-8,                  # floor of model and data, relative to the mixture power's maximum
        "steps_per_semitone": 10,     # F0 grid resolution
        "f0_tolerance": 0.5,          # semitones either side of the given F0
        "f0_min_hz": 30.0,            # grid range: F0 outside it counts as unvoiced
        "f0_max_hz": 2000.0,
        "open_quotient": 0.5,         # KLGLOTT88 open quotient of the source combs
        "max_frequency_hz": 8000.0,   # highest harmonic in the combs
        "lobe_bins": 2,               # window main lobe kept around each harmonic
        "n_filter_atoms": 30,
        "n_filter_shapes": 4,         # K (Durrieu et al.: 10); chosen on synthetic validation, see below
        "n_residual": 3,              # free components for what no voice explains (not in the masks)
        "mask_power": 1.0,            # on power spectra: 1 = Wiener
        "seed": 0,                    # filter initialisation
    }
    limits = {"n_fft": POSITIVE, "hop": POSITIVE, "iterations": POSITIVE, "update_exponent": Limit(types=(str, float)),
              "eps": POSITIVE, "steps_per_semitone": POSITIVE, "f0_tolerance": NON_NEGATIVE, "f0_min_hz": POSITIVE,
              "f0_max_hz": POSITIVE, "open_quotient": Limit(above=0, maximum=1), "max_frequency_hz": POSITIVE,
              "lobe_bins": NON_NEGATIVE, "n_filter_atoms": POSITIVE, "n_filter_shapes": POSITIVE,
              "n_residual": NON_NEGATIVE, "mask_power": POSITIVE, "seed": NON_NEGATIVE}

    def __init__(self, params: dict | None = None, *, device: str = "cpu"):
        super().__init__(params, device=device)
        p = self.params
        if not (isinstance(p["iterations"], int) and p["iterations"] >= 1):
            raise ChoirbenchError(f"methods.nmf2.params.iterations must be a whole number >= 1, got {p['iterations']!r}")
        if not 0 <= p["tolerance"] < 1:
            raise ChoirbenchError(f"methods.nmf2.params.tolerance must be in [0, 1), got {p['tolerance']!r}")

    def grid(self) -> tuple[int, int]:
        steps = 12 * self.params["steps_per_semitone"]
        return (int(np.floor(steps * np.log2(self.params["f0_min_hz"] / 440.0))),
                int(np.ceil(steps * np.log2(self.params["f0_max_hz"] / 440.0))))

    def source_gathers(self, f0_frames: np.ndarray, sr: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Per voice the atoms a frame may use, G_j [O, F, T], and the allowed pattern [J, O, T]."""
        p = self.params
        steps = 12 * p["steps_per_semitone"]
        grid_min, grid_max = self.grid()
        table = source_table(p["n_fft"], sr, p["steps_per_semitone"], grid_min, grid_max,
                             float(p["open_quotient"]), float(p["max_frequency_hz"]), p["lobe_bins"])
        reach = int(np.floor(p["f0_tolerance"] * p["steps_per_semitone"] + 1e-9))
        offsets = np.arange(-reach, reach + 1)
        J, T = f0_frames.shape
        voiced = f0_frames > 0
        in_grid = voiced & (f0_frames >= p["f0_min_hz"]) & (f0_frames <= p["f0_max_hz"])
        if np.any(voiced & ~in_grid):
            log.warning("nmf2: %d voiced frame(s) with an F0 outside the grid %g-%g Hz treated as unvoiced",
                        int(np.sum(voiced & ~in_grid)), p["f0_min_hz"], p["f0_max_hz"])
        centre = np.rint(steps * np.log2(np.where(in_grid, f0_frames, 440.0) / 440.0)).astype(int)
        index = centre[:, None, :] + offsets[None, :, None]  # [J, O, T]
        allowed = in_grid[:, None, :] & (index >= grid_min) & (index <= grid_max)
        index = np.clip(index, grid_min, grid_max) - grid_min
        table_t = table.T  # [U, F]
        gathers = [np.ascontiguousarray(table_t[index[j]].transpose(0, 2, 1)) for j in range(J)]
        for j in range(J):
            gathers[j] *= allowed[j][:, None, :]
        return gathers, allowed

    def decompose(self, mixture, sr, f0, notes=None, *, track: bool = False) -> dict:
        """Fit the model; returns the STFT ``X``, per-voice power models ``S`` [J, F, T], the source
        activations ``h`` [J, O, T] with their ``allowed`` pattern, the number of ``iterations`` run, the
        divergence after each of them (``per_iteration``, the initial value first) and (``track``) the
        divergence after every single update (``trace``)."""
        p = self.params
        mixture, f0 = check_inputs(mixture, sr, f0, self.name)
        J = len(f0)
        X = stft(mixture, p["n_fft"], p["hop"])
        V = (np.abs(X) ** 2).astype(np.float32)
        n_bins, n_frames = V.shape
        f0_frames = f0_on_frames(f0, n_frames, p["hop"], sr)
        G, allowed = self.source_gathers(f0_frames, sr)
        out = {"X": X, "J": J, "allowed": allowed, "trace": [], "iterations": 0, "per_iteration": []}
        if not allowed.any() or not np.any(V > 0):
            out.update(S=np.zeros((J, n_bins, n_frames), np.float32), h=np.zeros(allowed.shape, np.float32),
                       active=allowed.any(axis=1))
            return out
        beta = float(p["beta"])
        gamma = mu_exponent(beta) if p["update_exponent"] == "auto" else float(p["update_exponent"])
        eps = np.float32(p["eps"] * V.max())
        Vd = V + eps
        rng = np.random.default_rng(p["seed"])
        WG = filter_atoms(n_bins, p["n_filter_atoms"])
        K = p["n_filter_shapes"]
        h = allowed.astype(np.float32)
        HG = rng.uniform(0.5, 1.5, (J, p["n_filter_atoms"], K)).astype(np.float32)
        HPhi = rng.uniform(0.5, 1.5, (J, K, n_frames)).astype(np.float32)
        R = p["n_residual"]
        WM = rng.uniform(0.5, 1.5, (n_bins, R)).astype(np.float32)
        HM = rng.uniform(0.5, 1.5, (R, n_frames)).astype(np.float32)
        live = [j for j in range(J) if allowed[j].any()]

        def source(j):
            return np.einsum("oft,ot->ft", G[j], h[j])

        filters = [WG @ HG[j] for j in range(J)]
        A = {j: source(j) for j in live}
        B = {j: filters[j] @ HPhi[j] for j in live}

        def model():
            S = sum(A[j] * B[j] for j in live) + eps
            if R:
                S = S + WM @ HM
            return S

        # overall gain: start with the model at the data's level
        gain = np.float32(Vd.sum() / model().sum())
        HPhi *= gain
        HM *= gain
        B = {j: filters[j] @ HPhi[j] for j in live}
        S = model()
        trace = [beta_divergence(Vd, S, beta)] if track else []
        per_iteration = [beta_divergence(Vd, S, beta)]
        tolerance = float(p["tolerance"])

        def weights(S):
            """V * S^(beta - 2) and S^(beta - 1), the two halves of every gradient."""
            if beta == 1:
                return Vd / S, None
            if beta == 0:
                Q = 1.0 / S
                return Vd * Q * Q, Q
            return Vd * S ** (beta - 2), S ** (beta - 1)

        def step(ratio):
            if gamma == 1:
                return ratio
            return np.sqrt(ratio) if gamma == 0.5 else ratio ** gamma

        tiny = np.float32(np.finfo(np.float32).tiny)
        for _ in range(p["iterations"]):
            # source activations (all voices at once: the model is linear in their concatenation)
            P, Q = weights(S)
            for j in live:
                BP = B[j] * P
                num = np.einsum("oft,ft->ot", G[j], BP)
                den = np.einsum("oft,ft->ot", G[j], B[j] * Q) if Q is not None else np.einsum("oft,ft->ot", G[j], B[j])
                h[j] *= step(num / np.maximum(den, tiny))
            A = {j: source(j) for j in live}
            S = model()
            if track:
                trace.append(beta_divergence(Vd, S, beta))
            # filter weights over time
            P, Q = weights(S)
            for j in live:
                num = filters[j].T @ (A[j] * P)
                den = filters[j].T @ (A[j] * Q if Q is not None else A[j])
                HPhi[j] *= step(num / np.maximum(den, tiny))
            B = {j: filters[j] @ HPhi[j] for j in live}
            S = model()
            if track:
                trace.append(beta_divergence(Vd, S, beta))
            # filter shapes
            P, Q = weights(S)
            for j in live:
                num = WG.T @ ((A[j] * P) @ HPhi[j].T)
                den = WG.T @ ((A[j] * Q if Q is not None else A[j]) @ HPhi[j].T)
                HG[j] *= step(num / np.maximum(den, tiny))
                filters[j] = WG @ HG[j]
            B = {j: filters[j] @ HPhi[j] for j in live}
            S = model()
            if track:
                trace.append(beta_divergence(Vd, S, beta))
            if R:
                P, Q = weights(S)
                num_h, den_h = WM.T @ P, (WM.T @ Q if Q is not None else WM.sum(axis=0)[:, None])
                HM *= step(num_h / np.maximum(den_h, tiny))
                S = model()
                P, Q = weights(S)
                num_w, den_w = P @ HM.T, (Q @ HM.T if Q is not None else HM.sum(axis=1)[None, :])
                WM *= step(num_w / np.maximum(den_w, tiny))
                S = model()
                if track:
                    trace.append(beta_divergence(Vd, S, beta))
            # scale: filter shapes to unit peak, the scale moved into their weights (the model is unchanged)
            for j in live:
                peak = np.maximum(filters[j].max(axis=0), tiny)
                HG[j] /= peak
                filters[j] /= peak
                HPhi[j] *= peak[:, None]
            per_iteration.append(trace[-1] if track else beta_divergence(Vd, S, beta))
            if per_iteration[-2] - per_iteration[-1] <= tolerance * abs(per_iteration[-2]):
                break
        voices = np.zeros((J, n_bins, n_frames), np.float32)
        for j in live:
            voices[j] = A[j] * B[j]
        out.update(S=voices, h=h, active=allowed.any(axis=1), trace=trace, iterations=len(per_iteration) - 1,
                   per_iteration=per_iteration)
        return out

    def masks(self, parts: dict) -> np.ndarray:
        """Wiener-style masks [J, F, T] over the voices (the free part, if any, is not a voice)."""
        return ratio_masks(parts["S"].astype(np.float64), self.params["mask_power"], parts["active"])

    def reconstruct(self, parts: dict, n_samples: int) -> np.ndarray:
        """The voices [J, n_samples] from :meth:`decompose`'s output (masks on the mixture's STFT)."""
        return istft(self.masks(parts) * parts["X"][None], self.params["hop"], n_samples).astype(np.float32)

    def separate(self, mixture, sr, f0, notes=None, **kwargs):
        return self.reconstruct(self.decompose(mixture, sr, f0, notes), len(mixture))
