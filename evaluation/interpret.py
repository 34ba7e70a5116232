"""The interpretability figure of the source-filter model: what it believes a voice is made of.

Reads the parameters exported by the ``sf`` method (an ``.npz`` with f0_hz,
harmonic_amplitude, noise_gain, envelope_db [J, F, L], freqs_hz, times_s) and
draws, for one voice, its spectrogram with the model's F0 (and harmonics) over
it, and the model's vocal-tract envelope with the same F0 track. Data flows
one way: this module reads files and never imports the methods package.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.signal

log = logging.getLogger(__name__)


def plot_parameters(npz_path, audio: np.ndarray, sr: int, out_png, voice: int = 0,
                    n_harmonics_drawn: int = 5) -> Path:
    """Draw voice ``voice``: spectrogram of ``audio`` (the true voice, an estimate or the mixture)
    with the model's F0 and its first harmonics, and the vocal-tract envelope (dB) with the F0."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = np.load(npz_path)
    f0 = params["f0_hz"][voice]
    env = params["envelope_db"][voice]
    times, freqs = params["times_s"], params["freqs_hz"]
    amplitude, noise = params["harmonic_amplitude"][voice], params["noise_gain"][voice]

    f, t, spec = scipy.signal.stft(np.asarray(audio, dtype=np.float64), sr, nperseg=1024, noverlap=768)
    spec_db = 20 * np.log10(np.abs(spec) + 1e-8)
    top = spec_db.max()

    voiced = np.where(f0 > 0, f0, np.nan)
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1]})
    axes[0].pcolormesh(t, f, spec_db, vmin=top - 80, vmax=top, shading="auto", cmap="magma")
    for k in range(1, n_harmonics_drawn + 1):
        axes[0].plot(times, k * voiced, color="cyan" if k == 1 else "white", lw=1.2 if k == 1 else 0.5,
                     alpha=1.0 if k == 1 else 0.6, label="model F0" if k == 1 else None)
    axes[0].set_ylabel("frequency (Hz)")
    axes[0].set_title(f"voice {voice}: spectrogram with the model's F0 (and harmonics)")
    axes[0].legend(loc="upper right")

    env_top = np.nanmax(env)
    mesh = axes[1].pcolormesh(times, freqs, env, vmin=env_top - 60, vmax=env_top, shading="auto", cmap="viridis")
    axes[1].plot(times, voiced, color="red", lw=1.2, label="model F0")
    axes[1].set_ylabel("frequency (Hz)")
    axes[1].set_title("vocal-tract envelope 20 log10 |1/A| (dB) from the line spectral frequencies")
    axes[1].legend(loc="upper right")
    fig.colorbar(mesh, ax=axes[1], pad=0.01, label="dB")

    axes[2].plot(times, amplitude, label="harmonic amplitude")
    axes[2].plot(times, noise, label="noise gain")
    axes[2].set_xlabel("time (s)")
    axes[2].legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    log.info("wrote %s", out_png)
    return out_png
