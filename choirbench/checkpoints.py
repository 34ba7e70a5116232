"""Checkpoints that cannot run code: every save and load of a trained model or resume point goes through here.

A checkpoint is a torch zip archive holding only tensors and plain Python
values (dict, list, tuple, str, int, float, bool, None), read back with
``torch.load(weights_only=True)``: PyTorch's restricted unpickler, which
refuses any global other than tensor reconstruction, so a file from a
colleague or a download cannot execute code while it is read. Layout::

    format: "choirbench-checkpoint", version: 1
    kind:   "model" (a finished training: model.pt) or "resume" (last.pt)
    method: the registered model name ("sf", "unet")
    entry:  the method entry it was trained with (params fully resolved)
    training, training_sha256: what shaped the training (see training_identity) and its hash
    model:  the state dict; resume points add optimiser, scheduler, RNG and sampler state and the log

Writes go through a file object, so the archive's inner folder is the fixed
``archive/`` rather than the temporary file's name: the same state gives the
same bytes. Every problem with a file (missing, empty, truncated, text, another
method's model, a pickle naming code, an entry that does not match) is one
:class:`~choirbench.ChoirbenchError` line naming the file.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable

import torch

from choirbench import ChoirbenchError
from choirbench.io import atomic_path

FORMAT = "choirbench-checkpoint"
VERSION = 1
KINDS = {"model": "a trained model (model.pt)", "resume": "a resume point of an unfinished training (last.pt)"}


class OldCheckpointError(ChoirbenchError):
    """A checkpoint written by choirbench before checkpoints recorded their entry."""


def _check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raise TypeError if ``value`` holds anything but tensors and plain values (what weights_only reads back)."""
    if value is None or isinstance(value, (str, bool, int, float, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__} (only str and int keys are stored)")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__name__}: "
                    "a checkpoint stores only tensors and plain Python values")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` atomically to ``path`` with the format header; identical states give identical bytes.

    ``state`` must hold ``kind``, ``method`` and ``entry`` and nothing but
    tensors and plain values (else TypeError: a programming error, not bad input).
    """
    missing = [k for k in ("kind", "method", "entry") if k not in state]
    if missing or state["kind"] not in KINDS:
        raise TypeError(f"checkpoint state needs kind (one of {sorted(KINDS)}), method and entry; missing {missing}")
    state = {"format": FORMAT, "version": VERSION, **state}
    _check_plain(state)
    # a file object, not a path: torch names the archive's folder after the file's stem (here a random temp name)
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNPICKLER = re.compile(r"WeightsUnpickler error: ([^\n]*)")


def read_checkpoint(path: Path, *, old_format: bool = False) -> dict:
    """The state stored in ``path``, read without running code; any problem is one ChoirbenchError line.

    Checks the container and the format header only; :func:`load_checkpoint`
    adds the method, kind and entry checks. A file of the format before the
    header (a dict of tensors and plain values too) raises OldCheckpointError,
    unless ``old_format`` asks for exactly such a file (for the converter).
    """
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise ChoirbenchError(f"{path}: empty file, not a checkpoint")
    if not zipfile.is_zipfile(path):
        raise ChoirbenchError(f"{path}: not a checkpoint (not a torch zip archive: truncated, text or another format)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found, other = _GLOBAL.search(str(err)), _UNPICKLER.search(str(err))
        what = (f"unpickling it would call or build {found.group(1)}" if found else
                f"its pickle is not plain data ({other.group(1).strip()[:200] if other else 'unsupported content'})")
        raise ChoirbenchError(f"{path}: refused: {what}; a checkpoint holds only tensors and plain values "
                              "(the file was not written by choirbench, or was tampered with)") from None
    except Exception as err:  # the zip reader and unpickler raise RuntimeError, EOFError, KeyError, ...
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ChoirbenchError(f"{path}: not a readable checkpoint (damaged or truncated: {reason})") from None
    old = isinstance(state, dict) and "model" in state and bool({"arch", "unet", "optimizer"} & set(state))
    if old_format:
        if not old or state.get("format") == FORMAT:
            raise ChoirbenchError(f"{path}: not a checkpoint of the format before {FORMAT!r} version 1")
        return state
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        if old:
            raise OldCheckpointError(
                f"{path}: written by an older choirbench without its training entry; convert it once with "
                f"`choirbench convert-checkpoint {path} NEW.pt --method-config ENTRY.json` (the entry it was "
                "trained with), or retrain")
        raise ChoirbenchError(f"{path}: not a choirbench checkpoint (no {FORMAT!r} header)")
    if not isinstance(state.get("version"), int) or state["version"] > VERSION:
        raise ChoirbenchError(f"{path}: checkpoint format version {state.get('version')!r} is newer than this "
                              f"choirbench reads ({VERSION}); update choirbench")
    for key in ("kind", "method", "entry", "model"):
        if key not in state:
            raise ChoirbenchError(f"{path}: damaged checkpoint (no {key!r})")
    return state


def load_checkpoint(path: Path, *, method: str, kind: str = "model", params: dict | None = None,
                    defaults: dict | None = None, inference_params: Iterable[str] = (),
                    entry: dict | None = None) -> dict:
    """Read ``path`` safely and check that it is ``method``'s ``kind`` trained as the caller's entry says.

    ``params`` (the loading entry's resolved method params) must equal the
    recorded ones on every key except ``inference_params``, which do not shape
    the trained weights; a key the checkpoint lacks (added to the method later)
    counts as its value in ``defaults``. ``entry`` (entry-level keys that shape
    training, see :func:`choirbench.harness.training_entry`) must match
    likewise. Raises ChoirbenchError naming the file and the differing keys.
    """
    state = read_checkpoint(path)
    if state["method"] != method:
        raise ChoirbenchError(f"{path}: a {state['method']!r} checkpoint, not {method!r}")
    if state["kind"] != kind:
        raise ChoirbenchError(f"{path}: {KINDS.get(state['kind'], state['kind'])}, not {KINDS[kind]}")
    recorded = state["entry"]
    if params is not None:
        skip = set(inference_params)
        differing = _differences(recorded.get("params", {}), params, defaults or {}, skip)
        if differing:
            raise ChoirbenchError(f"{path}: trained with other method params than the entry's: {differing} "
                                  f"(only {', '.join(sorted(skip)) or 'none'} may differ from training)")
    if entry is not None:  # only the keys it records: a model trained outside the harness makes no claim on them
        shared = [k for k in entry if k in recorded]
        differing = _differences({k: recorded[k] for k in shared}, {k: entry[k] for k in shared}, {}, set())
        if differing:
            raise ChoirbenchError(f"{path}: trained with another entry: {differing}")
    return state


def _differences(recorded: dict, current: dict, defaults: dict, skip: set) -> str:
    """'key (checkpoint A, entry B); ...' for the keys whose values differ, or ''."""
    parts = []
    for key in sorted(set(recorded) | set(current)):
        if key in skip:
            continue
        missing = object()
        old = recorded.get(key, defaults.get(key, missing))
        new = current.get(key, missing)
        if _canonical(old) != _canonical(new):
            show = lambda v: "absent" if v is missing else json.dumps(v, default=str)  # noqa: E731
            parts.append(f"{key} (checkpoint {show(old)}, entry {show(new)})")
    return "; ".join(parts)


def _canonical(value: Any) -> Any:
    """Tuples as lists and integral floats as ints, so 1 == 1.0 and (1, 2) == [1, 2] as in the config."""
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def training_identity(method: str, params: dict, seed: int, provenance: dict | None = None) -> dict:
    """Everything that shapes a training run: model, training-relevant params, seed, entry keys, data identity.

    ``provenance`` comes from the harness (:func:`choirbench.harness.train`):
    ``{"entry": the full entry, "training_entry": its keys that shape training,
    "data": the training data's identity}``; a direct ``fit`` call has none.
    """
    provenance = provenance or {}
    return _canonical({"version": VERSION, "method": method, "params": params, "seed": int(seed),
                       "entry": provenance.get("training_entry", {}), "data": provenance.get("data", {})})


def identity_sha256(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def describe_changes(old: dict | None, new: dict, limit: int = 6) -> str:
    """The dotted keys whose values differ between two training identities, e.g. 'params.lr 0.001 -> 0.01'."""
    if not old:
        return "no training identity recorded"
    flat_old, flat_new = _flatten(old), _flatten(new)
    changes = []
    for key in sorted(set(flat_old) | set(flat_new)):
        a, b = flat_old.get(key, "absent"), flat_new.get(key, "absent")
        if a != b:
            short = len(json.dumps(a, default=str)) + len(json.dumps(b, default=str)) < 60
            changes.append(f"{key} {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}" if short
                           else f"{key} changed")
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more or "nothing visible changed"


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load_weights(module: torch.nn.Module, weights: dict, path: Path) -> None:
    """``module.load_state_dict(weights)``; a mismatch is one ChoirbenchError line naming the file."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ChoirbenchError(f"{path}: the stored weights do not fit the network its entry builds "
                              f"({reason})") from None
