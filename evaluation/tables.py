"""Result tables: methods x voices per J, as CSV, Markdown and LaTeX; the claims table.

Cells are SiSEC medians of medians (mean ± std over seeds), with the paper's pooled
median beside them. On the ``all`` columns, ▲ marks the best real method (bounds
excluded) and ≈ every method not significantly different from it (Wilcoxon
signed-rank over the (excerpt, voice) medians on shared frames, two-sided,
Holm-corrected across the methods of the column, alpha 0.05).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from choirbench.evaluation.aggregate import BOUNDS, PairedScores, method_order, summary, voice_order
from choirbench.evaluation.claims import (CLAIM_METRICS, DB_CAP, MAGNITUDE_CLAIM_METRICS, bootstrap_median_ci,
                                          check_claims, convergence_table, holm, signed_rank_p, verdict_settings)
from choirbench.evaluation.metrics import FLOOR_DB, LOWER_IS_BETTER
from choirbench.io import write_csv, write_text

log = logging.getLogger(__name__)

VOICE_METRICS = ("SDR", "SI-SDR")
"""Metrics shown per voice; the others (and these) also over all voices."""
TABLE_METRICS = ("SDR", "SI-SDR", "SI-SDRi", "spec-SNR", "spec-SI-SNR", "MCD")
BEST, TIED = "▲", "≈"


def _cell(mean: float, std: float, n_seeds: int) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.2f} ± {std:.2f}" if n_seeds > 1 else f"{mean:.2f}"


def best_markers(scores: PairedScores, stats: pd.DataFrame, J: int, metric: str, alpha: float) -> dict[str, str]:
    """Method -> marker for one metric's ``all`` column (see the module docstring); ``alpha``: the
    significance level of the Holm-corrected Wilcoxon tests against the best method."""
    sub = stats[(stats["J"] == J) & (stats["metric"] == metric) & (stats["voice"] == "all")]
    sub = sub[~sub["method"].isin(BOUNDS) & np.isfinite(sub["mean"])]
    if sub.empty:
        return {}
    lower = metric in LOWER_IS_BETTER
    best = sub.sort_values(["mean", "method"], ascending=[lower, True])["method"].iloc[0]
    others = [m for m in sub["method"] if m != best]
    p_values = []
    for other in others:
        pair = scores.seed_mean([best, other], metric, J).clip(-DB_CAP, DB_CAP)
        d = (pair[best] - pair[other]).to_numpy(float) if len(pair) else np.array([])
        p_values.append(signed_rank_p(d, "two-sided") if len(d) else np.nan)
    markers = {best: BEST}
    for other, p_adj in zip(others, holm(p_values)):
        if not (np.isfinite(p_adj) and p_adj < alpha):
            markers[other] = TIED
    return markers


def wide_table(stats: pd.DataFrame, J: int, table: pd.DataFrame | None = None,
               alpha: float = verdict_settings()["alpha"]) -> pd.DataFrame:
    """Rows: methods; columns: per-voice SDR/SI-SDR cells, every metric over all voices (SiSEC and
    pooled median, 'mean ± std' over seeds), seeds, excerpts, skipped and floored frames.
    With the long ``table``, the ``all`` cells carry the best / not-significantly-worse markers."""
    sub = stats[stats["J"] == J]
    voices = [v for v in voice_order(sub["voice"]) if v != "all"]
    metrics = [m for m in TABLE_METRICS if m in set(sub["metric"])]
    scores = PairedScores(table) if table is not None else None
    markers = {m: best_markers(scores, stats, J, m, alpha) for m in metrics} if scores is not None else {}
    floored = {}
    if table is not None:
        si = table[(table["J"] == J) & (table["metric"] == "SI-SDR")]
        floored = si["value"].eq(FLOOR_DB).groupby(si["method"]).sum().astype(int).to_dict()
    cells = sub.set_index(["method", "metric", "voice"])
    rows = []
    for method in method_order(sub["method"]):
        m = sub[sub["method"] == method]
        row = {"method": method}

        def cell(metric, voice, pooled=False):
            key = (method, metric, voice)
            if key not in cells.index:
                return ""
            hit = cells.loc[key]
            if pooled:
                return _cell(hit["pooled_mean"], hit["pooled_std"], hit["n_seeds"])
            return _cell(hit["mean"], hit["std"], hit["n_seeds"])

        for metric in metrics:
            if metric in VOICE_METRICS:
                for voice in voices:
                    row[f"{metric} {voice}"] = cell(metric, voice)
            mark = markers.get(metric, {}).get(method, "")
            row[f"{metric} all"] = (cell(metric, "all") + (f" {mark}" if mark else "")).strip()
            row[f"{metric} pooled"] = cell(metric, "all", pooled=True)
        first = m.iloc[0]
        row["seeds"] = int(first["n_seeds"])
        row["excerpts"] = int(first["n_excerpts"])
        nan = m[m["voice"] == "all"].set_index("metric")
        row["skipped frames (SDR/SI-SDR)"] = "/".join(
            f"{int(nan.loc[k, 'nan_frames'])}" if k in nan.index else "-" for k in VOICE_METRICS)
        if table is not None:
            row["silent-estimate frames"] = floored.get(method, 0)
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(frame.columns))) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def to_latex(frame: pd.DataFrame, caption: str) -> str:
    def esc(text) -> str:
        return (str(text).replace("±", r"$\pm$").replace("_", r"\_").replace("%", r"\%")
                .replace(BEST, r"$^\blacktriangle$").replace(TIED, r"$^\approx$"))
    cols = "l" + "r" * (len(frame.columns) - 1)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(esc(c) for c in frame.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(v) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(caption)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def data_efficiency(stats: pd.DataFrame) -> pd.DataFrame:
    """For every method with -full and -small variants: the median-SDR drop from full to small."""
    rows = []
    overall = stats[(stats["voice"] == "all")]
    for (J, metric), sub in overall.groupby(["J", "metric"]):
        if metric not in VOICE_METRICS:
            continue
        means = sub.set_index("method")["mean"]
        for method in means.index:
            if "-full" not in method:
                continue
            small = method.replace("-full", "-small")
            if small in means.index:
                rows.append({"J": J, "metric": metric, "family": method.replace("-full", ""),
                             "full": round(means[method], 2), "small": round(means[small], 2),
                             "drop": round(means[method] - means[small], 2)})
    return pd.DataFrame(rows, columns=["J", "metric", "family", "full", "small", "drop"])


def f0_cost(table: pd.DataFrame, pairs: dict[str, str], settings: dict | None = None) -> pd.DataFrame:
    """What F0 estimated from the mixture costs a method (issue 11; the paper's condition).

    ``pairs``: entry given mixture F0 -> its twin given the annotated F0 (the same entry otherwise).
    Per pair, J and metric (SDR, SI-SDR): the paired difference d = truth - mixture over (excerpt,
    voice) of the medians over shared 1-s frames (seeds averaged), its median with a bootstrap
    interval (``settings``: claims.verdict_settings), and the median d per voice. dB; d > 0: the
    realistic F0 costs that much.
    """
    settings = verdict_settings(settings)
    scores = PairedScores(table)
    rows = []
    for mixed, truth in sorted(pairs.items()):
        for J in sorted(table["J"].unique()):
            for metric in VOICE_METRICS:
                pair = scores.seed_mean([truth, mixed], metric, int(J)).clip(-DB_CAP, DB_CAP)
                if pair.empty:
                    continue
                d = pair[truth] - pair[mixed]
                lo, hi = bootstrap_median_ci(d.to_numpy(float), 1 - settings["alpha"],
                                             settings["bootstrap_resamples"], settings["bootstrap_seed"])
                per_voice = d.groupby(level="voice").median()
                rows.append({"entry": mixed, "truth_twin": truth, "J": int(J), "metric": metric, "n_pairs": len(d),
                             "truth": float(pair[truth].median()), "mixture": float(pair[mixed].median()),
                             "drop": float(d.median()), "ci_low": lo, "ci_high": hi,
                             **{f"drop_{v}": float(per_voice[v]) for v in voice_order(per_voice.index)}})
    return pd.DataFrame(rows)


def f0_cost_markdown(cost: pd.DataFrame, settings: dict | None = None) -> str:
    settings = verdict_settings(settings)
    lines = ["# What F0 from the mixture costs", "",
             "Each entry given F0 estimated from the mixture (multi-F0 salience + voice assignment, the paper's "
             "condition) beside its twin given the annotated F0: median over (excerpt, voice) of the medians over "
             "shared 1-s frames (dB, seeds averaged); drop = paired difference truth - mixture with its "
             f"{100 * (1 - settings['alpha']):g} % bootstrap interval, then per voice. The F0 accuracy behind it: "
             "f0_accuracy.", ""]
    if cost.empty:
        return "\n".join(lines + ["No entry of this run is given mixture F0 beside a truth-F0 twin.", ""])
    voices = [c for c in cost.columns if c.startswith("drop_")]
    view = pd.DataFrame({
        "entry (twin)": [f"{m} ({t})" for m, t in zip(cost["entry"], cost["truth_twin"])],
        "J": cost["J"], "metric": cost["metric"], "n": cost["n_pairs"],
        "truth F0": cost["truth"].round(2), "mixture F0": cost["mixture"].round(2),
        "drop [CI]": [f"{d:.2f} [{lo:.2f}, {hi:.2f}]" for d, lo, hi in zip(cost["drop"], cost["ci_low"], cost["ci_high"])],
        **{f"drop {c[5:]}": cost[c].round(2).fillna("-") for c in voices}})
    return "\n".join(lines) + "\n" + to_markdown(view)


def write_tables(table: pd.DataFrame, out_dir: Path, dataset: str, *, training: dict | None = None,
                 train_logs: list[Path] | None = None, verdicts: dict | None = None,
                 f0_pairs: dict[str, str] | None = None) -> list[Path]:
    """Write summary.csv, J{J}.{csv,md,tex}, data_efficiency.{csv,md}, claims.{csv,md} and
    convergence.csv; return the paths. ``training`` (method id -> {"trained_by", "steps", "patience"})
    and ``train_logs`` give each claim its convergence note (see claims.check_claims); ``verdicts``: the
    config's ``verdicts`` block (claims.verdict_settings); ``f0_pairs`` (entry given mixture F0 -> its
    truth-F0 twin), when given, also writes f0_cost.{csv,md} (:func:`f0_cost`)."""
    settings = verdict_settings(verdicts)
    out_dir = Path(out_dir)
    stats = summary(table)
    written = [out_dir / "summary.csv"]
    write_csv(written[0], stats.round(4))
    for J in sorted(stats["J"].unique()):
        wide = wide_table(stats, int(J), table, settings["alpha"])
        caption = (f"{dataset}, J = {J}: median over 1-s frames, then over excerpts (dB; MCD in cepstral "
                   "units, lower is better); 'pooled': the paper's one median over all frames; mean ± std over "
                   f"seeds. {BEST} best method, {TIED} not significantly different from it (Wilcoxon, Holm, "
                   f"alpha {settings['alpha']:g}).")
        for suffix, text in (("csv", None), ("md", f"**{caption}**\n\n" + to_markdown(wide)),
                             ("tex", to_latex(wide, caption))):
            path = out_dir / f"J{J}.{suffix}"
            write_csv(path, wide) if text is None else write_text(path, text)
            written.append(path)
    eff = data_efficiency(stats)
    write_csv(out_dir / "data_efficiency.csv", eff)
    write_text(out_dir / "data_efficiency.md",
               "**Drop in median score from all training data (-full) to 3 % (-small), dB.**\n\n"
               + (to_markdown(eff) if len(eff) else "No method has both -full and -small variants.\n"))
    written += [out_dir / "data_efficiency.csv", out_dir / "data_efficiency.md"]
    if f0_pairs is not None:
        cost = f0_cost(table, f0_pairs, settings)
        write_csv(out_dir / "f0_cost.csv", cost.round(4))
        write_text(out_dir / "f0_cost.md", f0_cost_markdown(cost, settings))
        written += [out_dir / "f0_cost.csv", out_dir / "f0_cost.md"]
    runs = convergence_table(train_logs or [], training, settings) if training is not None else None
    if runs is not None:
        write_csv(out_dir / "convergence.csv", runs)
        written.append(out_dir / "convergence.csv")
    claims = check_claims(table, training, runs, settings)
    write_csv(out_dir / "claims.csv", claims.round(6))
    write_text(out_dir / "claims.md", claims_markdown(claims, runs, settings))
    return written + [out_dir / "claims.csv", out_dir / "claims.md"]


def claims_markdown(claims: pd.DataFrame, runs: pd.DataFrame | None, settings: dict | None = None) -> str:
    """claims.md: what the verdicts rest on in words, the rule (with ``settings``, claims.verdict_settings),
    then one table per J."""
    settings = verdict_settings(settings)
    alpha = settings["alpha"]
    lines = ["# The paper's claims against this run", ""]
    if runs is None:
        lines.append("**Convergence of the trained models was not checked (no train logs given).**")
    elif runs.empty:
        lines.append("No claim rests on a trained model.")
    else:
        bad = runs[~runs["converged"]]
        if bad.empty:
            lines.append(f"**All {len(runs)} trained models had converged** (early stopping or a plateau of the "
                         "validation loss) when training ended.")
        else:
            n_limited = int(claims["budget_limited"].sum()) if len(claims) else 0
            names = ", ".join(f"{r.entry} (seed {r.seed}: {r.note})" for r in bad.itertuples())
            lines.append(f"**Warning: {len(bad)} of {len(runs)} trained models had not converged when their step "
                         f"budget ran out: {names}. {n_limited} of {len(claims)} verdicts rest on them and are "
                         "marked budget-limited: a longer training run could change them.**")
    lines += ["", f"Rule: d = paired difference over (excerpt, voice) of medians over shared 1-s frames (seeds "
              f"averaged; sign flipped for MCD so d > 0 favours the first method); interval: percentile bootstrap "
              f"{100 * (1 - alpha):g} % CI of median(d) ({settings['bootstrap_resamples']} resamples, seed "
              f"{settings['bootstrap_seed']}); p: Wilcoxon signed-rank of the claim as stated (TOST "
              f"for 'within'), Holm-corrected within each J. **holds**: CI beyond the margin and p_holm < {alpha:g}; "
              "**refuted**: CI entirely on the wrong side of the margin; else **inconclusive**. 'rests on': the "
              "trained models behind the row; converged = stopped early, or the validation loss changed by less "
              f"than {100 * settings['plateau_tol']:g} % over the last {100 * settings['last_stretch']:.0f} % of the "
              "validations (a fitted line); else "
              "the % change is given and the verdict is budget-limited.", ""]
    if claims.empty:
        return "\n".join(lines + ["No claim's methods ran.", ""])
    masking = claims[claims["claim"] == "masking beats direct synthesis"]
    if len(masking):
        lines.append("**Finding 4 (masking beats synthesis) on both kinds of metric:**")
        for J, sub in masking.groupby("J"):
            kinds = []
            for name, group in (("waveform", CLAIM_METRICS), ("magnitude", MAGNITUDE_CLAIM_METRICS)):
                hit = sub[sub["metric"].isin(group)]
                if len(hit):
                    kinds.append(f"{name} " + ", ".join(f"{m}: {v}" for m, v in zip(hit["metric"], hit["verdict"])))
            limited = " (budget-limited)" if sub["budget_limited"].astype(bool).any() else ""
            lines.append(f"- J = {J}: " + "; ".join(kinds) + limited)
        lines.append("")
    for J, sub in claims.groupby("J"):
        view = pd.DataFrame({
            "claim": sub["claim"], "metric": sub["metric"],
            "margin": [f"{'>' if k == 'beats' else '|d| <='} {m:g}" for k, m in zip(sub["kind"], sub["margin"])],
            "n": sub["n_pairs"],
            "median d [95 % CI]": [f"{d:.2f} [{lo:.2f}, {hi:.2f}]" for d, lo, hi in
                                   zip(sub["median_diff"], sub["ci_low"], sub["ci_high"])],
            "per seed": sub["per_seed"].replace("", "-"),
            "p (Holm)": [f"{p:.2g} ({q:.2g})" for p, q in zip(sub["p_value"], sub["p_holm"])],
            "verdict": sub["verdict"],
            "rests on": sub["convergence"]})
        lines += [f"## J = {J}", "", to_markdown(view)]
    return "\n".join(lines)
