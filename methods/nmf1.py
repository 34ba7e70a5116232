"""``nmf1``: score-informed NMF (after Ewert & Mueller, ICASSP 2012), one mixture at a time.

V = |STFT(mixture)| is approximated by W H with multiplicative updates under the beta-divergence
(beta = 1, KL, by default). The score enters only through zeros, which multiplicative updates keep:

* one harmonic template per (voice, pitch), non-zero only in bands around its harmonics, and one
  flat onset template per (voice, pitch);
* a harmonic template may be active only inside [onset - margin, offset + margin] of that voice's
  notes of that pitch, an onset template only around those notes' onsets.

Each voice is then V_j = W H restricted to its own columns, turned into ratio masks
M_j = V_j^p / sum_k V_k^p applied to the complex mixture STFT.

Defaults were chosen on the validation split of the synthetic choir (``synth-chorales``, the
default run's three validation chorales, 8 excerpts each at J = 2 and 4; ``benchmarks/tune_nmf.py``,
table in ``results/tables/synth-chorales/nmf_tuning.csv``), never on test data: harmonic bands
+-0.5 semitone (at least +-20 Hz; 0.1 and 0.25 gave 9.7 dB, 0.5 10.4 dB, 1.0 9.0 dB, mean over J of
the median SDR), beta = 1 (KL; beta = 2 lost 0.5-1 dB), and no flat onset templates: for sung notes
there is no percussive onset to explain, and a flat template active around every onset of every
voice takes the other voices' energy (-1.6 to -2.5 dB with Ewert & Mueller's [onset - 0.2 s,
onset + 0.1 s] window). The mask power is 1.

Solver: scikit-learn's ``non_negative_factorization(init='custom', solver='mu')`` keeps the zeros
exactly (tested in ``tests/test_nmf.py``) and is available as ``solver: sklearn``. The default is
the in-house update (``solver: numpy``) because (a) it minimises D(V | W H + eps) with a fixed
floor eps, for which every update provably does not increase the divergence (sklearn clips the
model value inside the update only, so its iterates do not follow one written objective), (b) it
records the divergence after every update (the monotonicity test needs that). Speed is no reason
either way: both take about 0.1 s CPU for a 4-s SATB excerpt (scikit-learn slightly less; both timed
in ``benchmarks/bench_nmf.py``).
"""
from __future__ import annotations

import logging
import warnings

import numpy as np

from choirbench.methods._nmf_common import (
    check_inputs, clean_notes, midi_to_hz, notes_from_f0, ratio_masks)
from choirbench.registry import Method, register
from choirbench.params import NON_NEGATIVE, POSITIVE, Limit
from choirbench.methods.stft import istft, stft

log = logging.getLogger(__name__)


def beta_divergence(V: np.ndarray, Vhat: np.ndarray, beta: float) -> float:
    """D_beta(V | Vhat) summed over all entries (beta = 0: Itakura-Saito, 1: KL, 2: half squared error)."""
    V = V.astype(np.float64)
    Vhat = Vhat.astype(np.float64)
    if beta == 2:
        return float(0.5 * np.sum((V - Vhat) ** 2))
    if beta == 1:
        pos = V > 0
        return float(np.sum(V[pos] * np.log(V[pos] / Vhat[pos])) - V.sum() + Vhat.sum())
    if beta == 0:
        ratio = V / Vhat
        return float(np.sum(ratio - np.log(np.where(ratio > 0, ratio, 1.0)) - 1.0))
    return float(np.sum((V ** beta + (beta - 1) * Vhat ** beta - beta * V * Vhat ** (beta - 1))
                        / (beta * (beta - 1))))


