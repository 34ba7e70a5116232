"""Finding 5, robustness to F0 errors: the long table, its summary, the curves, the breaking points.

Schulze-Forster et al. (TASLP 2023) plot the median SI-SDR of their models against the size of
an F0 error given at test time. Here every F0-informed method entry separates the robustness
excerpts once per corruption (see :mod:`choirbench.data_prep.f0_corruption`); its metric table
lies at ``.../{method}/{corruption label}/J4.parquet`` (the folder names carry the corruption).
The uncorrupted point (error size 0) and the reference lines (``mixture``, ``oracle``, which do
not read the F0) come from the main run's tables of the same excerpts and seed.

Statistic: the SiSEC median over frames, then over (excerpt, voice) pairs
(:func:`choirbench.evaluation.aggregate.per_seed`, voice ``all``), for one seed.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from choirbench import ChoirbenchError  # noqa: E402
from choirbench.data_prep.f0_corruption import KINDS, parse_corruption  # noqa: E402
from choirbench.evaluation.aggregate import BOUNDS, method_order, per_seed, read_tables  # noqa: E402
from choirbench.evaluation.tables import to_markdown  # noqa: E402
from choirbench.io import atomic_path, write_csv, write_text  # noqa: E402

CURVE_METRIC = "SI-SDR"
AXIS_LABELS = {
    "offset_hz": "F0 offset (Hz)",
    "offset_cents": "F0 offset (cents)",
    "octave": "octave error (octaves)",
    "missing": "share of voiced frames without F0",
    "voicing": "share of frames with flipped voicing",
}
LONG_COLUMNS = ["dataset", "method", "seed", "J", "corruption", "kind", "size", "share", "example_id", "voice",
                "frame", "metric", "value"]


def read_robustness_tables(paths: list[Path], references: list[Path], examples_csv: Path) -> pd.DataFrame:
    """The long table (:data:`LONG_COLUMNS`): every corrupted run plus the uncorrupted rows
    (``corruption`` = ``none``) of the same excerpts from the main run's tables.

    ``paths``: ``.../{method}/{corruption label}/J*.parquet``; ``references``: the main run's
    tables of the same J and seed (every F0-informed method, plus ``mixture`` and ``oracle``).
    Raises ChoirbenchError when a table is missing, a folder name is not a corruption, a table's
    method disagrees with its folder, or a reference lacks some of the excerpts.
    """
    if not Path(examples_csv).is_file():
        raise ChoirbenchError(f"{examples_csv}: excerpt list not found")
    example_ids = set(pd.read_csv(examples_csv, dtype={"example_id": str})["example_id"])
    chunks = []
    for path in map(Path, paths):
        table = read_tables([path])
        corruption = parse_corruption(path.parent.name)
        methods = set(table["method"])
        if methods != {path.parent.parent.name}:
            raise ChoirbenchError(f"{path}: holds method(s) {sorted(methods)}, its folder says "
                                  f"{path.parent.parent.name!r}")
        if set(table["example_id"].astype(str)) != example_ids:
            raise ChoirbenchError(f"{path}: scores other excerpts than {examples_csv}")
        chunks.append(table.assign(corruption=corruption.spec, kind=corruption.kind, size=corruption.size,
                                   share=corruption.share if corruption.kind == "octave" else np.nan))
    clean = read_tables(list(map(Path, references)))
    clean = clean[clean["example_id"].astype(str).isin(example_ids)]
    if chunks:  # the corrupted runs may score fewer metrics (robustness.metrics): keep the same ones
        clean = clean[clean["metric"].isin(set().union(*(c["metric"] for c in chunks)))]
    for method, rows in clean.groupby("method"):
        if set(rows["example_id"].astype(str)) != example_ids:
            raise ChoirbenchError(f"the main run's tables of {method!r} lack some robustness excerpts "
                                  f"({len(example_ids - set(rows['example_id']))} missing)")
    chunks.append(clean.assign(corruption="none", kind="none", size=0.0, share=np.nan))
    table = pd.concat(chunks, ignore_index=True)
    seeds = set(table["seed"])
    if len(seeds) != 1:
        raise ChoirbenchError(f"robustness tables mix seeds {sorted(seeds)}; the study uses one seed")
    return table[LONG_COLUMNS]


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Median per (method, corruption, metric) over (excerpt, voice) frame medians, with counts."""
    rows = []
    for (corruption, kind, size, share), part in table.groupby(["corruption", "kind", "size", "share"],
                                                               dropna=False, sort=False):
        stats = per_seed(part)
        stats = stats[stats["voice"] == "all"].drop(columns="voice").rename(columns={"value": "median"})
        counts = part.groupby(["method", "metric"])["value"].agg(
            frames="size", nan_frames=lambda v: int(v.isna().sum())).reset_index()
        n_ex = part.groupby("method")["example_id"].nunique().rename("n_excerpts").reset_index()
        rows.append(stats.merge(counts, on=["method", "metric"]).merge(n_ex, on="method")
                    .assign(corruption=corruption, kind=kind, size=size, share=share))
    out = pd.concat(rows, ignore_index=True)
    order = {m: i for i, m in enumerate(method_order(out["method"]))}
    out = out.assign(_k=out["kind"].map(KINDS.index), _m=out["method"].map(order))
    out = out.sort_values(["metric", "_m", "_k", "share", "size"]).drop(columns=["_k", "_m"])
    return out[["dataset", "method", "seed", "J", "kind", "corruption", "size", "share", "metric", "median",
                "n_excerpts", "frames", "nan_frames"]].reset_index(drop=True)


