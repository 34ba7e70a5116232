"""The paper's headline claims, put to a test on this run's numbers, and what each verdict rests on.

Every claim is a contrast of method scores that it says is above a margin
("beats": a - b > m dB) or inside a tolerance ("within": |a - b| <= t dB).
For one claim, J and metric:

1. frames: only those every compared method (every seed) scored (the silence
   policy leaves NaN only where a reference is silent, see metrics.py);
2. per (excerpt, voice): each method's median over those frames, averaged over
   its seeds; the claim's contrast gives one paired difference d per (excerpt,
   voice) (sign-flipped for metrics where lower is better, e.g. MCD, so that
   d > 0 always favours the first method);
3. the median of d with a percentile-bootstrap 95 % interval
   (``scipy.stats.bootstrap``, seeded) and a Wilcoxon signed-rank p-value of the
   claim as stated (one-sided d - m > 0 for "beats"; for "within", the larger of
   the two one-sided p-values of -t < d < t, i.e. a TOST); p-values Holm-corrected
   across the rows of one J's table;
4. seeds as the second level: the median difference per training seed is
   reported beside the seed-averaged one;
5. the verdict (:func:`verdict`): ``holds`` when the interval lies beyond the
   margin in the claim's direction *and* the corrected p-value is below
   :data:`ALPHA`; ``refuted`` when the interval lies entirely on the wrong side
   of the margin; otherwise ``inconclusive``. The sign of a difference alone
   never decides.

Each row also says whether the trained models it rests on had converged
(:func:`convergence`, from ``train_log.csv``); a verdict resting on a model that
stopped at its step budget while its validation loss was still falling is
marked ``budget-limited``.
"""
from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

from choirbench import ChoirbenchError
from choirbench.params import Limit, resolve_params
from choirbench.evaluation.aggregate import PairedScores
from choirbench.evaluation.metrics import LOWER_IS_BETTER

VERDICT_DEFAULTS = {"alpha": 0.05, "bootstrap_resamples": 9999, "bootstrap_seed": 0, "plateau_tol": 0.01,
                    "last_stretch": 1 / 3}
"""The knobs of every verdict (config key ``verdicts``; these are its defaults, the only copy):
``alpha`` the significance level of the Holm-corrected p-values (and 1 - confidence of the intervals);
``bootstrap_resamples`` and ``bootstrap_seed`` of the percentile bootstrap; ``plateau_tol``: a run has
converged (plateau criterion) when a line fitted to its last stretch of validation losses drops by less
than this fraction of their mean over that stretch; ``last_stretch``: that stretch, as this share of
the validations (at least 3)."""
VERDICT_LIMITS = {"alpha": Limit(above=0, below=1), "bootstrap_resamples": Limit(minimum=99),
                  "plateau_tol": Limit(above=0), "last_stretch": Limit(above=0, maximum=1)}
ALPHA = VERDICT_DEFAULTS["alpha"]
PLATEAU_TOL = VERDICT_DEFAULTS["plateau_tol"]


def verdict_settings(given: dict | None = None, where: str = "verdicts") -> dict:
    """VERDICT_DEFAULTS updated by ``given``; an unknown key or a value out of range is a ChoirbenchError
    naming ``where.key``."""
    return resolve_params(VERDICT_DEFAULTS, given or {}, where, VERDICT_LIMITS)


DB_CAP = 1000.0
"""Scores are capped at +-this before differencing (a perfect estimate scores +inf dB)."""
CLAIM_METRICS = ("SDR", "SI-SDR")
MAGNITUDE_CLAIM_METRICS = ("spec-SNR", "spec-SI-SNR", "MCD")


@dataclass(frozen=True)
class Claim:
    """``contrast``: method id -> coefficient; d = sum(coef * score). ``kind``: "beats" (d > margin)
    or "within" (|d| <= margin). ``metrics``: the metrics it is decided on."""
    text: str
    contrast: tuple[tuple[str, float], ...]
    kind: str
    margin: float
    metrics: tuple[str, ...] = CLAIM_METRICS

    @property
    def methods(self) -> list[str]:
        return [m for m, _ in self.contrast]

    @property
    def label(self) -> str:
        terms = []
        for m, c in self.contrast:
            sign = "-" if c < 0 else "+"
            terms.append(f"{sign} {m}" if terms or c < 0 else m)
        return " ".join(terms)


def _ab(text, a, b, kind="beats", margin=0.0, metrics=CLAIM_METRICS) -> Claim:
    return Claim(text, ((a, 1.0), (b, -1.0)), kind, margin, metrics)


