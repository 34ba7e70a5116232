"""How good is the F0 estimated from the mixture? Multi-pitch and per-voice scores against the reference.

Two levels, both with mir_eval (Raffel et al., ISMIR 2014):

* the multi-F0 estimate (the salience peaks, before voice assignment) against
  the set of reference F0s sounding in each frame: ``mir_eval.multipitch``
  precision, recall, accuracy and their chroma variants (octave errors
  forgiven), plus the F-measure 2PR / (P + R) that Cuesta, McFee & Gómez
  (ISMIR 2020) report;
* each voice after assignment against that voice's reference F0:
  ``mir_eval.melody`` raw pitch accuracy (within 50 cents, over the frames the
  reference is voiced), voicing recall and voicing false alarm.

The reference is a prepared dataset's own annotation (``f0/``); the estimate
is the F0 estimated from each excerpt's own mixture (``f0_mixture/excerpts/``,
see :func:`choirbench.data_prep.f0.make_mixture_f0`): the F0 the methods were
given at test.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from choirbench import HOP, PARTS, SAMPLE_RATE, ChoirbenchError


MULTIPITCH_COLUMNS = ["precision", "recall", "accuracy", "f_measure",
                      "chroma_precision", "chroma_recall", "chroma_accuracy", "chroma_f_measure"]
VOICE_COLUMNS = ["raw_pitch_accuracy", "voicing_recall", "voicing_false_alarm"]


def _f(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def multipitch_scores(ref_times: np.ndarray, ref_freqs: list[np.ndarray], est_times: np.ndarray,
                      est_freqs: list[np.ndarray]) -> dict[str, float]:
    """``mir_eval.multipitch`` scores of a multi-F0 estimate (per-frame Hz arrays) against a reference.

    The estimate is resampled onto the reference frames by mir_eval. Returns the
    keys of :data:`MULTIPITCH_COLUMNS` (fractions in [0, 1]).
    """
    import mir_eval

    ref_times, est_times = np.asarray(ref_times, float), np.asarray(est_times, float)
    if len(ref_times) != len(ref_freqs) or len(est_times) != len(est_freqs):
        raise ChoirbenchError("multi-pitch scores: times and frequency lists differ in length")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns about empty frames, which are legitimate here
        scores = mir_eval.multipitch.evaluate(ref_times, [np.asarray(f, float) for f in ref_freqs],
                                              est_times, [np.asarray(f, float) for f in est_freqs])
    out = {"precision": scores["Precision"], "recall": scores["Recall"], "accuracy": scores["Accuracy"],
           "chroma_precision": scores["Chroma Precision"], "chroma_recall": scores["Chroma Recall"],
           "chroma_accuracy": scores["Chroma Accuracy"]}
    out["f_measure"] = _f(out["precision"], out["recall"])
    out["chroma_f_measure"] = _f(out["chroma_precision"], out["chroma_recall"])
    return {k: float(out[k]) for k in MULTIPITCH_COLUMNS}


def voice_scores(reference: np.ndarray, estimate: np.ndarray, cent_tolerance: float = 50.0) -> dict[str, float]:
    """Raw pitch accuracy, voicing recall and false alarm of one voice's F0 track (same grid, Hz, 0 = unvoiced).

    Tracks of different lengths are compared over the shorter. A reference
    that is never voiced gives NaN raw pitch accuracy and voicing recall; one
    that is always voiced gives NaN false alarm.
    """
    import mir_eval

    n = min(len(reference), len(estimate))
    if n == 0:
        raise ChoirbenchError("voice scores: empty F0 track")
    ref, est = np.asarray(reference[:n], float), np.asarray(estimate[:n], float)
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(est))):
        raise ChoirbenchError("voice scores: F0 tracks must be finite")
    times = np.arange(n) * HOP / SAMPLE_RATE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_v, ref_c, est_v, est_c = mir_eval.melody.to_cent_voicing(times, ref, times, est)
        recall, false_alarm = mir_eval.melody.voicing_measures(ref_v, est_v)
        rpa = mir_eval.melody.raw_pitch_accuracy(ref_v, ref_c, est_v, est_c, cent_tolerance=cent_tolerance)
    voiced = ref > 0
    return {"raw_pitch_accuracy": float(rpa) if voiced.any() else np.nan,
            "voicing_recall": float(recall) if voiced.any() else np.nan,
            "voicing_false_alarm": float(false_alarm) if (~voiced).any() else np.nan}


def dataset_f0_accuracy(root: Path, examples: list[Path]) -> pd.DataFrame:
    """Per excerpt of the lists ``examples``: multi-pitch scores (``voice == "all"``) and per-voice scores.

    The estimate is the F0 estimated from each excerpt's own mixture
    (``f0_mixture/excerpts/``, what the methods were given); the reference is
    the dataset's annotation of the same frames. Long table: J, example_id,
    song, voice, assigner, frames, then :data:`MULTIPITCH_COLUMNS` and
    :data:`VOICE_COLUMNS` (NaN where they do not apply). Raises
    :class:`ChoirbenchError` when an excerpt has no mixture F0 yet.
    """
    from choirbench.data_prep.f0 import MIXTURE_STAMP, excerpt_f0_path, load_peaks, read_excerpt_f0
    from choirbench.data_prep.prepared import load_example, read_examples

    root = Path(root)
    records = []
    for path in examples:
        for row in read_examples(path).itertuples():
            ref = load_example(root, row, f0_source="truth")
            est = read_excerpt_f0(root, str(row.example_id), ref.parts, ref.f0.shape[1])
            if est is None:
                raise ChoirbenchError(f"{excerpt_f0_path(root, row.example_id)}: no mixture F0 for this excerpt "
                                      f"(run `choirbench f0 --data {root} --source mixture --examples {path}`)")
            stamp = excerpt_f0_path(root, row.example_id).with_name(MIXTURE_STAMP)
            assigner = json.loads(stamp.read_text()).get("assigner", "") if stamp.is_file() else ""
            n = ref.f0.shape[1]
            ref_times = np.arange(n) * HOP / SAMPLE_RATE
            ref_freqs = [ref.f0[ref.f0[:, t] > 0, t] for t in range(n)]
            est_times, est_freqs = load_peaks(excerpt_f0_path(root, row.example_id).with_name(
                f"{row.example_id}_peaks.npz"))
            base = {"J": len(ref.parts), "example_id": str(row.example_id), "song": str(row.song),
                    "assigner": assigner, "frames": n}
            records.append({**base, "voice": "all", **multipitch_scores(ref_times, ref_freqs, est_times, est_freqs)})
            for j, part in enumerate(ref.parts):
                records.append({**base, "voice": part, **voice_scores(ref.f0[j], est[j])})
    if not records:
        raise ChoirbenchError("F0 accuracy: the excerpt lists are empty")
    frame = pd.DataFrame(records)
    for column in MULTIPITCH_COLUMNS + VOICE_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    return frame[["J", "example_id", "song", "voice", "assigner", "frames"] + MULTIPITCH_COLUMNS + VOICE_COLUMNS]


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over excerpts per J and voice (``all`` = the multi-pitch scores), with the number of excerpts."""
    order = {v: k for k, v in enumerate(("all", *PARTS))}
    grouped = table.groupby(["J", "voice"], sort=False)
    out = grouped[MULTIPITCH_COLUMNS + VOICE_COLUMNS].mean()
    out.insert(0, "excerpts", grouped.size())
    out = out.loc[sorted(out.index, key=lambda jv: (jv[0], order.get(jv[1], 99)))]
    return out.dropna(axis=1, how="all").reset_index()


