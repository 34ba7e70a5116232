"""What the workflow runs around a method: training on a prepared dataset, separating
an excerpt list, separating anyone's recording. Methods stay free of file handling.

A *method entry* is one item of the config's ``methods`` block, e.g.::

    sf-us-small: {model: sf, data: small, params: {supervised: false}}
    sf-us-small-synth: {model: sf, checkpoint_from: sf-us-small, params: {output: synthesis}}

``model`` picks the registered implementation, ``data`` the training set
(``full`` or ``small``), ``checkpoint_from`` reuses another entry's training.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.prepared import (ExcerptSampler, load_example, read_examples, read_manifest,
                                           small_subset)
from choirbench.data_prep.f0 import to_hop_grid
from choirbench.data_prep.release import resample_audio
from choirbench.io import read_f0_table, read_wav, write_text, write_wav
from choirbench.methods.base import Method, check_output, get
from choirbench.params import resolve_params

log = logging.getLogger(__name__)

ENTRY_DEFAULTS = {"model": "", "data": "full", "small_fraction": 0.03, "small_seed": 0,
                  "checkpoint_from": None, "params": {}, "train_parts": "SATB", "excerpt_s": 4.0,
                  "f0_source": "truth", "threads": 1}


def read_entry(path: Path) -> dict:
    """A method entry as written by the workflow (JSON), checked for unknown keys."""
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: method config not found")
    entry = json.loads(path.read_text())
    name = entry.pop("id", path.stem)
    params = entry.pop("params", None) or {}  # the method's own knobs: checked by the method itself
    entry = resolve_params(ENTRY_DEFAULTS, entry, where=f"methods.{name}")
    entry["params"] = params
    entry["id"] = name
    if not entry["model"]:
        raise ChoirbenchError(f"methods.{name}.model is missing (one of the registered method ids)")
    return entry


def build(entry: dict) -> Method:
    cls = get(entry["model"])
    resolve_params(cls.defaults, entry["params"], where=f"methods.{entry['id']}.params")  # errors name the entry
    return cls(entry["params"])


def training_songs(data_root: Path, entry: dict) -> list[str] | None:
    """None for all training songs, else the deterministic small subset."""
    if entry["data"] == "full":
        return None
    if entry["data"] != "small":
        raise ChoirbenchError(f"methods.{entry['id']}.data must be 'full' or 'small', got {entry['data']!r}")
    return small_subset(read_manifest(data_root), entry["small_fraction"], entry["small_seed"])


def train(data_root: Path, entry: dict, seed: int, out_dir: Path, valid_examples: Path) -> Path:
    """Train one method entry with one seed; writes ``out_dir/model.pt`` and logs."""
    method = build(entry)
    if not method.trainable:
        raise ChoirbenchError(f"method {entry['id']!r} ({entry['model']}) is not trainable")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    songs = training_songs(data_root, entry)
    if songs is not None:
        write_text(out_dir / "training_songs.txt", "\n".join(songs) + "\n")
        log.info("small training set: %d songs (%s)", len(songs), ", ".join(songs))
    supervised = method.uses_isolated_voices
    sampler = ExcerptSampler(data_root, "train", tuple(entry["train_parts"]), seed=seed, songs=songs,
                             excerpt_s=entry["excerpt_s"], f0_source=entry["f0_source"], with_voices=supervised)
    valid = [load_example(data_root, row, f0_source=entry["f0_source"], excerpt_s=entry["excerpt_s"])
             for row in read_examples(valid_examples).itertuples()]
    if not supervised:  # unsupervised training never sees an isolated voice, not even in validation
        valid = [dataclasses.replace(ex, voices=None) for ex in valid]
    return method.fit(sampler, valid, out_dir, seed)


def load_method(entry: dict, checkpoint: Path | None) -> Method:
    method = build(entry)
    if method.trainable:
        if checkpoint is None:
            raise ChoirbenchError(f"method {entry['id']!r} is trained: pass --checkpoint")
        if not Path(checkpoint).is_file():
            raise ChoirbenchError(f"{checkpoint}: checkpoint not found")
        method.load(Path(checkpoint))
    return method


def separate_examples(data_root: Path, examples_csv: Path, entry: dict, checkpoint: Path | None,
                      out_dir: Path) -> None:
    """Separate every excerpt of a list into ``out_dir/{example_id}/{voice}.wav``."""
    method = load_method(entry, checkpoint)
    examples = read_examples(examples_csv)
    for row in tqdm(list(examples.itertuples()), desc=f"separate {entry['id']}", disable=None):
        ex = load_example(data_root, row, f0_source=entry["f0_source"], excerpt_s=entry["excerpt_s"])
        extra = {"references": ex.voices} if method.needs_references else {}
        voices, params = method.separate_with_parameters(ex.mixture, ex.sr, ex.f0, ex.notes, **extra)
        voices = check_output(voices, ex.mixture, len(ex.parts), entry["id"])
        folder = Path(out_dir) / ex.example_id
        for part, audio in zip(ex.parts, voices):
            write_wav(folder / f"{part}.wav", audio, ex.sr)
        if params is not None:
            np.savez_compressed(folder / "parameters.npz", **params)


def separate_file(mixture_path: Path, f0_path: Path | None, entry: dict, checkpoint: Path | None, out_dir: Path,
                  notes_path: Path | None = None, *, voices: str = "SATB", f0_params: dict | None = None) -> list[Path]:
    """Separate a user's recording: any rate in, ``out_dir/{voice}.wav`` at that rate and length out.

    Without ``f0_path`` each of ``voices``' F0 is first estimated from the
    recording itself (multi-F0 salience + voice assignment with the
    ``f0_mixture`` knobs ``f0_params``, see
    :mod:`choirbench.data_prep.voice_assignment`), and the log says so.
    """
    audio, rate = read_wav(mixture_path, sr=None, allow_silence=True)
    x = resample_audio(audio, rate)
    if f0_path is not None:
        times, f0_table, names = read_f0_table(f0_path)
        f0 = np.stack([to_hop_grid(times, track, len(x) // HOP) for track in f0_table])
    else:
        from choirbench.data_prep.voice_assignment import ASSIGN_DEFAULTS, estimate_f0, parse_voices

        names = list(parse_voices(voices, where="--voices"))
        params = resolve_params(ASSIGN_DEFAULTS, f0_params or {}, where="f0_mixture")
        log.info("%s: no F0 given: estimating the F0 of %s from the mixture (multi-F0 salience, %s assignment)",
                 mixture_path, "".join(names), params["assigner"])
        f0 = estimate_f0(audio, rate, "".join(names), params, n_frames=len(x) // HOP)
    notes = None
    if notes_path is not None:
        table = pd.read_csv(notes_path)
        if "voice" not in table.columns:
            raise ChoirbenchError(f"{notes_path}: expected columns voice,onset_s,offset_s,midi")
        notes = [table.loc[table["voice"] == v, ["onset_s", "offset_s", "midi"]].to_numpy(float) for v in names]
    method = load_method(entry, checkpoint)
    if method.needs_references:
        raise ChoirbenchError(f"method {entry['id']!r} needs the true voices and cannot separate a recording")
    peak = float(np.max(np.abs(x))) or 1.0
    voices = check_output(method.separate(x / peak, SAMPLE_RATE, f0, notes), x, len(names), entry["id"]) * peak
    written = []
    for name, voice in zip(names, voices):
        y = resample_audio(voice, SAMPLE_RATE, rate)
        y = np.pad(y, (0, max(0, len(audio) - len(y))))[: len(audio)]
        write_wav(Path(out_dir) / f"{name}.wav", y, rate)
        written.append(Path(out_dir) / f"{name}.wav")
    return written

