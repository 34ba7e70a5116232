"""SiSEC-style aggregation: median over frames, then over excerpts; mean +- std over seeds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from choirbench import PARTS, ChoirbenchError

BOUNDS = ("mixture", "oracle")


def read_tables(paths: list[Path]) -> pd.DataFrame:
    if not paths:
        raise ChoirbenchError("no metric tables given")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise ChoirbenchError(f"metric tables not found: {', '.join(missing)}")
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def per_excerpt(table: pd.DataFrame) -> pd.DataFrame:
    """Median over the frames of each (method, seed, J, excerpt, voice, metric); NaN frames skipped."""
    keys = ["dataset", "method", "seed", "J", "example_id", "voice", "metric"]
    return table.groupby(keys, sort=False)["value"].median().reset_index()


def per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """Median over excerpts per voice and over (excerpt, voice) pairs as voice ``all``."""
    excerpts = per_excerpt(table)
    keys = ["dataset", "method", "seed", "J", "metric"]
    by_voice = excerpts.groupby(keys + ["voice"])["value"].median().reset_index()
    overall = excerpts.groupby(keys)["value"].median().reset_index().assign(voice="all")
    return pd.concat([by_voice, overall], ignore_index=True)


def nan_counts(table: pd.DataFrame) -> pd.DataFrame:
    """NaN frame scores per (method, J, metric): counted and reported, never hidden."""
    grouped = table.groupby(["dataset", "method", "J", "metric"])["value"]
    return pd.DataFrame({"nan_frames": grouped.apply(lambda v: int(v.isna().sum())),
                         "frames": grouped.size()}).reset_index()


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method, J, metric, voice): mean and std over seeds."""
    seeds = per_seed(table)
    out = (seeds.groupby(["dataset", "method", "J", "metric", "voice"])["value"]
           .agg(mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, n_seeds="count")
           .reset_index())
    n_excerpts = table.groupby(["dataset", "method", "J"])["example_id"].nunique().rename("n_excerpts")
    out = out.merge(n_excerpts.reset_index(), on=["dataset", "method", "J"])
    return out.merge(nan_counts(table), on=["dataset", "method", "J", "metric"])


def method_order(methods) -> list[str]:
    """Bounds first (mixture, then oracle last), the rest alphabetically in between."""
    methods = list(dict.fromkeys(methods))
    middle = sorted(m for m in methods if m not in BOUNDS)
    return [m for m in ("mixture",) if m in methods] + middle + [m for m in ("oracle",) if m in methods]


def voice_order(voices) -> list[str]:
    return [v for v in PARTS if v in set(voices)] + (["all"] if "all" in set(voices) else [])
