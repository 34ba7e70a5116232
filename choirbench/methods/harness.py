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
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.prepared import (ExcerptSampler, load_example, read_examples, read_manifest,
                                           small_subset)
from choirbench.data_prep.f0 import to_hop_grid
from choirbench.data_prep.f0_corruption import excerpt_seed, parse_corruption
from choirbench.data_prep.release import resample_audio
from choirbench.io import F0_MIN_HZ, read_f0_table, read_voice_notes, read_wav, write_text, write_wav
from choirbench.methods.base import Method, check_output, get
from choirbench.methods.checkpoints import read_checkpoint, save_checkpoint, training_identity
from choirbench.params import Limit, resolve_params

log = logging.getLogger(__name__)

ENTRY_DEFAULTS = {"model": "", "data": "full", "small_fraction": 0.03, "small_seed": 0,
                  "checkpoint_from": None, "params": {}, "train_parts": "SATB", "train_J": "per_J",
                  "excerpt_s": 4.0, "f0_source": "truth", "threads": 1}
ENTRY_LIMITS = {"train_J": Limit(types=(str, int), choices=("per_J", 1, 2, 3, 4))}
"""``train_J``: ``per_J`` trains one model per test J on random J-voice combinations of
``train_parts`` (the paper's separate 2- and 4-voice models); a number J trains one model on
J-voice combinations and uses it for every test J (4 with SATB: one model of all four voices)."""


def trained_J(entry: dict, J: int) -> int:
    """The J of the model an entry separates J-voice mixtures with (see ``ENTRY_LIMITS``)."""
    return int(J) if entry["train_J"] == "per_J" else int(entry["train_J"])


def read_entry(path: Path) -> dict:
    """A method entry as written by the workflow (JSON), checked for unknown keys."""
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: method config not found")
    entry = json.loads(path.read_text())
    name = entry.pop("id", path.stem)
    params = entry.pop("params", None) or {}  # the method's own knobs: checked by the method itself
    entry = resolve_params(ENTRY_DEFAULTS, entry, where=f"methods.{name}", limits=ENTRY_LIMITS)
    entry["params"] = params
    entry["id"] = name
    if not entry["model"]:
        raise ChoirbenchError(f"methods.{name}.model is missing (one of the registered method ids)")
    return entry


def build(entry: dict) -> Method:
    cls = get(entry["model"])
    resolve_params(cls.defaults, entry["params"], where=f"methods.{entry['id']}.params", limits=cls.limits)  # errors name the entry
    return cls(entry["params"])


def training_songs(data_root: Path, entry: dict) -> list[str] | None:
    """None for all training songs, else the deterministic small subset."""
    if entry["data"] == "full":
        return None
    if entry["data"] != "small":
        raise ChoirbenchError(f"methods.{entry['id']}.data must be 'full' or 'small', got {entry['data']!r}")
    return small_subset(read_manifest(data_root), entry["small_fraction"], entry["small_seed"])


