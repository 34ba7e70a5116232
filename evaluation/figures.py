"""Figures: SiSEC-style box plots per J, training curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from choirbench.evaluation.aggregate import BOUNDS, per_excerpt  # noqa: E402
from choirbench.io import atomic_path  # noqa: E402

BOX_METRICS = ("SDR", "SI-SDR", "SIR", "SAR", "spec-SI-SNR", "MCD")
UNITS = {"MCD": "MCD (lower is better)"}


FAMILIES = (("bounds", ("mixture", "oracle")), ("NMF", ("nmf",)), ("U-Net", ("unet",)), ("sf", ("sf",)))
"""Method families in the figures' order, each with the id prefixes of its entries."""
FAMILY_COLOURS = {"bounds": "0.55", "NMF": "tab:green", "U-Net": "tab:blue", "sf": "tab:red", "other": "tab:purple"}
VARIANT_STYLES = ("-", "--", ":", "-.")


def save_figure(fig, path: Path) -> None:
    """Write a figure (format from the suffix) atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=Path(path).suffix.lstrip("."))
    plt.close(fig)


def family(method: str) -> str:
    """The family of a method entry, from its id: bounds, NMF, U-Net, sf, or other."""
    if method in BOUNDS:
        return "bounds"
    for name, prefixes in FAMILIES[1:]:
        if method.startswith(prefixes):
            return name
    return "other"


def figure_order(methods) -> list[str]:
    """Bounds (mixture, oracle), then the NMFs, U-Nets, sf models, others; by id within a family."""
    ranks = {name: i for i, (name, _) in enumerate(FAMILIES)}
    bounds = {"mixture": 0, "oracle": 1}
    return sorted(dict.fromkeys(methods), key=lambda m: (ranks.get(family(m), len(ranks)), bounds.get(m, 2), m))


def method_styles(methods) -> dict[str, tuple[str, str]]:
    """method -> (colour, line style): one colour per family, one line style per variant in it."""
    styles, seen = {}, {}
    for m in figure_order(methods):
        fam = family(m)
        styles[m] = (FAMILY_COLOURS[fam], VARIANT_STYLES[seen.get(fam, 0) % len(VARIANT_STYLES)])
        seen[fam] = seen.get(fam, 0) + 1
    return styles


def boxplots(table: pd.DataFrame, J: int, path: Path, title: str = "", ncols: int = 3) -> None:
    """One panel per metric (``ncols`` a row, to fit a page's width), one box per method over
    (excerpt, voice) medians, seeds pooled, in :func:`figure_order`; colour = family, line style =
    variant (see :func:`method_styles`). A panel whose axis is clipped to the methods' whiskers says
    so and writes the off-scale bounds' medians at its edge.
    """
    data = per_excerpt(table[table["J"] == J])
    methods = figure_order(data["method"])
    styles = method_styles(methods)
    metrics = [m for m in BOX_METRICS if m in set(data["metric"])]
    ncols = max(1, min(ncols, len(metrics)))
    nrows = -(-len(metrics) // ncols)
    width = max(4.0, 0.45 * len(methods) + 1.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.9 * nrows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        sub = data[data["metric"] == metric]
        values = [sub.loc[sub["method"] == m, "value"].replace([np.inf, -np.inf], np.nan).dropna() for m in methods]
        boxes = ax.boxplot(values, patch_artist=True, showfliers=False, widths=0.6,
                           medianprops={"color": "black"})
        for i, method in enumerate(methods):
            colour, style = styles[method]
            boxes["boxes"][i].set(facecolor=matplotlib.colors.to_rgba(colour, 0.35), edgecolor=colour,
                                  linestyle=style, linewidth=1.6, hatch="//" if family(method) == "bounds" else None)
            for line in (*boxes["whiskers"][2 * i:2 * i + 2], *boxes["caps"][2 * i:2 * i + 2]):
                line.set(color=colour, linestyle=style, linewidth=1.3)
        note = _clip_to_real_methods(ax, boxes, methods, values)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=45, ha="right", fontsize=9)
        ax.set_title(metric + (f"\n{note}" if note else ""), fontsize=11 if not note else 9)
        ax.set_ylabel(UNITS.get(metric, "dB"))
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    families = list(dict.fromkeys(family(m) for m in methods))
    handles = [matplotlib.patches.Patch(facecolor=matplotlib.colors.to_rgba(FAMILY_COLOURS[f], 0.35),
                                        edgecolor=FAMILY_COLOURS[f], label=f) for f in families]
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle(title or f"J = {J}", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save_figure(fig, path)


def _clip_to_real_methods(ax, boxes, methods, values) -> str:
    """Scale the axis to the real methods' whiskers when a bound dwarfs them (the mixture's SAR is
    ~150 dB, since mixture / J has no artefacts): the off-scale bounds' medians are written at the
    edge; returns a note saying what was clipped and why ("" when nothing was)."""
    def span(indices):
        ends = np.concatenate([boxes["whiskers"][2 * i + k].get_ydata() for i in indices for k in (0, 1)])
        return float(ends.min()), float(ends.max())

    filled = [i for i in range(len(methods)) if len(values[i])]
    real = [i for i in filled if methods[i] not in BOUNDS]
    if not real:
        return ""
    (real_lo, real_hi), (all_lo, all_hi) = span(real), span(filled)
    if all_hi - all_lo <= 3 * (real_hi - real_lo) + 1e-9:
        return ""
    pad = 0.08 * (real_hi - real_lo or 1.0)
    bottom, top = real_lo - pad, real_hi + pad
    ax.set_ylim(bottom, top)
    clipped = []
    for i in filled:
        median = float(np.median(values[i]))
        if methods[i] in BOUNDS and not bottom <= median <= top:
            above = median > top
            clipped.append(f"{methods[i]} (median {median:.0f})")
            ax.annotate(f"{median:.0f} \u2191" if above else f"{median:.0f} \u2193", (i + 1, top if above else bottom),
                        ha="center", va="top" if above else "bottom", fontsize=8, color="0.25")
    return ("axis clipped to the methods' whiskers (bounds far outside);\noff scale: "
            + (", ".join(clipped) or "bound whiskers"))


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
    save_figure(fig, path)
