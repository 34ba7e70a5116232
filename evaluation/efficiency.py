"""Finding 2 as a curve: separation quality against the amount of training data.

Schulze-Forster et al. (TASLP 2023, Sec. VI) find that the source-filter model trained on a few
songs comes close to the one trained on all of them, while the U-Net does not. The curve trains
each family (a ``-full`` base entry, e.g. ``sf-us-full``) on growing shares of the training songs
(whole songs, :func:`choirbench.data_prep.prepared.small_subset`) and scores each model on the
same test excerpts.

A *point* is (base entry, fraction); fraction 0 means one song (the first of the seeded song
order), 1 all songs. :func:`plan_points` maps every point to the entry whose trained model it is:
the base entry itself when the subset is every training song, an existing ``-small`` entry when
its subset is exactly the same songs (same model, knobs and training J: the same training), an
earlier point with the same songs, else the point's own new training.

Statistic: per (excerpt, voice) the median SI-SDR over 1-s frames (SiSEC), averaged over seeds;
the curve value is the median over (excerpt, voice) pairs with the percentile-bootstrap 95 %
interval of :func:`choirbench.evaluation.claims.bootstrap_median_ci`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from choirbench import ChoirbenchError  # noqa: E402
from choirbench.data_prep.prepared import read_manifest, small_subset  # noqa: E402
from choirbench.evaluation.aggregate import per_excerpt, read_tables  # noqa: E402
from choirbench.evaluation.claims import bootstrap_median_ci  # noqa: E402
from choirbench.evaluation.tables import to_markdown  # noqa: E402
from choirbench.io import atomic_path, write_csv, write_text  # noqa: E402

CURVE_METRIC = "SI-SDR"
CURVE_COLUMNS = ["family", "base", "fraction", "point", "songs", "train_minutes", "model_of", "new_training",
                 "seeds", "pairs", "median", "ci_low", "ci_high"]
FAMILY_LABELS = {"sf-us": "sf-us (unsupervised)", "sf-sv": "sf-sv (supervised)", "unet": "U-Net"}


def training_song_minutes(manifest: pd.DataFrame) -> pd.Series:
    """Minutes of audio per training song (the longest part, as ``small_subset`` counts a song)."""
    train = manifest[manifest["split"] == "train"]
    if train.empty:
        raise ChoirbenchError("the dataset has no training songs")
    return train.groupby("song")["duration_s"].max().sort_index() / 60.0


def subset_songs(manifest: pd.DataFrame, fraction: float, seed: int) -> list[str]:
    """The training songs of a share ``fraction`` (0: one song; 1 or more: every song)."""
    if fraction >= 1.0:
        return sorted(map(str, training_song_minutes(manifest).index))
    return small_subset(manifest, float(fraction), int(seed))


def plan_points(manifest: pd.DataFrame, points: list[dict]) -> list[dict]:
    """Which trained model every curve point is, from the songs each share picks.

    ``points``: dicts with ``name`` (the point's own entry name), ``base``, ``family``,
    ``fraction``, ``small_seed`` and ``candidates`` (the ``-small`` entries whose training equals
    the base's but for the songs: ``{"entry", "fraction", "seed"}``). Returns the points with
    ``songs``, ``n_songs``, ``train_minutes`` and ``model_of`` (the entry whose model and metric
    table the point uses) and ``new_training`` (whether ``model_of`` is the point itself).
    """
    minutes = training_song_minutes(manifest)
    every = sorted(map(str, minutes.index))
    planned, own = [], {}  # own: (base, songs) -> the first new point with those songs
    for point in points:
        songs = subset_songs(manifest, point["fraction"], point["small_seed"])
        key = (point["base"], tuple(songs))
        if songs == every:
            model_of = point["base"]
        else:
            model_of = next((c["entry"] for c in point["candidates"]
                             if subset_songs(manifest, c["fraction"], c["seed"]) == songs), None)
            model_of = model_of or own.setdefault(key, point["name"])
        planned.append({**{k: point[k] for k in ("name", "base", "family", "fraction")}, "songs": songs,
                        "n_songs": len(songs), "train_minutes": round(float(minutes[songs].sum()), 3),
                        "model_of": model_of, "new_training": model_of == point["name"]})
    return planned


def write_plan(data_root: Path, points: list[dict], out: Path) -> Path:
    """:func:`plan_points` on a prepared dataset's manifest, as JSON."""
    plan = plan_points(read_manifest(Path(data_root)), points)
    write_text(Path(out), json.dumps({"points": plan}, indent=2, sort_keys=True) + "\n")
    return Path(out)


def read_plan(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: data-efficiency plan not found")
    try:
        plan = json.loads(path.read_text())["points"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ChoirbenchError(f"{path}: not a data-efficiency plan ({err})") from None
    return plan


def curve_table(table: pd.DataFrame, plan: list[dict], J: int, metric: str = CURVE_METRIC) -> pd.DataFrame:
    """One row per point (:data:`CURVE_COLUMNS`) from the long metric table of every ``model_of``.

    Raises ChoirbenchError when a point's entry has no ``metric`` rows at ``J``.
    """
    scores = per_excerpt(table[(table["metric"] == metric) & (table["J"] == J)])
    rows = []
    for point in plan:
        mine = scores[scores["method"] == point["model_of"]]
        if mine.empty:
            raise ChoirbenchError(f"data efficiency: no {metric} scores of {point['model_of']!r} at J={J} "
                                  f"(point {point['name']})")
        pairs = mine.groupby(["example_id", "voice"])["value"].mean().to_numpy()  # seeds: mean per pair
        pairs = pairs[np.isfinite(pairs)]
        low, high = bootstrap_median_ci(pairs)
        rows.append({"family": point["family"], "base": point["base"], "fraction": point["fraction"],
                     "point": point["name"], "songs": point["n_songs"], "train_minutes": point["train_minutes"],
                     "model_of": point["model_of"], "new_training": point["new_training"],
                     "seeds": int(mine["seed"].nunique()), "pairs": len(pairs),
                     "median": float(np.median(pairs)) if len(pairs) else math.nan, "ci_low": low, "ci_high": high})
    frame = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    return frame.sort_values(["family", "train_minutes", "fraction"], kind="stable").reset_index(drop=True)


def curve_markdown(curve: pd.DataFrame, J: int) -> str:
    shown = curve.assign(
        fraction=[("1 song" if f == 0 else f"{100 * f:g} %") for f in curve["fraction"]],
        **{"median SI-SDR (dB) [95 % CI]": [f"{m:.2f} [{lo:.2f}, {hi:.2f}]"
                                            for m, lo, hi in zip(curve["median"], curve["ci_low"], curve["ci_high"])]},
        new_training=curve["new_training"].map({True: "yes", False: "no"}))
    shown = shown[["family", "fraction", "songs", "train_minutes", "model_of", "new_training", "seeds", "pairs",
                   "median SI-SDR (dB) [95 % CI]"]].rename(columns={"train_minutes": "training audio (min)"})
    head = (f"Data efficiency (finding 2) at J = {J}: median {CURVE_METRIC} over (excerpt, voice) pairs (per pair "
            "the median over 1-s frames, mean over seeds), percentile-bootstrap 95 % interval; `model_of` is the "
            "entry whose trained model the point is (reused unless `new_training`).\n\n")
    return head + to_markdown(shown)


def draw_curve(curve: pd.DataFrame, J: int) -> plt.Figure:
    """Median SI-SDR with its interval against training audio minutes (log x), one line per family."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for family, sub in curve.groupby("family", sort=True):
        sub = sub.drop_duplicates("train_minutes").sort_values("train_minutes")
        low = (sub["median"] - sub["ci_low"]).clip(lower=0).fillna(0)
        high = (sub["ci_high"] - sub["median"]).clip(lower=0).fillna(0)
        ax.errorbar(sub["train_minutes"], sub["median"], yerr=[low, high], marker="o", capsize=3,
                    label=FAMILY_LABELS.get(family, family))
    ax.set_xscale("log")
    ticks = sorted(set(curve["train_minutes"].round(3)))  # label the points' own minutes, not powers of ten
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("training audio (minutes, log scale)")
    ax.set_ylabel(f"median {CURVE_METRIC} (dB)")
    ax.set_title(f"Data efficiency, J = {J} (bars: bootstrap 95 % CI)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def curve_figure(curve: pd.DataFrame, out: Path, J: int) -> Path:
    """:func:`draw_curve` written to ``out`` (PNG)."""
    fig = draw_curve(curve, J)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return out


def write_curve(plan_path: Path, metrics: list[Path], J: int, tables_out: Path, figure: Path) -> list[Path]:
    """data_efficiency_curve.{csv,md} under ``tables_out`` and the figure ``figure``."""
    plan = read_plan(plan_path)
    curve = curve_table(read_tables([Path(p) for p in metrics]), plan, J)
    tables_out = Path(tables_out)
    write_csv(tables_out / "data_efficiency_curve.csv", curve)
    write_text(tables_out / "data_efficiency_curve.md", curve_markdown(curve, J))
    return [tables_out / "data_efficiency_curve.csv", tables_out / "data_efficiency_curve.md",
            curve_figure(curve, figure, J)]