def training_entry(entry: dict) -> dict:
    """The entry-level keys that shape what a model learns (the method's own knobs are checked by the method)."""
    keys = ["data", "train_parts", "train_J", "excerpt_s", "f0_source"] + (["small_fraction", "small_seed"]
                                                                 if entry["data"] == "small" else [])
    return {k: entry[k] for k in keys}


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train(data_root: Path, entry: dict, seed: int, out_dir: Path, valid_examples: Path, J: int | None = None) -> Path:
    """Train one method entry with one seed for J-voice mixtures; writes ``out_dir/model.pt`` and logs.

    ``J`` is the number of voices the model is trained for: each training excerpt mixes J random
    parts of ``train_parts`` (:class:`ExcerptSampler`); ``None`` means all of ``train_parts``.
    ``valid_examples`` should hold J-voice excerpts (the workflow gives ``examples/J{J}_valid.csv``).
    The checkpoints record the entry, the J trained for and the training data's identity (hashes
    of ``manifest.csv`` and of the validation list, the training songs), so that a run resumes or
    reuses only a checkpoint trained on the same entry, J, data and seed
    (:func:`choirbench.methods.training.train`). Raises ChoirbenchError for a J the entry's
    ``train_J`` does not train (a per-J entry trains any J up to its parts; a fixed one only its own).
    """
    method = build(entry)
    if not method.trainable:
        raise ChoirbenchError(f"method {entry['id']!r} ({entry['model']}) is not trainable")
    J = len(entry["train_parts"]) if J is None else int(J)
    if entry["train_J"] != "per_J" and J != entry["train_J"]:
        raise ChoirbenchError(f"methods.{entry['id']}.train_J is {entry['train_J']}: its model is trained for "
                              f"J={entry['train_J']}, not J={J}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    songs = training_songs(data_root, entry)
    if songs is not None:
        write_text(out_dir / "training_songs.txt", "\n".join(songs) + "\n")
        log.info("small training set: %d songs (%s)", len(songs), ", ".join(songs))
    supervised = method.uses_isolated_voices
    sampler = ExcerptSampler(data_root, "train", tuple(entry["train_parts"]), seed=seed, songs=songs,
                             excerpt_s=entry["excerpt_s"], f0_source=entry["f0_source"], with_voices=supervised, J=J)
    valid = [load_example(data_root, row, f0_source=entry["f0_source"], excerpt_s=entry["excerpt_s"])
             for row in read_examples(valid_examples).itertuples()]
    other = sorted({len(ex.parts) for ex in valid} - {J})
    if other:  # a J-voice model chooses its checkpoint on J-voice mixtures
        raise ChoirbenchError(f"{valid_examples}: holds {', '.join(map(str, other))}-voice excerpts; the model is "
                              f"trained for J={J} and validated on J={J} excerpts (examples/J{J}_valid.csv)")
    if not supervised:  # unsupervised training never sees an isolated voice, not even in validation
        valid = [dataclasses.replace(ex, voices=None) for ex in valid]
    # the J trained for is part of the training identity: per-J checkpoints never resume each other
    provenance = {"entry": {**entry, "trained_J": J}, "training_entry": {**training_entry(entry), "trained_J": J},
                  "data": {"manifest_sha256": _sha256(Path(data_root) / "manifest.csv"),
                           "valid_sha256": _sha256(valid_examples), "songs": songs if songs is not None else "all"}}
    return method.fit(sampler, valid, out_dir, seed, provenance=provenance)


def load_method(entry: dict, checkpoint: Path | None) -> Method:
    """The entry's method, with its trained model loaded (safely, and checked against the entry).

    An entry with ``checkpoint_from`` uses another entry's training: only its
    method params are checked against the checkpoint (the entry-level training
    keys, such as ``data``, are the other entry's).
    """
    method = build(entry)
    if method.trainable:
        if checkpoint is None:
            raise ChoirbenchError(f"method {entry['id']!r} is trained: pass --checkpoint")
        method.load(Path(checkpoint), entry=None if entry.get("checkpoint_from") else training_entry(entry))
    return method


def entry_from_checkpoint(checkpoint: Path, model: str | None = None, params: dict | None = None) -> dict:
    """The entry a checkpoint was trained with, with ``params`` overriding its method params.

    For separating with a model file alone (``choirbench separate --checkpoint``
    without ``--method-config``): only the method's ``inference_params`` may
    then differ from training, which :meth:`Method.load` checks.
    """
    state = read_checkpoint(checkpoint)
    if model is not None and state["method"] != model:
        raise ChoirbenchError(f"{checkpoint}: a {state['method']!r} checkpoint, not {model!r}")
    recorded = {k: v for k, v in state["entry"].items() if k in ENTRY_DEFAULTS and k != "params"}
    entry = resolve_params(ENTRY_DEFAULTS, recorded, where=f"{checkpoint}: entry", limits=ENTRY_LIMITS)
    entry["params"] = {**state["entry"].get("params", {}), **(params or {})}
    entry["id"] = state["entry"].get("id", state["method"])
    entry["model"] = state["method"]
    return entry


def convert_checkpoint(old: Path, new: Path, entry: dict) -> None:
    """Rewrite a ``model.pt`` written before checkpoints recorded their entry (issue 18) in the current format.

    ``entry`` is the entry the model was trained with; what the old file
    records of it (sf: every param, unet: the architecture) must agree. The
    old file is read with ``weights_only=True`` too: conversion never runs code
    from the file. Old resume points (``last.pt``) are not converted: training
    moves them aside and starts afresh.
    """
    state = read_checkpoint(old, old_format=True)
    if "optimizer" in state:
        raise ChoirbenchError(f"{old}: an old resume point (last.pt), not a trained model: it cannot be converted "
                              "(training starts afresh without it)")
    method = build(entry)
    if not method.trainable:
        raise ChoirbenchError(f"method {entry['id']!r} ({entry['model']}) is not trainable")
    kind = "sf" if "arch" in state else "unet"
    if kind != method.name:
        raise ChoirbenchError(f"{old}: a {kind!r} checkpoint, not {method.name!r}")
    stored = state.get("params") or state.get("unet") or {}
    differing = sorted(k for k, v in stored.items()
                       if k in method.params and k not in method.inference_params and method.params[k] != v)
    if differing:
        raise ChoirbenchError(f"{old}: trained with other params than methods.{entry['id']}.params: "
                              + "; ".join(f"{k} (checkpoint {stored[k]!r}, entry {method.params[k]!r})"
                                          for k in differing))
    method.load_state(state, Path(old))  # the weights must fit the network the entry builds
    identity = training_identity(method.name, method.training_params(), -1, {"training_entry": training_entry(entry)})
    save_checkpoint(new, {"kind": "model", "method": method.name, "entry": {**entry, "params": dict(method.params)},
                          "training": {**identity, "converted_from": Path(old).name}, "training_sha256": "",
                          "model": state["model"], "step": int(state.get("step", 0)),
                          "best_valid": float(state.get("best_valid", float("nan")))})


def separate_examples(data_root: Path, examples_csv: Path, entry: dict, checkpoint: Path | None,
                      out_dir: Path, *, f0_corruption: str | None = None, corruption_seed: int = 0) -> None:
    """Separate every excerpt of a list into ``out_dir/{example_id}/{voice}.wav``.

    ``f0_corruption`` (a spec such as ``offset_hz:+12``, see :mod:`choirbench.data_prep.f0_corruption`)
    corrupts each excerpt's F0 after loading and before the method sees it (robustness study);
    the error pattern is seeded by ``corruption_seed`` and the excerpt id.
    """
    corruption = parse_corruption(f0_corruption) if f0_corruption else None  # a typo fails before any work
    method = load_method(entry, checkpoint)
    examples = read_examples(examples_csv)
    for row in tqdm(list(examples.itertuples()), desc=f"separate {entry['id']}", disable=None):
        ex = load_example(data_root, row, f0_source=entry["f0_source"], excerpt_s=entry["excerpt_s"])
        if corruption is not None:
            ex = dataclasses.replace(ex, f0=corruption.apply(ex.f0, excerpt_seed(corruption_seed, ex.example_id)))
        extra = {"references": ex.voices} if method.needs_references else {}
        voices, params = method.separate_with_parameters(ex.mixture, ex.sr, ex.f0, ex.notes, **extra)
        voices = check_output(voices, ex.mixture, len(ex.parts), entry["id"])
        folder = Path(out_dir) / ex.example_id
        for part, audio in zip(ex.parts, voices):
            write_wav(folder / f"{part}.wav", audio, ex.sr)
        if params is not None:
            np.savez_compressed(folder / "parameters.npz", **params)


def min_samples(method: Method) -> int:
    """Shortest input (samples at 16 kHz) a method can separate: its longest STFT window (knobs named ``*fft``).

    Shorter inputs make the STFT fail inside the method; they are refused before it runs.
    """
    windows = [int(v) for k, v in method.params.items()
               if k.endswith("fft") and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(windows + [HOP])


def read_inputs(mixture_path: Path, f0_path: Path | None, notes_path: Path | None, shortest: int, method_id: str,
                *, voices: str = "SATB", f0_params: dict | None = None):
    """The strictly read inputs of :func:`separate_file`: (audio at its rate, rate, x at 16 kHz, f0 [J, T], names, notes).

    Without ``f0_path`` the F0 of ``voices`` is estimated from the recording (multi-F0 salience and
    voice assignment with the ``f0_mixture`` knobs ``f0_params``, see
    :mod:`choirbench.data_prep.voice_assignment`), after the recording itself has passed its checks.
    Raises :class:`ChoirbenchError` (one line naming the file, column or line) for an empty or too
    short recording and for any F0 or notes table the readers of :mod:`choirbench.io` refuse.
    """
    audio, rate = read_wav(mixture_path, sr=None, allow_silence=True)
    if len(audio) == 0:
        raise ChoirbenchError(f"{mixture_path}: holds no samples (an empty WAV); give the recording to separate")
    x = resample_audio(audio, rate)
    if len(x) < shortest:
        raise ChoirbenchError(f"{mixture_path}: {len(audio) / rate:.3f} s is shorter than the STFT "
                              f"window of method {method_id} ({shortest} samples at {SAMPLE_RATE} Hz = "
                              f"{shortest / SAMPLE_RATE:.3f} s); "
                              f"give a recording of at least that length")
    duration_s = len(audio) / rate
    if f0_path is not None:
        times, f0_table, names = read_f0_table(f0_path, duration_s=duration_s, audio=Path(mixture_path).name)
        f0 = np.stack([to_hop_grid(times, track, len(x) // HOP) for track in f0_table])
    else:
        from choirbench.data_prep.voice_assignment import ASSIGN_DEFAULTS, estimate_f0, parse_voices

        names = list(parse_voices(voices, where="--voices"))
        params = resolve_params(ASSIGN_DEFAULTS, f0_params or {}, where="f0_mixture")
        log.info("%s: no F0 given: estimating the F0 of %s from the mixture (multi-F0 salience, %s assignment)",
                 mixture_path, "".join(names), params["assigner"])
        f0 = estimate_f0(audio, rate, "".join(names), params, n_frames=len(x) // HOP)
        # the salience grid starts at 32.7 Hz; the readers' voiced range starts at F0_MIN_HZ: one rule for both
        f0 = np.where(f0 >= F0_MIN_HZ, f0, 0.0)
    notes = None
    if notes_path is not None:
        notes = read_voice_notes(notes_path, names, duration_s=duration_s, audio=Path(mixture_path).name)
    return audio, rate, x, f0, names, notes


def separate_file(mixture_path: Path, f0_path: Path | None, entry: dict, checkpoint: Path | None, out_dir: Path,
                  notes_path: Path | None = None, *, voices: str = "SATB", f0_params: dict | None = None) -> list[Path]:
    """Separate a user's recording: any rate in, ``out_dir/{voice}.wav`` at that rate and length out.

    Inputs are read by :func:`read_inputs` (every check before anything runs or is written); without
    ``f0_path`` each of ``voices``' F0 is first estimated from the recording, and the log says so.
    """
    audio, rate, x, f0, names, notes = read_inputs(mixture_path, f0_path, notes_path, min_samples(build(entry)),
                                                   entry["id"], voices=voices, f0_params=f0_params)
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

