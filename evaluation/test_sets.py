"""The source-filter model's lead over its baselines on each test set of a run.

A run trains on one dataset and tests on its test split; ``test_sets`` in the config adds other
datasets whose test split the same trained models separate (e.g. the same chorales sung through a
vocal tract that is not all-pole, issue 14 item 4, or a real choir). This module writes the short
table that says whether "sf beats nmf2 / the U-Net" survives the change of test set: for each sf
entry and each baseline entry, the gap ``sf - baseline`` in dB of the median score at one J.

The median is the tables' main one (:func:`choirbench.evaluation.aggregate.summary`): per
(excerpt, voice) the median over 1-s frames, then the median over (excerpt, voice) pairs (voice
``all``), averaged over training seeds. Each test set is read from the ``dataset`` column of the
metric tables (``choirbench evaluate --dataset``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from choirbench import ChoirbenchError
from choirbench.evaluation.aggregate import summary
from choirbench.io import write_csv, write_text

GAP_METRICS = ("SI-SDR", "SDR")
COLUMNS = ["test_set", "sf", "baseline", "J", "metric", "sf_median", "baseline_median", "gap_db", "n_excerpts"]


def gap_table(table: pd.DataFrame, sf: list[str], baselines: list[str], J: int = 4,
              metrics: tuple[str, ...] = GAP_METRICS) -> pd.DataFrame:
    """Long table: one row per (test set, sf entry, baseline entry, metric) at ``J`` voices.

    ``table``: the long metric table (choirbench.evaluation.evaluate) of every method on every test
    set, told apart by its ``dataset`` column. ``gap_db`` = sf median - baseline median (dB; > 0: sf
    ahead); ``n_excerpts`` is the sf entry's. A method absent from a test set gives NaN there.
    Raises ChoirbenchError when the table has no row at ``J`` or lacks one of ``metrics``.
    """
    table = table[(table["J"] == J) & table["metric"].isin(metrics)]
    if table.empty:
        raise ChoirbenchError(f"the metric tables have no {'/'.join(metrics)} score at J = {J}")
    missing = set(metrics) - set(table["metric"])
    if missing:
        raise ChoirbenchError(f"the metric tables lack {', '.join(sorted(missing))} at J = {J}")
    stats = summary(table)
    stats = stats[stats["voice"] == "all"].set_index(["dataset", "method", "metric"])
    rows = []
    for test_set in dict.fromkeys(table["dataset"]):
        for a in sf:
            for b in baselines:
                for metric in metrics:
                    mine = stats["mean"].get((test_set, a, metric), np.nan)
                    theirs = stats["mean"].get((test_set, b, metric), np.nan)
                    n = stats["n_excerpts"].get((test_set, a, metric), 0)
                    rows.append([test_set, a, b, J, metric, mine, theirs, mine - theirs, int(n)])
    return pd.DataFrame(rows, columns=COLUMNS)


def _number(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:+.2f}"


def gaps_markdown(gaps: pd.DataFrame, main: str) -> str:
    """One row per (sf entry, baseline), one column per (test set, metric): the gap in dB."""
    test_sets = list(dict.fromkeys(gaps["test_set"]))
    metrics = list(dict.fromkeys(gaps["metric"]))
    J = int(gaps["J"].iloc[0])
    wide = gaps.pivot_table(index=["sf", "baseline"], columns=["test_set", "metric"], values="gap_db",
                            sort=False, dropna=False)
    header = ["sf entry", "baseline"] + [f"{m} {t}" for t in test_sets for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for (a, b), row in wide.iterrows():
        cells = [_number(row.get((t, m), np.nan)) for t in test_sets for m in metrics]
        lines.append("| " + " | ".join([a, b, *cells]) + " |")
    counts = gaps.groupby("test_set", sort=False)["n_excerpts"].max()
    excerpts = ", ".join(f"{t}: {int(counts[t])}" for t in test_sets)
    others = [t for t in test_sets if t != main]
    return (f"**Gap of the source-filter model over its baselines on each test set, J = {J}: "
            f"median sf - median baseline, dB (> 0: sf ahead). Median over 1-s frames, then over "
            f"(excerpt, voice) pairs, mean over seeds.** Models trained on {main}; "
            f"{', '.join(others) or 'no other test set'}: the same models, no retraining. "
            f"Excerpts: {excerpts}.\n\n" + "\n".join(lines) + "\n")


def write_gaps(metric_tables: list[Path], sf: list[str], baselines: list[str], out_stem: Path, main: str,
               J: int = 4) -> list[Path]:
    """Write ``{out_stem}.csv`` (long, :func:`gap_table`) and ``{out_stem}.md``; return the paths.
    Raises ChoirbenchError for missing tables, no sf entry or no baseline."""
    from choirbench.evaluation.aggregate import read_tables

    if not sf or not baselines:
        raise ChoirbenchError("test-set gaps need at least one sf entry (--sf) and one baseline (--baselines)")
    gaps = gap_table(read_tables([Path(p) for p in metric_tables]), sf, baselines, J)
    out_stem = Path(out_stem)
    csv, md = out_stem.with_suffix(".csv"), out_stem.with_suffix(".md")
    write_csv(csv, gaps.round(4))
    write_text(md, gaps_markdown(gaps, main))
    return [csv, md]
