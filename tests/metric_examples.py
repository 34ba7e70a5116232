"""The fixed example whose museval scores are pinned in tests/data/museval_golden.json.

Regenerate the golden file (only when museval's definition changes) with
``python tests/metric_examples.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "data" / "museval_golden.json"
SR = 16_000


def golden_example() -> tuple[np.ndarray, np.ndarray]:
    """Four 4-s 'voices' (harmonic tones + noise) and imperfect estimates with a silent second."""
    rng = np.random.default_rng(1234)
    n = 4 * SR
    t = np.arange(n) / SR
    refs = np.stack([sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 8)) + 0.05 * rng.standard_normal(n)
                     for f in (440.0, 330.0, 220.0, 110.0)])
    mix = refs.sum(0)
    ests = 0.7 * refs + 0.1 * mix + 0.02 * rng.standard_normal(refs.shape)
    ests[:, :] = np.stack([np.convolve(e, [1.0, 0.3, -0.1], mode="same") for e in ests])
    ests[2, 2 * SR: 3 * SR] = 0.0  # a silent estimate frame: NaN for every voice in that frame
    return refs, ests


def museval_scores(refs: np.ndarray, ests: np.ndarray, win: int = SR) -> dict[str, list]:
    from choirbench.evaluation.museval_ref import museval_metrics

    sdr, isr, sir, sar, _ = museval_metrics().bss_eval(refs[..., None], ests[..., None], window=win, hop=win,
                                                        compute_permutation=False, framewise_filters=False,
                                                        bsseval_sources_version=False)
    return {"SDR": sdr.tolist(), "ISR": isr.tolist(), "SIR": sir.tolist(), "SAR": sar.tolist()}


if __name__ == "__main__":
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(museval_scores(*golden_example()), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
