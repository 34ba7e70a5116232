"""Figures: SiSEC-style box plots per J, training curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from choirbench.evaluation.aggregate import BOUNDS, method_order, per_excerpt  # noqa: E402
from choirbench.io import atomic_path  # noqa: E402

BOX_METRICS = ("SDR", "SI-SDR", "SIR", "SAR", "spec-SI-SNR", "MCD")
UNITS = {"MCD": "MCD (lower is better)"}


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=Path(path).suffix.lstrip("."))
    plt.close(fig)


def boxplots(table: pd.DataFrame, J: int, path: Path, title: str = "") -> None:
    """One panel per metric, one box per method over (excerpt, voice) medians, seeds pooled.

    The bounds (``mixture``, ``oracle``) are drawn hatched in grey so that the
    eye finds the real methods between them.
    """
    data = per_excerpt(table[table["J"] == J])
    methods = method_order(data["method"])
    metrics = [m for m in BOX_METRICS if m in set(data["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.2 + 0.55 * len(methods) * len(metrics), 4.2),
                             sharey=False, squeeze=False)
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    for ax, metric in zip(axes[0], metrics):
        sub = data[data["metric"] == metric]
        values = [sub.loc[sub["method"] == m, "value"].dropna().replace([np.inf, -np.inf], np.nan).dropna()
                  for m in methods]
        boxes = ax.boxplot(values, patch_artist=True, showfliers=False, widths=0.6,
                           medianprops={"color": "black"})
        real = 0
        for patch, method in zip(boxes["boxes"], methods):
            if method in BOUNDS:
                patch.set(facecolor="0.85", hatch="//", edgecolor="0.4")
            else:
                patch.set(facecolor=colours[real % 10], alpha=0.85)
                real += 1
        _clip_to_real_methods(ax, boxes, methods, values)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=60, ha="right", fontsize=8)
        ax.set_title(metric)
        ax.set_ylabel(UNITS.get(metric, "dB"))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or f"J = {J}")
    fig.tight_layout()
    _save(fig, path)


def _clip_to_real_methods(ax, boxes, methods, values) -> None:
    """Scale the axis to the real methods' whiskers when a bound dwarfs them (the mixture's SAR is
    ~150 dB, since mixture / J has no artefacts); the bound's median is written at the edge."""
    def span(indices):
        ends = np.concatenate([boxes["whiskers"][2 * i + k].get_ydata() for i in indices for k in (0, 1)])
        return float(ends.min()), float(ends.max())

    filled = [i for i in range(len(methods)) if len(values[i])]
    real = [i for i in filled if methods[i] not in BOUNDS]
    if not real:
        return
    (real_lo, real_hi), (all_lo, all_hi) = span(real), span(filled)
    if all_hi - all_lo <= 3 * (real_hi - real_lo) + 1e-9:
        return
    pad = 0.08 * (real_hi - real_lo or 1.0)
    bottom, top = real_lo - pad, real_hi + pad
    ax.set_ylim(bottom, top)
    for i in filled:
        median = float(np.median(values[i]))
        if methods[i] in BOUNDS and not bottom <= median <= top:
            above = median > top
            ax.annotate(f"{median:.0f} dB", (i + 1, top if above else bottom), ha="center",
                        va="top" if above else "bottom", fontsize=7, color="0.3")


def training_curves(logs: dict[str, Path], path: Path) -> None:
    """Train and validation loss per run (label "method seedN" -> train_log.csv), one panel per
    model family (the method id up to its first dash), since their losses are not comparable."""
    families = sorted({label.split("-")[0] for label in logs}) or ["(no trained method)"]
    fig, axes = plt.subplots(1, len(families), figsize=(5.5 * len(families), 4.2), squeeze=False)
    colours = plt.cm.tab20(np.linspace(0, 1, 20))
    for ax, family in zip(axes[0], families):
        runs = sorted(label for label in logs if label.split("-")[0] == family)
        for i, label in enumerate(runs):
            frame = pd.read_csv(logs[label])
            train = frame[frame["split"] == "train"]
            valid = frame[frame["split"] == "valid"]
            smooth = train["loss"].rolling(max(1, len(train) // 50), min_periods=1).mean()
            ax.plot(train["step"], smooth, color=colours[i % 20], alpha=0.6, lw=1)
            ax.plot(valid["step"], valid["loss"], "o-", color=colours[i % 20], ms=3, lw=1.5, label=label)
        ax.set_yscale("log")
        ax.set_title(family)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if runs:
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("loss (line: train, smoothed; dots: validation)")
    fig.tight_layout()
    _save(fig, path)
