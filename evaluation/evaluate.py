"""Score one set of estimates: the long results table for one (dataset, method, seed, J)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from choirbench import SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.prepared import load_example, read_examples
from choirbench.evaluation.metrics import (BSS_METRICS, FLOOR_DB, MAGNITUDE_METRICS, bss_eval_v4, magnitude_metrics,
                                           si_sdr)
from choirbench.io import atomic_path, read_wav

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["dataset", "method", "seed", "J", "example_id", "voice", "frame", "metric", "value"]
FRAME_SECONDS = 1.0
METRICS = (*BSS_METRICS, "SI-SDR", "SI-SDRi", *MAGNITUDE_METRICS)
"""Every metric of the long table (see choirbench.evaluation.metrics for definitions and the silence policy)."""


def score_example(references: np.ndarray, estimates: np.ndarray, frame: int,
                  mixture: np.ndarray | None = None, metrics: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Every metric (or only those named in ``metrics``) for one excerpt: name -> [J, frames].

    ``references`` and ``estimates`` are [J, N]; ``mixture`` [N] (default: the sum of the references).
    SI-SDRi is the SI-SDR improvement over the mixture ÷ J taken as every voice's estimate (the
    baseline recent choir-separation papers report against), frame by frame, both SI-SDRs capped
    at +80 dB (= -FLOOR_DB).
    """
    wanted = set(metrics or METRICS)
    references = np.asarray(references, dtype=np.float64)
    mixture = references.sum(0) if mixture is None else np.asarray(mixture, dtype=np.float64)
    J = len(references)
    # BSS Eval is the costly one: skipped when none of its metrics is asked for (robustness study)
    scores = bss_eval_v4(references, estimates, win=frame, hop=frame) if wanted & set(BSS_METRICS) else {}
    scores["SI-SDR"] = si_sdr(references, estimates, win=frame, hop=frame)
    if "SI-SDRi" in wanted:
        baseline = si_sdr(references, np.broadcast_to(mixture / J, references.shape), win=frame, hop=frame)
        # both terms capped at -FLOOR_DB: where the other voices are silent the mixture is a scaled copy of
        # the voice (+inf dB), and an improvement over a perfect baseline is not worth -inf
        scores["SI-SDRi"] = np.minimum(scores["SI-SDR"], -FLOOR_DB) - np.minimum(baseline, -FLOOR_DB)
    if wanted & set(MAGNITUDE_METRICS):
        scores.update(magnitude_metrics(references, estimates, win=frame, hop=frame, sample_rate=SAMPLE_RATE))
    return {name: values for name, values in scores.items() if name in wanted}


def read_estimates(folder: Path, parts: tuple[str, ...], n: int) -> np.ndarray:
    voices = []
    for part in parts:
        audio, _ = read_wav(folder / f"{part}.wav")
        if len(audio) != n:
            raise ChoirbenchError(f"{folder / f'{part}.wav'}: {len(audio)} samples, the excerpt has {n}")
        voices.append(audio)
    return np.stack(voices)


def evaluate_set(data_root: Path, examples_csv: Path, estimates_dir: Path, *, dataset: str, method: str,
                 seed: int, J: int, excerpt_s: float, frame_s: float = FRAME_SECONDS,
                 metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The long table (see TABLE_COLUMNS) for every excerpt of the list: every metric, or those of ``metrics``."""
    unknown = sorted(set(metrics or ()) - set(METRICS))
    if unknown:
        raise ChoirbenchError(f"unknown metric(s) {', '.join(unknown)} (expected some of {', '.join(METRICS)})")
    examples = read_examples(examples_csv)
    frame = int(round(frame_s * SAMPLE_RATE))
    chunks = []
    for row in tqdm(list(examples.itertuples()), desc=f"evaluate {method} J={J}", disable=None):
        ex = load_example(data_root, row, excerpt_s=excerpt_s)
        est = read_estimates(Path(estimates_dir) / ex.example_id, ex.parts, len(ex.mixture))
        for metric, values in score_example(ex.voices, est, frame, ex.mixture, metrics).items():
            J_, T = values.shape
            chunks.append(pd.DataFrame({
                "example_id": ex.example_id, "voice": np.repeat(ex.parts, T),
                "frame": np.tile(np.arange(T), J_), "metric": metric, "value": values.ravel()}))
    table = pd.concat(chunks, ignore_index=True)
    table.insert(0, "J", J)
    table.insert(0, "seed", seed)
    table.insert(0, "method", method)
    table.insert(0, "dataset", dataset)
    n_nan = int(table["value"].isna().sum())
    if n_nan:
        log.warning("%s seed %d J=%d: %d of %d frame scores are NaN (silent reference), skipped in aggregates",
                    method, seed, J, n_nan, len(table))
    n_silent = int((table["metric"].eq("SI-SDR") & table["value"].eq(FLOOR_DB)).sum())
    if n_silent:
        log.warning("%s seed %d J=%d: %d voice frames have a silent estimate of a sounding reference, scored "
                    "%.0f dB (a failure)", method, seed, J, n_silent, FLOOR_DB)
    return table[TABLE_COLUMNS]


def write_table(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, suffix=".parquet") as tmp:
        table.to_parquet(tmp, index=False)


__all__ = ["BSS_METRICS", "METRICS", "TABLE_COLUMNS", "evaluate_set", "score_example", "write_table"]
