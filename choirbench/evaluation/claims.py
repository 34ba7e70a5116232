"""The paper's headline claims, checked against this run's numbers.

Each claim compares median scores (mean over seeds, all voices, per J) of two
method ids; claims whose methods did not run are skipped. The verdict is a
plain reading of the numbers, not a significance test: look at the seeds'
spread in the J tables before trusting a difference of a fraction of a dB.
"""
from __future__ import annotations

import pandas as pd

# (claim, method a, method b, kind, threshold dB): "beats" = a - b > 0; "within" = |a - b| <= threshold
CLAIMS = [
    ("source-filter (unsupervised) beats score-informed NMF", "sf-us-full", "nmf1", "beats", 0.0),
    ("source-filter (unsupervised) beats source-filter NMF", "sf-us-full", "nmf2", "beats", 0.0),
    ("with NMF2's power-ratio masks, source-filter (unsupervised) beats NMF2", "sf-us-full-wiener", "nmf2",
     "beats", 0.0),
    ("unsupervised is within 1 dB of supervised", "sf-us-full", "sf-sv-full", "within", 1.0),
    ("source-filter with 3 % of the data is within 1 dB of all data", "sf-us-small", "sf-us-full", "within", 1.0),
    ("masking beats direct synthesis", "sf-us-full", "sf-us-full-synth", "beats", 0.0),
    ("the U-Net beats the mixture by at least 3 dB", "unet-full", "mixture", "beats", 3.0),
    ("NMF1 beats the mixture by at least 5 dB", "nmf1", "mixture", "beats", 5.0),
    ("NMF2 beats the mixture by at least 5 dB", "nmf2", "mixture", "beats", 5.0),
]
DROP_CLAIM = ("the U-Net loses more than the source-filter model with 3 % of the data",
              ("unet-full", "unet-small"), ("sf-us-full", "sf-us-small"))


def check_claims(stats: pd.DataFrame, metrics=("SDR", "SI-SDR")) -> pd.DataFrame:
    """One row per (claim, J, metric): the two values, their difference and the verdict."""
    overall = stats[stats["voice"] == "all"].set_index(["method", "J", "metric"])["mean"]
    rows = []
    for J in sorted(stats["J"].unique()):
        for metric in metrics:
            def value(method):
                return overall.get((method, J, metric))
            for claim, a, b, kind, threshold in CLAIMS:
                va, vb = value(a), value(b)
                if va is None or vb is None:
                    continue
                diff = va - vb
                holds = diff > threshold if kind == "beats" else abs(diff) <= threshold
                rows.append({"claim": claim, "J": J, "metric": metric, "a": a, "b": b,
                             "a_dB": round(va, 2), "b_dB": round(vb, 2), "a_minus_b": round(diff, 2),
                             "holds": "yes" if holds else "no"})
            (unet_full, unet_small), (sf_full, sf_small) = DROP_CLAIM[1], DROP_CLAIM[2]
            values = [value(m) for m in (unet_full, unet_small, sf_full, sf_small)]
            if all(v is not None for v in values):
                unet_drop, sf_drop = values[0] - values[1], values[2] - values[3]
                rows.append({"claim": DROP_CLAIM[0], "J": J, "metric": metric, "a": "unet drop", "b": "sf drop",
                             "a_dB": round(unet_drop, 2), "b_dB": round(sf_drop, 2),
                             "a_minus_b": round(unet_drop - sf_drop, 2),
                             "holds": "yes" if unet_drop > sf_drop else "no"})
    return pd.DataFrame(rows, columns=["claim", "J", "metric", "a", "b", "a_dB", "b_dB", "a_minus_b", "holds"])
