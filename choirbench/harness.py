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
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.prepared import (ExcerptSampler, load_example, read_examples, read_manifest,
                                           small_subset)
from choirbench.data_prep.f0 import to_hop_grid
from choirbench.data_prep.f0_corruption import excerpt_seed, parse_corruption
from choirbench.data_prep.release import resample_audio
from choirbench.io import read_f0_table, read_voice_notes, read_wav, write_text, write_wav
from choirbench.memory import trim_heap
from choirbench.registry import Method, check_output, get
from choirbench.checkpoints import read_checkpoint, save_checkpoint, training_identity
from choirbench.params import Limit, resolve_params

log = logging.getLogger(__name__)

BATCH_SIZE = 8
"""Excerpts or blocks per :meth:`Method.separate_batch` call (memory grows with it; results do not change)."""
BATCH_AUDIO_S = 32.0
"""Blocks of a long recording are batched only up to this many seconds of audio per call (8 sf blocks of 4 s,
one U-Net block of 30 s): a batch of long blocks would need the memory blocks are there to save."""

ENTRY_DEFAULTS = {"model": "", "data": "full", "small_fraction": 0.03, "small_seed": 0,
                  "checkpoint_from": None, "params": {}, "train_parts": "SATB", "train_J": "per_J",
                  "excerpt_s": 4.0, "f0_source": "truth", "threads": 1, "seeds": None}
ENTRY_LIMITS = {"train_J": Limit(types=(str, int), choices=("per_J", 1, 2, 3, 4)), "seeds": Limit(types=(list,))}
"""``train_J``: ``per_J`` trains one model per test J on random J-voice combinations of
``train_parts`` (the paper's separate 2- and 4-voice models); a number J trains one model on
J-voice combinations and uses it for every test J (4 with SATB: one model of all four voices).
``seeds``: the training seeds of this entry (None: the run's ``seeds``); which jobs exist, not what one
computes, so it is neither in the training identity nor in the entry's config snapshot."""


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
    (:func:`choirbench.training.train`). Raises ChoirbenchError for a J the entry's
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
                      out_dir: Path, *, f0_corruption: str | None = None, corruption_seed: int = 0,
                      batch_size: int = BATCH_SIZE) -> None:
    """Separate every excerpt of a list into ``out_dir/{example_id}/{voice}.wav``.

    Excerpts are read ``batch_size`` at a time and those of equal shape are separated in one
    :meth:`Method.separate_batch` call (a trained model runs its network once per batch).

    ``f0_corruption`` (a spec such as ``offset_hz:+12``, see :mod:`choirbench.data_prep.f0_corruption`)
    corrupts each excerpt's F0 after loading and before the method sees it (robustness study);
    the error pattern is seeded by ``corruption_seed`` and the excerpt id.
    """
    corruption = parse_corruption(f0_corruption) if f0_corruption else None  # a typo fails before any work
    method = load_method(entry, checkpoint)
    rows = list(read_examples(examples_csv).itertuples())
    batch = max(1, int(batch_size))
    with tqdm(total=len(rows), desc=f"separate {entry['id']}", disable=None) as bar:
        for start in range(0, len(rows), batch):
            loaded = []
            for row in rows[start:start + batch]:
                ex = load_example(data_root, row, f0_source=entry["f0_source"], excerpt_s=entry["excerpt_s"])
                if corruption is not None:
                    ex = dataclasses.replace(ex, f0=corruption.apply(ex.f0, excerpt_seed(corruption_seed,
                                                                                         ex.example_id)))
                loaded.append(ex)
            # excerpts of equal shape (the workflow's lists: equal length, equal J) go through the model together
            groups: dict[tuple, list] = {}
            for ex in loaded:
                groups.setdefault((ex.mixture.shape, ex.f0.shape, method.needs_references), []).append(ex)
            for group in groups.values():
                _separate_group(method, group, entry["id"], Path(out_dir))
            bar.update(len(loaded))


