"""Aggregation of the long results table.

Two summaries of one (method, seed, J, metric), both reported:

* SiSEC median of medians: median over the 1-s frames of each (excerpt, voice),
  then over excerpts (per voice) or over (excerpt, voice) pairs (voice ``all``);
* the paper's pooled median: one median over every (excerpt, voice, frame) row
  (Schulze-Forster et al. 2023; the authors' ``eval.py`` takes the median of all rows).

Both skip NaN frames (silent references, see choirbench.evaluation.metrics); over
seeds, the mean and standard deviation of either.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from choirbench import PARTS, ChoirbenchError

BOUNDS = ("mixture", "oracle")
FRAME_KEYS = ["dataset", "J", "example_id", "voice", "frame", "metric"]
"""What identifies one scored frame across methods and seeds."""


def read_tables(paths: list[Path]) -> pd.DataFrame:
    if not paths:
        raise ChoirbenchError("no metric tables given")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise ChoirbenchError(f"metric tables not found: {', '.join(missing)}")
    table = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    keys = ["method", "seed", *FRAME_KEYS]
    missing_cols = set(keys + ["value"]) - set(table.columns)
    if missing_cols:
        raise ChoirbenchError(f"metric tables lack columns {', '.join(sorted(missing_cols))}")
    dup = table.duplicated(keys)
    if dup.any():
        first = table.loc[dup.idxmax()]
        raise ChoirbenchError(f"metric tables score {first['method']} seed {first['seed']} J={first['J']} twice "
                              "(the same table given twice?)")
    return table


def per_excerpt(table: pd.DataFrame) -> pd.DataFrame:
    """Median over the frames of each (method, seed, J, excerpt, voice, metric); NaN frames skipped."""
    keys = ["dataset", "method", "seed", "J", "example_id", "voice", "metric"]
    return table.groupby(keys, sort=False)["value"].median().reset_index()


def per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """SiSEC: median over excerpts per voice and over (excerpt, voice) pairs as voice ``all``."""
    excerpts = per_excerpt(table)
    keys = ["dataset", "method", "seed", "J", "metric"]
    by_voice = excerpts.groupby(keys + ["voice"])["value"].median().reset_index()
    overall = excerpts.groupby(keys)["value"].median().reset_index().assign(voice="all")
    return pd.concat([by_voice, overall], ignore_index=True)


def pooled_per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's pooled median: one median over all (excerpt, frame) rows per voice, and over all
    (excerpt, voice, frame) rows as voice ``all``."""
    keys = ["dataset", "method", "seed", "J", "metric"]
    by_voice = table.groupby(keys + ["voice"])["value"].median().reset_index()
    overall = table.groupby(keys)["value"].median().reset_index().assign(voice="all")
    return pd.concat([by_voice, overall], ignore_index=True)


def nan_counts(table: pd.DataFrame) -> pd.DataFrame:
    """NaN frame scores per (method, J, metric): counted and reported, never hidden."""
    grouped = table.groupby(["dataset", "method", "J", "metric"])["value"]
    return pd.DataFrame({"nan_frames": grouped.apply(lambda v: int(v.isna().sum())),
                         "frames": grouped.size()}).reset_index()


def _over_seeds(values: pd.Series) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method, J, metric, voice): SiSEC ``mean``/``std`` over seeds, the pooled
    median's ``pooled_mean``/``pooled_std`` over seeds, seeds, excerpts and NaN frames."""
    keys = ["dataset", "method", "J", "metric", "voice"]
    sisec = (per_seed(table).groupby(keys)["value"]
             .agg(mean="mean", std=_over_seeds, n_seeds="count").reset_index())
    pooled = (pooled_per_seed(table).groupby(keys)["value"]
              .agg(pooled_mean="mean", pooled_std=_over_seeds).reset_index())
    out = sisec.merge(pooled, on=keys)
    n_excerpts = table.groupby(["dataset", "method", "J"])["example_id"].nunique().rename("n_excerpts")
    out = out.merge(n_excerpts.reset_index(), on=["dataset", "method", "J"])
    return out.merge(nan_counts(table), on=["dataset", "method", "J", "metric"])


def shared_frames(table: pd.DataFrame, methods) -> pd.DataFrame:
    """The rows of ``methods`` restricted to the frames every one of them (every seed) scored.

    A frame (dataset, J, excerpt, voice, frame index, metric) is kept only when each run of each
    method has a non-NaN value there, so that compared methods are judged on the same frames.
    """
    methods = list(dict.fromkeys(methods))
    sub = table[table["method"].isin(methods)]
    runs = sub[["method", "seed"]].drop_duplicates()
    finite = sub[sub["value"].notna()]
    counts = finite.groupby(FRAME_KEYS, sort=False).size()
    keep = counts[counts == len(runs)].index
    return sub[pd.MultiIndex.from_frame(sub[FRAME_KEYS]).isin(keep)]


class PairedScores:
    """Per (excerpt, voice): each run's median over the frames that all compared methods share.

    Built on one pivot of the long table per (metric, J) (rows: dataset, excerpt, voice, frame;
    columns: method, seed), so that many comparisons on one table stay cheap. The frame rule is
    :func:`shared_frames`'.
    """

    def __init__(self, table: pd.DataFrame):
        self.table = table
        self._wide: dict[tuple[str, int], pd.DataFrame] = {}

    def wide(self, metric: str, J: int) -> pd.DataFrame:
        key = (metric, int(J))
        if key not in self._wide:
            sub = self.table[(self.table["metric"] == metric) & (self.table["J"] == J)]
            index = ["dataset", "example_id", "voice", "frame", "method", "seed"]
            self._wide[key] = sub.set_index(index)["value"].unstack(["method", "seed"])
        return self._wide[key]

    def by_seed(self, methods, metric: str, J: int) -> pd.DataFrame:
        """Columns (method, seed); rows (dataset, example_id, voice); empty when a method is missing."""
        methods = list(dict.fromkeys(methods))
        wide = self.wide(metric, J)
        if wide.empty or not set(methods) <= set(wide.columns.get_level_values("method")):
            return pd.DataFrame()
        sub = wide.loc[:, wide.columns.get_level_values("method").isin(methods)]
        sub = sub[sub.notna().all(axis=1)]
        return sub.groupby(level=["dataset", "example_id", "voice"]).median()

    def seed_mean(self, methods, metric: str, J: int) -> pd.DataFrame:
        """One column per method: :meth:`by_seed` averaged over each method's seeds."""
        by_seed = self.by_seed(methods, metric, J)
        if by_seed.empty:
            return pd.DataFrame(columns=list(dict.fromkeys(methods)))
        return by_seed.T.groupby(level="method").mean().T[list(dict.fromkeys(methods))]


def method_order(methods) -> list[str]:
    """Bounds first (mixture, then oracle last), the rest alphabetically in between."""
    methods = list(dict.fromkeys(methods))
    middle = sorted(m for m in methods if m not in BOUNDS)
    return [m for m in ("mixture",) if m in methods] + middle + [m for m in ("oracle",) if m in methods]


def voice_order(voices) -> list[str]:
    return [v for v in PARTS if v in set(voices)] + (["all"] if "all" in set(voices) else [])