def curves(summary: pd.DataFrame, kind: str, metric: str = CURVE_METRIC) -> dict[float, pd.DataFrame]:
    """The curve data of one kind: {octave share (NaN for other kinds): frame[method x size]},
    the uncorrupted value at size 0 of every curve."""
    sub = summary[summary["metric"] == metric]
    clean = sub[sub["kind"] == "none"]
    rows = sub[sub["kind"] == kind]
    informed = list(dict.fromkeys(rows["method"]))
    out = {}
    for share, part in rows.groupby("share", dropna=False):
        both = pd.concat([part, clean[clean["method"].isin(informed)]])
        out[share] = both.pivot_table(index="method", columns="size", values="median", aggfunc="first") \
            .reindex([m for m in method_order(both["method"]) if m not in BOUNDS])
    return out


def breaking_points(summary: pd.DataFrame, baselines: list[str], metric: str = CURVE_METRIC) -> pd.DataFrame:
    """Where each method stops beating the NMF baselines, per kind and direction of the error.

    Walking the grid away from size 0 (negative and positive sizes separately), the first size at
    which the method's median is no longer above the best baseline's median, against the baselines
    (a) given the same F0 errors and (b) given the true F0. ``stops_at`` is NaN when the method
    stays above on the whole grid (then ``grid_end`` is the last size tried); ``beats_at_zero``
    says whether it was above them at all with the true F0.
    """
    sub = summary[summary["metric"] == metric]
    base = [b for b in baselines if b in set(sub["method"])]
    columns = ["method", "kind", "share", "direction", "against", "beats_at_zero", "stops_at", "grid_end"]
    if not base:
        return pd.DataFrame(columns=columns)
    median = sub.set_index(["method", "corruption"])["median"].to_dict()

    def best_baseline(corruption: str) -> float:
        values = [median[(b, corruption)] for b in base if (b, corruption) in median]
        return max(values) if values else np.nan

    clean_best = best_baseline("none")
    rows = []
    for (kind, share), part in sub[sub["kind"] != "none"].groupby(["kind", "share"], dropna=False):
        grid = part.drop_duplicates("corruption")[["corruption", "size"]]
        for method in method_order(part["method"]):
            if method in base or method in BOUNDS or (method, "none") not in median:
                continue
            beats_at_zero = bool(median[(method, "none")] > clean_best)
            for direction, side in (("-", grid[grid["size"] < 0]), ("+", grid[grid["size"] > 0])):
                if side.empty:
                    continue
                side = side.reindex(side["size"].abs().sort_values().index)
                for against in ("same F0 errors", "true F0"):
                    bests = [best_baseline(c) if against == "same F0 errors" else clean_best
                             for c in side["corruption"]]
                    if not np.all(np.isfinite(bests)):  # a baseline not run with these errors: no verdict
                        continue
                    below = [not median.get((method, c), np.nan) > b for c, b in zip(side["corruption"], bests)]
                    stops = float(side["size"].iloc[below.index(True)]) if any(below) else np.nan
                    rows.append([method, kind, share, direction, against, beats_at_zero, stops,
                                 float(side["size"].iloc[-1])])
    return pd.DataFrame(rows, columns=columns)