def mu_exponent(beta: float) -> float:
    """Exponent of the multiplicative update that makes it a majorise-minimise step (Fevotte & Idier 2011)."""
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def nmf_mu(V: np.ndarray, W: np.ndarray, H: np.ndarray, *, beta: float, iterations: int, eps: float,
           track: bool = False) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Multiplicative updates of W and H for D_beta(V | W H + eps); zeros in W and H stay zero.

    With the floor ``eps`` fixed inside the model, each update is the majorise-minimise step of
    one objective, so the divergence never increases. Returns W, H and (if ``track``) the
    divergence before the first and after every W and H update.
    """
    gamma = mu_exponent(beta)
    trace: list[float] = []
    Vhat = W @ H + eps
    if track:
        trace.append(beta_divergence(V, Vhat, beta))
    for _ in range(iterations):
        for update_w in (False, True):
            if beta == 1:
                num_base, den_base = V / Vhat, None
            elif beta == 2:
                num_base, den_base = V, Vhat
            else:
                num_base, den_base = V * Vhat ** (beta - 2), Vhat ** (beta - 1)
            if update_w:
                num = num_base @ H.T
                den = np.broadcast_to(H.sum(axis=1), W.shape) if den_base is None else den_base @ H.T
                ratio = num / np.maximum(den, np.finfo(W.dtype).tiny)
                W *= ratio if gamma == 1 else ratio ** gamma
            else:
                num = W.T @ num_base
                den = W.sum(axis=0)[:, None] if den_base is None else W.T @ den_base
                ratio = num / np.maximum(den, np.finfo(H.dtype).tiny)
                H *= ratio if gamma == 1 else ratio ** gamma
            Vhat = W @ H + eps
            if track:
                trace.append(beta_divergence(V, Vhat, beta))
    return W, H, trace


def nmf_sklearn(V: np.ndarray, W: np.ndarray, H: np.ndarray, *, beta: float,
                iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """The same factorisation through scikit-learn (V^T ~ H^T W^T: its W is our H^T)."""
    from sklearn.decomposition import non_negative_factorization

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "maximum number of iterations reached" is the intent here
        Ht, Wt, _ = non_negative_factorization(
            np.ascontiguousarray(V.T), W=np.ascontiguousarray(H.T), H=np.ascontiguousarray(W.T),
            n_components=W.shape[1], init="custom", update_H=True, solver="mu", beta_loss=float(beta),
            tol=0.0, max_iter=iterations, alpha_W=0.0, alpha_H=0.0)
    return np.ascontiguousarray(Wt.T), np.ascontiguousarray(Ht.T)


def harmonic_template(freqs: np.ndarray, f0: float, *, n_harmonics: int, tolerance_semitones: float,
                      min_band_hz: float, nyquist: float, decay: float) -> np.ndarray:
    """Template [F]: amplitude 1/h^decay in a band around each harmonic h*f0 below Nyquist, zero elsewhere.

    The band is +-tolerance semitones, but never narrower than the window's main lobe (+-min_band_hz):
    a low voice's first harmonics would otherwise fall between FFT bins.
    """
    template = np.zeros(len(freqs))
    for h in range(1, n_harmonics + 1):
        centre = h * f0
        if centre >= nyquist:
            break
        half = max(centre * (2.0 ** (tolerance_semitones / 12.0) - 1.0), min_band_hz)
        band = np.abs(freqs - centre) <= half
        template[band] = np.maximum(template[band], 1.0 / h ** decay)
    return template


def frame_spans(times: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """[T] boolean: frame time inside any [start, end]."""
    inside = np.zeros(len(times), dtype=bool)
    for start, end in zip(starts, ends):
        inside |= (times >= start) & (times <= end)
    return inside


@register
class NMF1(Method):
    """Score-informed NMF with harmonic and onset templates constrained by the notes."""

    name = "nmf1"
    defaults = {
        "n_fft": 2048,
        "hop": 256,
        "iterations": 15,             # more iterations let templates soak up the other voices
        "beta": 1.0,                  # 1 = KL (paper default), 2 = squared error
        "solver": "numpy",            # numpy | sklearn (same updates; see module docstring)
        "eps": 1e-9,                  # model floor, relative to the mixture magnitude's maximum
        "harmonic_tolerance": 0.5,    # semitones either side of each harmonic (chosen on synthetic validation)
        "min_band_hz": 20.0,          # never narrower than most of the Hann main lobe (2 bins = 15.6 Hz)
        "n_harmonics": 80,
        "harmonic_decay": 1.0,        # initial amplitude 1/h^decay
        "onset_templates": False,     # E&M's flat onset templates; off: they soak up other voices (see note)
        "onset_before_s": 0.2,        # onset template active in [onset - before, onset + after]
        "onset_after_s": 0.1,
        "activation_before_s": 0.1,   # harmonic template active in [onset - before, offset + after]
        "activation_after_s": 0.2,
        "mask_power": 1.0,
        "midi_min": 24,               # template grid (notes outside it are dropped)
        "midi_max": 108,
        "notes_smooth_frames": 5,     # notes derived from F0 when the dataset has no score
        "notes_min_s": 0.06,
        "tune_from_f0": True,         # centre each (voice, pitch) template on the sung F0 (intonation)
    }
    limits = {"n_fft": POSITIVE, "hop": POSITIVE, "iterations": POSITIVE, "solver": Limit(choices=("numpy", "sklearn")),
              "eps": POSITIVE, "harmonic_tolerance": POSITIVE, "min_band_hz": NON_NEGATIVE, "n_harmonics": POSITIVE,
              "mask_power": POSITIVE, "notes_smooth_frames": POSITIVE, "notes_min_s": NON_NEGATIVE}

    def build(self, n_bins: int, n_frames: int, sr: int, notes: list[np.ndarray], duration_s: float,
              f0: np.ndarray | None = None):
        """Initial W [F, K], H [K, T] with their zero patterns, and the voice of each column.

        With ``tune_from_f0`` and an F0 track, a (voice, pitch) template sits at the median F0
        the voice sang inside its notes of that pitch (when within a semitone of the score):
        singers' intonation offsets of 10-20 cents would otherwise push harmonics out of the
        narrow bands that keep the voices apart.
        """
        p = self.params
        freqs = np.arange(n_bins) * sr / p["n_fft"]
        times = np.arange(n_frames) * p["hop"] / sr
        f0_frames = None if f0 is None else np.asarray(f0, dtype=np.float64)
        f0_times = None if f0 is None else np.arange(f0_frames.shape[-1]) * 256 / sr
        columns_w, columns_h, owner = [], [], []
        for j, voice_notes in enumerate(notes):
            voice_notes = clean_notes(voice_notes, duration_s, (p["midi_min"], p["midi_max"]))
            for midi in np.unique(voice_notes[:, 2]):
                these = voice_notes[voice_notes[:, 2] == midi]
                f0 = float(midi_to_hz(midi))
                if p["tune_from_f0"] and f0_frames is not None:
                    inside = frame_spans(f0_times, these[:, 0], these[:, 1]) & (f0_frames[j] > 0)
                    if inside.any():
                        sung = float(np.median(f0_frames[j][inside]))
                        if abs(12 * np.log2(sung / f0)) < 1.0:
                            f0 = sung
                if f0 >= sr / 2:
                    continue
                columns_w.append(harmonic_template(
                    freqs, f0, n_harmonics=p["n_harmonics"], tolerance_semitones=p["harmonic_tolerance"],
                    min_band_hz=p["min_band_hz"], nyquist=sr / 2, decay=p["harmonic_decay"]))
                columns_h.append(frame_spans(times, these[:, 0] - p["activation_before_s"],
                                             these[:, 1] + p["activation_after_s"]))
                owner.append(j)
                if p["onset_templates"]:
                    columns_w.append(np.ones(n_bins))
                    columns_h.append(frame_spans(times, these[:, 0] - p["onset_before_s"],
                                                 these[:, 0] + p["onset_after_s"]))
                    owner.append(j)
        if not columns_w:
            return np.zeros((n_bins, 0)), np.zeros((0, n_frames)), np.zeros(0, dtype=int)
        W = np.stack(columns_w, axis=1)
        H = np.stack(columns_h, axis=0).astype(np.float64)
        return W, H, np.asarray(owner)

    def decompose(self, mixture, sr, f0, notes=None, *, track: bool = False) -> dict:
        """The factorisation behind :meth:`separate`: STFT ``X``, initial and final ``W``, ``H``, the
        voice of each column (``owner``) and, with ``track``, the divergence after every update."""
        p = self.params
        mixture, f0 = check_inputs(mixture, sr, f0, self.name)
        J, N = len(f0), len(mixture)
        if notes is None:
            notes = [notes_from_f0(track_j, hop_s=256 / sr, smooth_frames=p["notes_smooth_frames"],
                                   min_note_s=p["notes_min_s"]) for track_j in f0]
        elif len(notes) != J:
            raise ValueError(f"{self.name}: {len(notes)} note lists for {J} voices")
        X = stft(mixture, p["n_fft"], p["hop"])
        V = np.abs(X).astype(np.float32)
        W0, H0, owner = self.build(V.shape[0], V.shape[1], sr, notes, N / sr, f0=f0)
        W0 = W0.astype(np.float32)
        H0 = H0.astype(np.float32)
        out = {"X": X, "V": V, "W0": W0, "H0": H0, "owner": owner, "J": J, "trace": []}
        if W0.shape[1] == 0 or not np.any(V > 0):
            out.update(W=W0, H=np.zeros_like(H0))
            return out
        # start with W H at the mixture's level (fewer iterations spent on the overall gain)
        H = H0 * np.float32(V.sum() / max(float((W0 @ H0).sum()), 1e-30))
        W = W0.copy()
        if p["solver"] == "sklearn":
            W, H = nmf_sklearn(V, W, H, beta=p["beta"], iterations=p["iterations"])
        elif p["solver"] == "numpy":
            eps = np.float32(p["eps"] * V.max())
            W, H, out["trace"] = nmf_mu(V, W, H, beta=p["beta"], iterations=p["iterations"], eps=eps,
                                        track=track)
        else:
            raise ValueError(f"{self.name}: solver must be 'numpy' or 'sklearn', got {p['solver']!r}")
        out.update(W=W, H=H)
        return out

    def masks(self, parts: dict) -> np.ndarray:
        """Ratio masks [J, F, T] from the voices' parts of W H; they sum to one where any voice may sound."""
        W, H, owner, J = parts["W"], parts["H"], parts["owner"], parts["J"]
        n_bins, n_frames = parts["V"].shape
        models = np.zeros((J, n_bins, n_frames))
        active = np.zeros((J, n_frames), dtype=bool)
        for j in range(J):
            mine = owner == j
            if np.any(mine):
                models[j] = W[:, mine] @ H[mine]
                active[j] = parts["H0"][mine].any(axis=0)
        return ratio_masks(models, self.params["mask_power"], active)

    def separate(self, mixture, sr, f0, notes=None, **kwargs):
        parts = self.decompose(mixture, sr, f0, notes)
        masks = self.masks(parts)
        return istft(masks * parts["X"][None], self.params["hop"], len(mixture)).astype(np.float32)