def write_f0_accuracy(table: pd.DataFrame, out_stem: Path, figure: Path | None = None, dataset: str = "") -> None:
    """``{out_stem}.csv`` (long table), ``{out_stem}.md`` (summary) and optionally a bar chart."""
    from choirbench.io import atomic_path, write_csv, write_text

    out_stem = Path(out_stem)
    write_csv(out_stem.with_suffix(".csv"), table)
    summ = summary(table)
    assigners = ", ".join(sorted(set(table["assigner"].astype(str)))) or "?"
    lines = [f"F0 estimated from each test excerpt's own mixture vs. the reference annotation ({dataset}, "
             f"{table['example_id'].nunique()} excerpts, assigner {assigners}). "
             "Rows `all`: multi-pitch scores of the salience peaks (mir_eval.multipitch); "
             "rows S, A, T, B: raw pitch accuracy (50 cents), voicing recall and false alarm per voice after "
             "assignment (mir_eval.melody). Means over excerpts, in %.", ""]
    shown = summ.copy()
    numeric = [c for c in shown.columns if c not in ("J", "voice", "excerpts")]
    shown[numeric] = (100 * shown[numeric]).round(1)
    header = "| " + " | ".join(shown.columns) + " |"
    lines += [header, "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    write_text(out_stem.with_suffix(".md"), "\n".join(lines) + "\n")
    if figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.2))
        top = summ[summ["J"] == summ["J"].max()]
        voices = top[top["voice"] != "all"]
        x = np.arange(len(voices))
        for k, (column, label) in enumerate([("raw_pitch_accuracy", "raw pitch accuracy"),
                                            ("voicing_recall", "voicing recall"),
                                            ("voicing_false_alarm", "voicing false alarm")]):
            if column in voices:
                ax.bar(x + (k - 1) * 0.27, 100 * voices[column], width=0.27, label=label)
        ax.set_xticks(x, voices["voice"])
        mp = top[top["voice"] == "all"]
        if not mp.empty and "f_measure" in mp:
            ax.axhline(100 * float(mp["f_measure"].iloc[0]), color="k", ls="--", lw=1,
                       label=f"multi-pitch F ({100 * float(mp['f_measure'].iloc[0]):.1f} %)")
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"F0 from the mixture, {dataset}, J = {int(summ['J'].max())} ({assigners})")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(figure, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
        plt.close(fig)