def plot_curves(summary: pd.DataFrame, kind: str, path: Path, title: str = "", metric: str = CURVE_METRIC) -> None:
    """Median ``metric`` against error size, one line per F0-informed method, one panel per octave
    share; the bounds (``mixture``, ``oracle``), which do not read the F0, as horizontal lines."""
    data = curves(summary, kind, metric)
    if not data:
        raise ChoirbenchError(f"no {kind} corruption in the robustness tables")
    bounds = summary[(summary["metric"] == metric) & (summary["kind"] == "none")
                     & summary["method"].isin(BOUNDS)].set_index("method")["median"]
    fig, axes = plt.subplots(1, len(data), figsize=(5.5 * len(data) + 2.0, 4.2), squeeze=False, sharey=True)
    colours = plt.cm.tab20(np.linspace(0, 1, 20))
    for ax, (share, frame) in zip(axes[0], sorted(data.items(), key=lambda kv: np.nan_to_num(kv[0]))):
        for i, (method, row) in enumerate(frame.iterrows()):
            row = row.dropna()
            ax.plot(row.index, row.values, marker="o", ms=3.5, lw=1.4, color=colours[i % 20], label=method,
                    ls="--" if method.startswith("nmf") else "-")
        for method, style in (("oracle", ":"), ("mixture", "-.")):
            if method in bounds:
                ax.axhline(bounds[method], color="0.35", ls=style, lw=1.2, label=f"{method} (no F0)")
        ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
        ax.set_xlabel(AXIS_LABELS[kind])
        ax.set_title(f"on {_percent(share)} of the voiced frames" if kind == "octave" else "")
        if kind == "octave":
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"median {metric} (dB)")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def _fmt(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.1f}"


def _percent(share: float) -> str:
    return f"{100 * share:g} %"


def _size(kind: str, size: float) -> str:
    return f"{size:+g}" if kind in ("offset_hz", "offset_cents", "octave") else f"{size:g}"