CLAIMS = [
    _ab("source-filter (unsupervised) beats score-informed NMF", "sf-us-full", "nmf1"),
    _ab("source-filter (unsupervised) beats source-filter NMF", "sf-us-full", "nmf2"),
    _ab("with NMF2's power-ratio masks, source-filter (unsupervised) beats NMF2", "sf-us-full-wiener", "nmf2"),
    _ab("unsupervised is within 1 dB of supervised", "sf-us-full", "sf-sv-full", "within", 1.0),
    _ab("source-filter with 3 % of the data is within 1 dB of all data", "sf-us-small", "sf-us-full",
        "within", 1.0),
    # finding 4: decided on waveform metrics and on the magnitude metrics the authors used for synthesis
    _ab("masking beats direct synthesis", "sf-us-full", "sf-us-full-synth",
        metrics=CLAIM_METRICS + MAGNITUDE_CLAIM_METRICS),
    _ab("the U-Net beats the mixture by at least 3 dB", "unet-full", "mixture", margin=3.0),
    _ab("NMF1 beats the mixture by at least 5 dB", "nmf1", "mixture", margin=5.0),
    _ab("NMF2 beats the mixture by at least 5 dB", "nmf2", "mixture", margin=5.0),
    Claim("the U-Net loses more than the source-filter model with 3 % of the data",
          (("unet-full", 1.0), ("unet-small", -1.0), ("sf-us-full", -1.0), ("sf-us-small", 1.0)), "beats", 0.0),
]

COLUMNS = ["claim", "J", "metric", "contrast", "kind", "margin", "n_pairs", "median_diff", "ci_low", "ci_high",
           "per_seed", "p_value", "p_holm", "verdict", "budget_limited", "convergence"]


# ---------------------------------------------------------------------------------------------- statistics

def bootstrap_median_ci(d: np.ndarray, confidence: float = 1 - ALPHA,
                        n_resamples: int = VERDICT_DEFAULTS["bootstrap_resamples"],
                        seed: int = VERDICT_DEFAULTS["bootstrap_seed"]) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of ``d`` (scipy.stats.bootstrap, seeded).

    Fewer than two values: (nan, nan). Percentile rather than BCa, since BCa is undefined for the
    median of few tied values (its jackknife has zero spread)."""
    d = np.asarray(d, dtype=np.float64)
    if len(d) < 2:
        return math.nan, math.nan
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    rng = np.random.default_rng(seed)
    seed_arg = {"rng": rng} if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else {"random_state": rng}
    res = scipy.stats.bootstrap((d,), np.median, confidence_level=confidence, n_resamples=n_resamples,
                                method="percentile", vectorized=True, axis=-1, **seed_arg)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def signed_rank_p(x: np.ndarray, alternative: str) -> float:
    """Wilcoxon signed-rank p-value of ``x`` against 0 (zeros dropped); 1 when nothing is left."""
    x = np.asarray(x, dtype=np.float64)
    x = x[x != 0]
    if len(x) == 0:
        return 1.0
    return float(scipy.stats.wilcoxon(x, alternative=alternative).pvalue)


def claim_p_value(d: np.ndarray, kind: str, margin: float) -> float:
    """p-value of the claim as stated: "beats" d > margin; "within" -margin < d < margin (TOST)."""
    if kind == "beats":
        return signed_rank_p(d - margin, "greater")
    return max(signed_rank_p(d + margin, "greater"), signed_rank_p(d - margin, "less"))


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def verdict(kind: str, margin: float, ci_low: float, ci_high: float, p_adjusted: float,
            alpha: float = ALPHA) -> str:
    """``holds``, ``refuted`` or ``inconclusive`` from the interval of the median difference, the margin
    and the corrected p-value (see the module docstring)."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "inconclusive"
    significant = np.isfinite(p_adjusted) and p_adjusted < alpha
    if kind == "beats":
        if ci_low > margin and significant:
            return "holds"
        if ci_high < margin:
            return "refuted"
    elif kind == "within":
        if -margin <= ci_low and ci_high <= margin and significant:
            return "holds"
        if ci_low > margin or ci_high < -margin:
            return "refuted"
    else:
        raise ValueError(f"claim kind must be 'beats' or 'within', got {kind!r}")
    return "inconclusive"


# --------------------------------------------------------------------------------------------- convergence

