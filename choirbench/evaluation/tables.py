"""Result tables: methods x voices per J, as CSV, Markdown and LaTeX."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from choirbench.evaluation.aggregate import method_order, summary, voice_order
from choirbench.evaluation.claims import check_claims
from choirbench.io import write_csv, write_text

log = logging.getLogger(__name__)

TABLE_METRICS = ("SDR", "SI-SDR")


def _cell(mean: float, std: float, n_seeds: int) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.2f} ± {std:.2f}" if n_seeds > 1 else f"{mean:.2f}"


def wide_table(stats: pd.DataFrame, J: int) -> pd.DataFrame:
    """Rows: methods; columns: metric/voice cells 'mean ± std', seeds, excerpts, NaN frames."""
    sub = stats[stats["J"] == J]
    voices = voice_order(sub["voice"])
    rows = []
    for method in method_order(sub["method"]):
        m = sub[sub["method"] == method]
        row = {"method": method}
        for metric in TABLE_METRICS:
            for voice in voices:
                hit = m[(m["metric"] == metric) & (m["voice"] == voice)]
                row[f"{metric} {voice}"] = _cell(*hit[["mean", "std", "n_seeds"]].iloc[0]) if len(hit) else ""
        first = m.iloc[0]
        row["seeds"] = int(first["n_seeds"])
        row["excerpts"] = int(first["n_excerpts"])
        nan = m[m["voice"] == "all"].set_index("metric")
        row["NaN frames (SDR/SI-SDR)"] = "/".join(
            f"{int(nan.loc[k, 'nan_frames'])}" if k in nan.index else "-" for k in TABLE_METRICS)
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(frame.columns))) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def to_latex(frame: pd.DataFrame, caption: str) -> str:
    def esc(text) -> str:
        return str(text).replace("±", r"$\pm$").replace("_", r"\_").replace("%", r"\%")
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
        if metric not in TABLE_METRICS:
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


def write_tables(table: pd.DataFrame, out_dir: Path, dataset: str) -> list[Path]:
    """Write summary.csv, J{J}.{csv,md,tex} and data_efficiency.{csv,md}; return the paths."""
    out_dir = Path(out_dir)
    stats = summary(table)
    written = [out_dir / "summary.csv"]
    write_csv(written[0], stats.round(4))
    for J in sorted(stats["J"].unique()):
        wide = wide_table(stats, int(J))
        caption = (f"{dataset}, J = {J}: median over 1-s frames, then over excerpts (dB); "
                   "mean ± std over seeds.")
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
    claims = check_claims(stats)
    write_csv(out_dir / "claims.csv", claims)
    write_text(out_dir / "claims.md",
               "**The paper's claims against this run (median over all voices and excerpts, mean over "
               "seeds, dB).**\n\n" + (to_markdown(claims) if len(claims) else "No claim's methods ran.\n"))
    return written + [out_dir / "claims.csv", out_dir / "claims.md"]