def _separate_group(method: Method, group: list, method_id: str, out_dir: Path) -> None:
    """Separate excerpts of one shape in one :meth:`Method.separate_batch` call and write their voices."""
    if method.needs_references:  # informed bounds take each excerpt's own true voices
        results = [method.separate_with_parameters(ex.mixture, ex.sr, ex.f0, ex.notes, references=ex.voices)
                   for ex in group]
    else:
        voices, params = method.separate_batch(np.stack([ex.mixture for ex in group]), group[0].sr,
                                               np.stack([ex.f0 for ex in group]), [ex.notes for ex in group])
        results = list(zip(voices, params))
    for ex, (voices, params) in zip(group, results):
        voices = check_output(voices, ex.mixture, len(ex.parts), method_id)
        folder = out_dir / ex.example_id
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
        from choirbench.data_prep.voice_assignment import ASSIGN_DEFAULTS, mixture_f0, parse_voices

        names = list(parse_voices(voices, where="--voices"))
        params = resolve_params(ASSIGN_DEFAULTS, f0_params or {}, where="f0_mixture")
        log.info("%s: no F0 given: estimating the F0 of %s from the mixture (multi-F0 salience, %s assignment)",
                 mixture_path, "".join(names), params["assigner"])
        # mixture_f0 applies the readers' voiced range, so an estimated track obeys the rule a file does
        tracks = mixture_f0(audio, rate, names, len(x) // HOP, params)
        f0 = np.stack([tracks[name] for name in names])
        trim_heap()  # the estimator's freed memory must not add to the separation's peak
    notes = None
    if notes_path is not None:
        notes = read_voice_notes(notes_path, names, duration_s=duration_s, audio=Path(mixture_path).name)
    return audio, rate, x, f0, names, notes


def separate_file(mixture_path: Path, f0_path: Path | None, entry: dict, checkpoint: Path | None, out_dir: Path,
                  notes_path: Path | None = None, *, voices: str = "SATB", f0_params: dict | None = None,
                  block_s: float | None = None, overlap_s: float | None = None,
                  batch_size: int = BATCH_SIZE) -> list[Path]:
    """Separate a user's recording: any rate in, ``out_dir/{voice}.wav`` at that rate and length out.

    A recording longer than one block is separated in overlapping blocks of ``block_s`` seconds
    joined by ``overlap_s``-second cross-fades (defaults: the method's :attr:`Method.block_s` and
    :attr:`Method.overlap_s`), so memory stays bounded however long it is (:func:`separate_blocked`).

    Inputs are read by :func:`read_inputs` (every check before anything runs or is written); without
    ``f0_path`` each of ``voices``' F0 is first estimated from the recording, and the log says so.
    """
    plain = build(entry)
    block_s = plain.block_s if block_s is None else block_s
    overlap_s = plain.overlap_s if overlap_s is None else overlap_s
    plan_blocks(0, block_s, overlap_s)  # bad knobs fail before the F0 estimate or any work
    audio, rate, x, f0, names, notes = read_inputs(mixture_path, f0_path, notes_path, min_samples(plain),
                                                   entry["id"], voices=voices, f0_params=f0_params)
    method = load_method(entry, checkpoint)
    if method.needs_references:
        raise ChoirbenchError(f"method {entry['id']!r} needs the true voices and cannot separate a recording")
    peak = float(np.max(np.abs(x))) or 1.0
    x /= peak  # in place: a long recording is not copied
    voices = separate_blocked(method, x, f0, notes, block_s=block_s, overlap_s=overlap_s, batch_size=batch_size,
                              method_id=entry["id"])
    voices *= peak
    del x
    written = []
    for name, voice in zip(names, voices):
        y = resample_audio(voice, SAMPLE_RATE, rate)  # voice by voice: one float64 copy at a time
        y = np.pad(y, (0, max(0, len(audio) - len(y))))[: len(audio)]
        write_wav(Path(out_dir) / f"{name}.wav", y, rate)
        written.append(Path(out_dir) / f"{name}.wav")
    return written



# ----------------------------------------------------------------------------- long recordings

def plan_blocks(n_samples: int, block_s: float, overlap_s: float, *, shortest: int = HOP,
                where: str = "--block-s") -> list[tuple[int, int]]:
    """Overlapping blocks [(start, stop)] in samples at 16 kHz covering ``n_samples``.

    Starts lie on the 16-ms F0 grid (multiples of ``HOP``), so a block's F0 is a slice of the
    recording's F0 [J, T]. Consecutive blocks overlap by ``overlap_s`` (rounded to whole F0 frames);
    every block but the last is ``block_s`` long; a last block that would be shorter than the
    overlap plus ``shortest`` samples is merged into the one before. One block when the input fits
    (the whole-file path). Raises :class:`ChoirbenchError` unless 0 < overlap_s <= block_s / 2.
    """
    block = int(round(block_s * SAMPLE_RATE / HOP)) * HOP if block_s > 0 else 0
    overlap = int(round(overlap_s * SAMPLE_RATE / HOP)) * HOP if overlap_s > 0 else 0
    if not (math.isfinite(block_s) and math.isfinite(overlap_s)) or overlap <= 0 or block < 2 * overlap:
        raise ChoirbenchError(f"{where}: blocks of {block_s} s with {overlap_s} s overlap: need "
                              f"0 < overlap (at least one 16-ms frame) <= half the block")
    if n_samples <= block:
        return [(0, n_samples)]
    stride = block - overlap
    starts = list(range(0, n_samples - overlap, stride))
    if len(starts) > 1 and n_samples - starts[-1] < overlap + max(shortest, HOP):
        starts.pop()
    return [(a, min(a + block, n_samples)) if i < len(starts) - 1 else (a, n_samples)
            for i, a in enumerate(starts)]


def fade_in(n: int) -> np.ndarray:
    """Raised-cosine fade-in over ``n`` samples, sin^2; the fade-out is ``1 - fade_in``: they sum to one."""
    return np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2


def block_weight(blocks: list[tuple[int, int]], i: int) -> np.ndarray:
    """The weight [stop - start] of block ``i``'s output: 1, fading over each overlap with a neighbour."""
    a, b = blocks[i]
    w = np.ones(b - a, dtype=np.float32)
    if i > 0:
        n = blocks[i - 1][1] - a
        w[:n] = fade_in(n)
    if i < len(blocks) - 1:
        n = b - blocks[i + 1][0]
        w[len(w) - n:] *= (1.0 - fade_in(n)).astype(np.float32)
    return w


def crossfade_weights(blocks: list[tuple[int, int]]) -> list[np.ndarray]:
    """Every block's :func:`block_weight`; at every sample the weights of the blocks covering it sum to one
    (to float32 rounding)."""
    return [block_weight(blocks, i) for i in range(len(blocks))]


def cut_notes(notes: list[np.ndarray] | None, start_s: float, stop_s: float) -> list[np.ndarray] | None:
    """Notes [n, 3] (onset_s, offset_s, midi) per voice cut to [start_s, stop_s) and shifted to the block's time."""
    if notes is None:
        return None
    cut = []
    for voice in notes:
        voice = np.asarray(voice, dtype=np.float64).reshape(-1, 3)
        keep = voice[(voice[:, 1] > start_s) & (voice[:, 0] < stop_s)].copy()
        keep[:, :2] = np.clip(keep[:, :2], start_s, stop_s) - start_s
        cut.append(keep)
    return cut


def separate_blocked(method: Method, x: np.ndarray, f0: np.ndarray, notes: list[np.ndarray] | None = None, *,
                     block_s: float, overlap_s: float, batch_size: int = BATCH_SIZE,
                     method_id: str = "") -> np.ndarray:
    """Voices [J, N] of mixture ``x`` [N] at 16 kHz with F0 [J, T] (16-ms grid), separated block by block.

    Blocks come from :func:`plan_blocks`; each gets its slice of the F0 (and notes cut to it),
    blocks of equal length go through :meth:`Method.separate_batch` ``batch_size`` at a time (at most
    :data:`BATCH_AUDIO_S` seconds of audio per call),
    and each block's voices are added to the output with :func:`crossfade_weights`. Memory is
    that of one batch of blocks plus the output. A method that separates every sample (or STFT
    frame) from its neighbourhood alone gives the whole-file output away from the joins; one with
    context over the whole input (sf's excerpt normalisation and GRUs, U-Net's normalisation by the
    input's maximum, the NMFs' fitted templates) sees each block as an excerpt of its own. An input
    of at most one block takes the whole-file path unchanged.
    """
    J = len(f0)
    shortest = min_samples(method)
    blocks = plan_blocks(len(x), block_s, overlap_s, shortest=shortest)
    if len(blocks) == 1:
        return check_output(method.separate(x, SAMPLE_RATE, f0, notes), x, J, method_id)
    out = np.zeros((J, len(x)), dtype=np.float32)

    def block_f0(a, b):  # a is on the F0 grid: the block's frames are a slice (zero-padded if F0 runs short)
        f = f0[:, a // HOP: a // HOP + (b - a) // HOP]
        return np.pad(f, ((0, 0), (0, (b - a) // HOP - f.shape[-1])))

    per_call = max(1, min(int(batch_size), int(BATCH_AUDIO_S * SAMPLE_RATE // (blocks[0][1] - blocks[0][0]))))
    groups: list[list[int]] = []
    for i, (a, b) in enumerate(blocks):  # consecutive blocks of one length, per_call at a time
        first = blocks[groups[-1][0]] if groups else None
        if first is not None and len(groups[-1]) < per_call and first[1] - first[0] == b - a:
            groups[-1].append(i)
        else:
            groups.append([i])
    with tqdm(total=len(blocks), desc=f"separate {method_id or method.name} ({len(blocks)} blocks)",
              unit="block", disable=None) as bar:
        for group in groups:
            spans = [blocks[i] for i in group]
            mixtures = np.stack([x[a:b] for a, b in spans])
            f0s = np.stack([block_f0(a, b) for a, b in spans])
            block_notes = [cut_notes(notes, a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in spans]
            voices, _ = method.separate_batch(mixtures, SAMPLE_RATE, f0s, block_notes, parameters=False)
            for i, (a, b), v in zip(group, spans, voices):
                v = check_output(v, x[a:b], J, method_id)
                out[:, a:b] += v * block_weight(blocks, i)  # weights per block: no [N] array besides the output
            bar.update(len(group))
    return out