def convergence(log_path: Path, steps: int | None = None, patience: int | None = None,
                tol: float = PLATEAU_TOL, last_stretch: float = VERDICT_DEFAULTS["last_stretch"]) -> dict:
    """What a ``train_log.csv`` (step, split, loss, lr, elapsed_s) says about how training ended.

    Returns steps_run, validations, since_best (validations after the best one), ended_by
    ("early stopping" when since_best >= patience, "step budget" when steps_run >= steps, else
    "unknown"), last_change (relative change of the validation loss over the last stretch, from a
    least-squares line; negative = still falling), converged (early stopping, or the plateau
    criterion |fall| < tol) and a one-line note. ``steps``/``patience`` are the run's settings.
    """
    path = Path(log_path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ChoirbenchError(f"{path}: not a readable train log ({err})") from None
    missing = {"step", "split", "loss"} - set(frame.columns)
    if missing:
        raise ChoirbenchError(f"{path}: train log lacks columns {', '.join(sorted(missing))}")
    steps_run = int(frame["step"].max()) if len(frame) else 0
    valid = frame[frame["split"] == "valid"].sort_values("step")
    losses, at = valid["loss"].to_numpy(float), valid["step"].to_numpy(float)
    since_best = int(len(losses) - 1 - np.argmin(losses)) if len(losses) else 0
    last_change = math.nan
    if len(losses) >= 2:
        k = min(len(losses), max(3, math.ceil(last_stretch * len(losses))))
        x, y = at[-k:], losses[-k:]
        slope = np.polyfit(x, y, 1)[0]
        scale = abs(float(np.mean(y))) or 1.0
        last_change = float(slope * (x[-1] - x[0]) / scale)
    if patience is not None and len(losses) and since_best >= patience:
        ended_by = "early stopping"
    elif steps is not None and steps_run >= steps:
        ended_by = "step budget"
    else:
        ended_by = "unknown"
    plateau = np.isfinite(last_change) and last_change > -tol
    converged = ended_by == "early stopping" or plateau
    budget = f"/{steps}" if steps is not None else ""
    if not len(losses):
        note = f"{steps_run}{budget} steps, no validation loss logged: convergence unknown"
    elif ended_by == "early stopping":
        note = f"early stop at {steps_run}{budget} steps"
    else:
        trend = f"valid loss {100 * last_change:+.1f} % over the last stretch" if np.isfinite(last_change) else \
            "too few validations for a slope"
        note = f"{ended_by} at {steps_run}{budget} steps, {trend}" + (" (plateau)" if plateau else "")
    return {"steps_run": steps_run, "validations": int(len(losses)), "since_best": since_best,
            "ended_by": ended_by, "last_change": last_change, "converged": bool(converged), "note": note}


def parse_train_log_path(path: Path) -> tuple[str, int, int | None]:
    """(entry, seed, J trained for) of ``.../{entry}/seed{N}/J{J}/train_log.csv`` (J None for the
    older ``.../{entry}/seed{N}/train_log.csv``); raises ChoirbenchError for any other path."""
    path = Path(path)
    folder, J = path.parent, None
    if re.fullmatch(r"J\d+", folder.name):
        folder, J = folder.parent, int(folder.name[1:])
    if not re.fullmatch(r"seed\d+", folder.name):
        raise ChoirbenchError(f"{path}: expected .../{{method}}/seed{{N}}/J{{J}}/train_log.csv")
    return folder.parent.name, int(folder.name[4:]), J


def convergence_table(train_logs: list[Path], training: dict | None = None, settings: dict | None = None) -> pd.DataFrame:
    """One row per train log (``results/models/{dataset}/{entry}/seed{seed}/J{J}/train_log.csv``, J the
    number of voices the model was trained for), with the entry's ``steps``/``patience`` from
    ``training`` (method id -> {"trained_by", "steps", "patience"}); ``settings``: verdict_settings()."""
    settings = verdict_settings(settings)
    by_entry = {info.get("trained_by"): info for info in (training or {}).values()}
    rows = []
    for path in map(Path, train_logs):
        entry, seed, J = parse_train_log_path(path)
        info = by_entry.get(entry, {})
        row = convergence(path, info.get("steps"), info.get("patience"), settings["plateau_tol"],
                          settings["last_stretch"])
        rows.append({"entry": entry, "seed": seed, "J": J, **row})
    columns = ["entry", "seed", "J", "steps_run", "validations", "since_best", "ended_by", "last_change",
               "converged", "note"]
    return pd.DataFrame(rows, columns=columns)


def rests_on(methods, training: dict | None, runs: pd.DataFrame | None, J: int | None = None) -> tuple[bool, str]:
    """(budget_limited, note) for the trained models behind ``methods`` at test ``J``: the model each
    method separates J-voice mixtures with (``training[m]["model_J"][str(J)]``, the workflow's
    train_J mapping); without that mapping an entry's J-voice models when it has them, else all its logs."""
    if training is None or runs is None:
        return False, "convergence not checked (no train logs given)"
    models = sorted({(training[m]["trained_by"], (training[m].get("model_J") or {}).get(str(J), J))
                     for m in methods if m in training}, key=lambda x: (x[0], x[1] or 0))
    if not models:
        return False, "no trained model"
    limited, parts = False, []
    for entry, model_J in models:
        mine = runs[runs["entry"] == entry]
        if model_J is not None and (mine["J"] == model_J).any():
            mine = mine[mine["J"] == model_J]
        trained = mine["J"].dropna().unique()
        name = f"{entry} (J{int(trained[0])} model)" if len(trained) == 1 and mine["J"].notna().all() else entry
        if mine.empty:
            limited = True
            parts.append(f"{entry}: no train log")
            continue
        bad = mine[~mine["converged"]]
        if bad.empty:
            how = ", ".join(sorted(set(mine["ended_by"].replace("step budget", "plateau"))))
            parts.append(f"{name} converged ({len(mine)} seed{'s' * (len(mine) > 1)}: {how})")
        else:
            limited = True
            seeds = ", ".join(f"seed {r.seed} {100 * r.last_change:+.1f} %" if np.isfinite(r.last_change)
                              else f"seed {r.seed} ({r.ended_by})" for r in bad.itertuples())
            parts.append(f"{name} not converged ({seeds})")
    return limited, ("budget-limited: " if limited else "") + "; ".join(parts)


# ------------------------------------------------------------------------------------------------- claims

def contrast_differences(scores: PairedScores, claim: Claim, metric: str, J: int) -> tuple[np.ndarray, list[float]]:
    """Paired differences d over (excerpt, voice) (seed-averaged), and the median d per training seed."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    by_seed = scores.by_seed(claim.methods, metric, J)
    if by_seed.empty:
        return np.array([]), []
    by_seed = by_seed.clip(-DB_CAP, DB_CAP)
    means = by_seed.T.groupby(level="method").mean().T
    d = sign * sum(coef * means[m] for m, coef in claim.contrast)
    seeds = sorted({s for _, s in by_seed.columns})
    per_seed = []
    if len(seeds) > 1:
        for seed in seeds:
            cols = {}
            for m, _ in claim.contrast:
                have = sorted(s for mm, s in by_seed.columns if mm == m)
                cols[m] = by_seed[(m, seed if seed in have else have[0])]
            per_seed.append(float(np.median(sign * sum(coef * cols[m] for m, coef in claim.contrast))))
    return d.to_numpy(float), per_seed


def check_claims(table: pd.DataFrame, training: dict | None = None,
                 runs: pd.DataFrame | None = None, settings: dict | None = None) -> pd.DataFrame:
    """One row per (claim, J, metric) whose methods all ran: see :data:`COLUMNS` and the module docstring.

    ``table``: the long results table; ``training``: method id -> {"trained_by", "steps", "patience"}
    for the trainable entries; ``runs``: :func:`convergence_table` of their train logs; ``settings``:
    :func:`verdict_settings` (alpha, bootstrap resamples and seed).
    """
    settings = verdict_settings(settings)
    present, measured = set(table["method"].unique()), set(table["metric"].unique())
    scores = PairedScores(table)
    rows = []
    for J in sorted(table["J"].unique()):
        first = len(rows)
        for claim in CLAIMS:
            if not set(claim.methods) <= present:
                continue
            limited, note = rests_on(claim.methods, training, runs, int(J))
            for metric in claim.metrics:
                if metric not in measured:
                    continue
                d, per_seed = contrast_differences(scores, claim, metric, int(J))
                lo, hi = bootstrap_median_ci(d, 1 - settings["alpha"], settings["bootstrap_resamples"],
                                             settings["bootstrap_seed"])
                rows.append({"claim": claim.text, "J": int(J), "metric": metric, "contrast": claim.label,
                             "kind": claim.kind, "margin": claim.margin, "n_pairs": len(d),
                             "median_diff": float(np.median(d)) if len(d) else math.nan,
                             "ci_low": lo, "ci_high": hi,
                             "per_seed": " / ".join(f"{v:.2f}" for v in per_seed),
                             "p_value": claim_p_value(d, claim.kind, claim.margin) if len(d) else math.nan,
                             "budget_limited": limited, "convergence": note})
        # Holm across the claims of one table (one J)
        family = rows[first:]
        for row, p_adj in zip(family, holm([r["p_value"] for r in family])):
            row["p_holm"] = float(p_adj)
            row["verdict"] = verdict(row["kind"], row["margin"], row["ci_low"], row["ci_high"], row["p_holm"],
                                     settings["alpha"])
    return pd.DataFrame(rows, columns=COLUMNS)