def to_markdown_report(summary: pd.DataFrame, breaks: pd.DataFrame, dataset: str, metric: str = CURVE_METRIC) -> str:
    """The summary (one table per kind) and the breaking points, with what they rest on."""
    sub = summary[summary["metric"] == metric]
    n_ex = int(sub["n_excerpts"].max())
    lines = [f"# Robustness to F0 errors: {dataset}", "",
             f"Median {metric} (dB) over (excerpt, voice) frame medians, J = {int(sub['J'].iloc[0])}, "
             f"{n_ex} test excerpts, seed {int(sub['seed'].iloc[0])}; the F0 of every voice corrupted at test "
             "time only (choirbench.data_prep.f0_corruption). Column 0 is the true F0.", ""]
    bounds = sub[(sub["kind"] == "none") & sub["method"].isin(BOUNDS)].set_index("method")["median"]
    if len(bounds):
        lines += ["References (they do not read the F0): " + ", ".join(
            f"{m} {_fmt(v)} dB" for m, v in bounds.reindex(method_order(bounds.index)).items()), ""]
    for kind in [k for k in KINDS if k in set(sub["kind"]) and k != "none"]:
        for share, frame in sorted(curves(summary, kind, metric).items(), key=lambda kv: np.nan_to_num(kv[0])):
            head = AXIS_LABELS[kind] + (f", on {_percent(share)} of the voiced frames" if kind == "octave" else "")
            table = frame.reset_index().rename(columns={s: ("0" if s == 0 else _size(kind, s)) for s in frame.columns})
            for col in table.columns[1:]:
                table[col] = table[col].map(_fmt)
            lines += [f"## {head}", "", to_markdown(table)]
    nan = sub[sub["nan_frames"] > 0]
    if len(nan):
        lines += [f"NaN (silent) frame scores skipped: {int(nan['nan_frames'].sum())} of "
                  f"{int(sub['frames'].sum())} {metric} frames.", ""]
    lines += ["## Where each method stops beating the NMF baselines", ""]
    if breaks.empty:
        lines += ["Nothing to compare: this run has no NMF baseline or no other F0-informed method.", ""]
    else:
        def stops(kind, zero, size, end):
            if not zero:
                return "not even at 0"
            return f"beyond {_size(kind, end)}" if not np.isfinite(size) else _size(kind, size)

        shown = breaks.assign(
            kind=[k + (f" on {_percent(s)}" if k == "octave" else "") for k, s in zip(breaks["kind"], breaks["share"])],
            column=[f"{a}, {d}" for a, d in zip(breaks["against"], breaks["direction"])],
            stops_at=[stops(*r) for r in zip(breaks["kind"], breaks["beats_at_zero"], breaks["stops_at"],
                                             breaks["grid_end"])])
        wide = shown.pivot_table(index=["method", "kind"], columns="column", values="stops_at", aggfunc="first",
                                 sort=False).fillna("")
        columns = [c for c in ("same F0 errors, -", "same F0 errors, +", "true F0, -", "true F0, +") if c in wide]
        wide = wide[columns].reset_index()
        wide["_m"] = wide["method"].map({m: i for i, m in enumerate(method_order(wide["method"]))})
        wide["_k"] = [KINDS.index(k.split(" ")[0]) for k in wide["kind"]]
        wide = wide.sort_values(["_m", "_k"], kind="stable").drop(columns=["_m", "_k"])
        lines += ["First error size, walking away from 0 (- and + separately), at which the method's median is no "
                  "longer above the better NMF baseline's, the baselines given the same F0 errors or the true F0.",
                  "", to_markdown(wide)]
    return "\n".join(lines)


def write_robustness(paths: list[Path], references: list[Path], examples_csv: Path, baselines: list[str],
                     tables_dir: Path, figures_dir: Path, dataset: str) -> list[Path]:
    """Write ``robustness.csv`` (long), ``robustness_summary.csv``, ``robustness_breaking.csv``,
    ``robustness.md`` under ``tables_dir`` and ``robustness_{kind}.png`` under ``figures_dir``."""
    table = read_robustness_tables(paths, references, examples_csv)
    summary = summarise(table)
    breaks = breaking_points(summary, baselines)
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    written = [tables_dir / "robustness.csv", tables_dir / "robustness_summary.csv",
               tables_dir / "robustness_breaking.csv", tables_dir / "robustness.md"]
    write_csv(written[0], table)
    write_csv(written[1], summary)
    write_csv(written[2], breaks)
    write_text(written[3], to_markdown_report(summary, breaks, dataset))
    for kind in [k for k in KINDS if k in set(summary["kind"]) and k != "none"]:
        path = figures_dir / f"robustness_{kind}.png"
        plot_curves(summary, kind, path, title=f"{dataset}: robustness to F0 errors "
                    f"(J = {int(table['J'].iloc[0])}, {table['example_id'].nunique()} excerpts)")
        written.append(path)
    return written


__all__ = ["LONG_COLUMNS", "breaking_points", "curves", "plot_curves", "read_robustness_tables", "summarise",
           "to_markdown_report", "write_robustness"]
