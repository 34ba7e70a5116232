"""The one training loop shared by every trainable method (source-filter model, U-Net).

What it guarantees, so that methods don't each re-implement it:

* Adam with weight decay, step-wise LR decay, early stopping on the validation
  loss (patience counted in validations);
* a checkpoint ``last.pt`` every ``checkpoint_every`` steps, written atomically,
  holding model, optimiser, scheduler, counters, the best weights, every RNG
  state (torch and the data sampler) and the log so far, so that a run killed
  and restarted ends exactly where an uninterrupted run ends (same seed, CPU),
  with its full ``train_log.csv``;
* ``train_log.csv`` (step, split, loss, lr, elapsed_s) and a progress line (step,
  loss, validation loss, ETA: :func:`progress_line`) at every validation and at
  least every minute in the log;
* ``micro_batch``: a batch may go through forward and backward in pieces, its
  gradient accumulated (:func:`accumulate_gradients`): the same training with a
  lower peak memory;
* ``model.pt`` (the best weights) written last: its presence means "done";
* every checkpoint records the training identity (entry, data, seed) and its
  hash, and only a matching one is resumed or reused (a stale one is moved
  aside): see :mod:`choirbench.checkpoints`, which reads and writes
  them without pickled code and byte-reproducibly.

A method supplies the model, a ``loss_fn(model, batch) -> scalar tensor``, a
sampler with ``batch(size)``, ``get_state()``, ``set_state()`` (a state of
plain values, e.g. NumPy's ``bit_generator.state``) and a fixed list of
validation batches.
"""
from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch

from choirbench import ChoirbenchError
from choirbench.io import atomic_path
from choirbench.memory import keep_freed_memory, set_mmap_threshold
from choirbench.registry import Method
from choirbench.checkpoints import (OldCheckpointError, describe_changes, identity_sha256, load_weights,
                                            read_checkpoint, save_checkpoint, training_identity)
from choirbench.params import NON_NEGATIVE, POSITIVE, Limit

log = logging.getLogger(__name__)

TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 2000,            # maximum number of optimiser steps
    "batch_size": 16,
    "lr": 1e-4,
    "weight_decay": 0.0,
    "lr_decay": 0.98,         # multiply the LR by this ...
    "lr_decay_every": 1000,   # ... every this many steps
    "valid_every": 100,       # steps between validations
    "patience": 20,           # validations without improvement before stopping
    "checkpoint_every": 100,  # steps between `last.pt` checkpoints
    "grad_clip": 0.0,         # max gradient norm (0 = off)
    "mmap_threshold_mb": 0,   # glibc: allocations above this size go straight to the OS (0 = keep freed memory for speed)
    "micro_batch": 0,         # excerpts per forward/backward pass, gradients accumulated (0 = the whole batch)
}
TRAIN_LIMITS: dict[str, Limit] = {
    "steps": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE, "weight_decay": NON_NEGATIVE,
    "lr_decay": Limit(above=0, maximum=1), "lr_decay_every": POSITIVE, "valid_every": POSITIVE,
    "patience": NON_NEGATIVE, "checkpoint_every": POSITIVE, "grad_clip": NON_NEGATIVE,
    "mmap_threshold_mb": NON_NEGATIVE, "micro_batch": NON_NEGATIVE,
}
"""Ranges of the training knobs, checked with their types when the workflow loads."""

RUNTIME_PARAMS = frozenset({"checkpoint_every", "mmap_threshold_mb", "micro_batch"})
"""Training knobs that change how a run goes, not the weights it ends with (part of a method's ``inference_params``).

``micro_batch`` belongs here because the accumulated gradient is the whole batch's gradient (see
:func:`accumulate_gradients`): a run differs from one with another ``micro_batch`` only by the
order of floating-point sums, so a checkpoint resumes and a model loads across it."""


@dataclass
class TrainSettings:
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    lr_decay: float
    lr_decay_every: int
    valid_every: int
    patience: int
    checkpoint_every: int
    grad_clip: float
    mmap_threshold_mb: int
    micro_batch: int

    @classmethod
    def from_params(cls, params: dict) -> "TrainSettings":
        return cls(**{f.name: params[f.name] for f in fields(cls)})


def check_micro_batch(params: dict, where: str) -> None:
    """Raise ChoirbenchError naming ``{where}.micro_batch`` unless it is 0 or at most ``batch_size``.

    (Its sign is checked with its type, by :data:`TRAIN_LIMITS`.) A micro-batch larger than the batch
    would do nothing a researcher could want; it is a typo or a misunderstanding, so it is refused.
    """
    size, batch = params["micro_batch"], params["batch_size"]
    if size > batch:
        raise ChoirbenchError(f"{where}.micro_batch must be 0 (the whole batch) or at most batch_size ({batch}), "
                              f"got {size}")


def micro_batches(batch: Any, size: int) -> list[tuple[Any, float]]:
    """``batch`` cut into pieces of at most ``size`` examples, each with its share of the batch (n_i / B).

    ``batch`` is a tensor [B, ...] or a tuple/list of them (``None`` entries pass through); every
    tensor is sliced along its first dimension (views, no copies). ``size`` 0, or not less than B,
    gives the batch itself with share 1. The last piece may be smaller (15 in fives: 5, 5, 5;
    in fours: 4, 4, 4, 3).
    """
    def rows(item):
        if isinstance(item, torch.Tensor):
            return item.shape[0]
        if isinstance(item, (tuple, list)):
            return next((n for n in map(rows, item) if n is not None), None)
        return None

    def cut(item, start: int, stop: int):
        if isinstance(item, torch.Tensor):
            return item[start:stop]
        if isinstance(item, (tuple, list)):
            return type(item)(cut(x, start, stop) for x in item)
        return item

    total = rows(batch)
    if total is None:
        raise TypeError("micro_batches: the batch holds no tensor")
    if size <= 0 or size >= total:
        return [(batch, 1.0)]
    return [(cut(batch, start, min(start + size, total)), (min(start + size, total) - start) / total)
            for start in range(0, total, size)]


def accumulate_gradients(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
                         batch: Any, micro_batch: int, step: int) -> torch.Tensor:
    """Forward and backward of ``batch`` in micro-batches of ``micro_batch`` examples (0: all at once).

    Adds the gradient of the whole batch's loss to the parameters' ``.grad`` and returns that loss
    (detached when split). Valid for a loss that is a mean over the batch's examples of per-example
    terms of equal weight, from a network with no coupling across the batch (no batch
    normalisation): then L = sum_i (n_i / B) L_i over micro-batches i of n_i examples, so weighting
    each micro-batch's loss by its share and summing the gradients gives dL exactly (up to the order
    of floating-point sums). Only one micro-batch's activations are alive at a time, which is the
    point: the peak memory of a step falls with the micro-batch size, its arithmetic does not change.
    Raises FloatingPointError on a non-finite loss, before that piece's backward.
    """
    pieces = micro_batches(batch, micro_batch)
    if len(pieces) == 1:  # the whole batch: exactly the plain step (no scaling by 1)
        loss = loss_fn(model, batch)
        _check_finite(loss, step)
        loss.backward()
        return loss
    total = None
    for piece, share in pieces:
        part = loss_fn(model, piece) * share
        _check_finite(part, step)
        part.backward()
        total = part.detach() if total is None else total + part.detach()
        del piece, part  # this micro-batch's graph is freed before the next one is built
    return total


def _check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss is {loss.item()} at step {step + 1}")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], sampler,
          valid_batches: list, out_dir: Path, settings: TrainSettings, seed: int, *, method: Method,
          provenance: dict | None = None, to_batch: Callable[[Any], Any] = lambda b: b) -> Path:
    """Train ``model`` and return the path of ``model.pt`` (see the module docstring).

    ``method`` is the method being trained (its name, params and
    ``inference_params`` go into the checkpoints); ``provenance`` is what the
    harness knows about the run (entry, training data identity; see
    :func:`choirbench.checkpoints.training_identity`). ``to_batch``
    turns what ``sampler.batch`` returns into what ``loss_fn`` takes (e.g.
    numpy -> tensors on the device).

    A ``model.pt`` or ``last.pt`` already in ``out_dir`` is used only when its
    training identity matches this run's (same hash): a finished model is
    returned as it is, a resume point is resumed. Otherwise the file is moved
    aside (``*.stale.pt``), a warning names what changed, and training starts
    afresh. Raises ChoirbenchError when such a file is not a readable checkpoint.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final, last, log_path = out_dir / "model.pt", out_dir / "last.pt", out_dir / "train_log.csv"
    identity = training_identity(method.name, method.training_params(), seed, provenance)
    header = {"method": method.name, "training": identity, "training_sha256": identity_sha256(identity),
              "entry": {**(provenance or {}).get("entry", {"id": method.name, "model": method.name}),
                        "params": dict(method.params)}}
    if _matching(final, header) is not None:
        log.info("%s: already trained with these settings (training hash %s)", final, header["training_sha256"][:12])
        return final
    resume = _matching(last, header)

    if not set_mmap_threshold(settings.mmap_threshold_mb):  # a memory cap asked for, else speed
        keep_freed_memory()
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, settings.lr_decay_every), gamma=settings.lr_decay)
    step, best, best_state, bad_validations, elapsed, rows = 0, math.inf, None, 0, 0.0, []

    if resume is not None:
        load_weights(model, resume["model"], last)
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        step, best, best_state = resume["step"], resume["best"], resume["best_state"]
        bad_validations, elapsed = resume["bad_validations"], resume["elapsed_s"]
        torch.set_rng_state(resume["torch_rng"])
        if torch.cuda.is_available() and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(resume["cuda_rng"])
        sampler.set_state(resume["sampler"])
        rows = _log_rows(resume["log"])
        log.info("resumed from %s at step %d", last, step)
    # the log is rewritten from the checkpoint: a workflow manager may have deleted the file of a killed job
    _write_log(log_path, rows)

    def checkpoint() -> None:
        save_checkpoint(last, {
            **header, "kind": "resume",
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "step": step, "best": best, "best_state": best_state, "bad_validations": bad_validations,
            "elapsed_s": elapsed, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "sampler": sampler.get_state(), "log": _log_tensors(rows)})

    with open(log_path, "a", newline="") as handle:
        writer = csv.writer(handle)

        def log_row(*row) -> None:
            rows.append(row)
            writer.writerow(_format_row(row))

        started = time.perf_counter() - elapsed
        first_step, first_elapsed, last_progress = step, elapsed, elapsed
        run = f"{header['entry'].get('id', method.name)} seed {seed}"  # the entry (sf-us), not the model (sf)
        stop = False
        while step < settings.steps and not stop:
            model.train()
            batch = to_batch(sampler.batch(settings.batch_size))
            opt.zero_grad(set_to_none=True)
            loss = accumulate_gradients(model, loss_fn, batch, settings.micro_batch, step)
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            opt.step()
            sched.step()
            del batch  # before the next batch is built: two batches alive at once would raise the peak
            step += 1
            elapsed = time.perf_counter() - started
            log_row(step, "train", loss.item(), sched.get_last_lr()[0], elapsed)
            if elapsed - last_progress >= PROGRESS_EVERY_S and step % settings.valid_every:
                # long stretches between validations still show the run is alive, and its ETA
                log.info("%s", progress_line(run, step, settings.steps, loss.item(),
                                             None, best, elapsed, run_s=elapsed - first_elapsed,
                                             steps_run=step - first_step))
                last_progress = elapsed
            if step % settings.valid_every == 0 or step == settings.steps:
                valid = validate(model, loss_fn, valid_batches, to_batch, settings.micro_batch)
                log_row(step, "valid", valid, sched.get_last_lr()[0], elapsed)
                if valid < best:
                    best, bad_validations = valid, 0
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                else:
                    bad_validations += 1
                    stop = bad_validations >= settings.patience
                log.info("%s", progress_line(run, step, settings.steps, loss.item(), valid,
                                             best, elapsed, run_s=elapsed - first_elapsed, steps_run=step - first_step))
                last_progress = elapsed
                if stop:
                    log.info("early stop: %d validations without improvement", bad_validations)
            if step % settings.checkpoint_every == 0 or stop or step == settings.steps:
                handle.flush()
                checkpoint()

    if best_state is None:  # no validation data: keep the last weights
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_checkpoint(final, {**header, "kind": "model", "model": best_state, "step": step, "best_valid": best})
    return final


PROGRESS_EVERY_S = 60.0
"""Seconds between progress lines when no validation falls in between."""


def _duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def progress_line(run: str, step: int, steps: int, loss: float, valid: float | None, best: float, elapsed_s: float,
                  *, run_s: float, steps_run: int) -> str:
    """One line of training progress, e.g.
    ``progress sf-us seed 0: step 120/2000 (6%)  loss 0.4132  valid 0.3981  best 0.3981  elapsed 2:05  ETA 32:40``.

    ``valid`` is None between validations (shown as ``-``). The ETA is the remaining steps times the
    seconds per step of this process (``run_s`` / ``steps_run``, so a resumed run is not credited with
    the time before its restart); ``?`` before the first step. Durations are m:ss or h:mm:ss. The
    workflow's train rule shows the lines starting with ``progress`` on the console.
    """
    eta = _duration((steps - step) * run_s / steps_run) if steps_run > 0 else "?"
    valid_text = "-" if valid is None else f"{valid:.4g}"
    best_text = "-" if not math.isfinite(best) else f"{best:.4g}"
    return (f"progress {run}: step {step}/{steps} ({100 * step // max(steps, 1)}%)  loss {loss:.4g}  "
            f"valid {valid_text}  best {best_text}  elapsed {_duration(elapsed_s)}  ETA {eta}")


def _matching(path: Path, header: dict) -> dict | None:
    """The checkpoint at ``path`` if it was written by a run with this training identity, else None.

    A file from another run (or an older choirbench) is moved aside to
    ``{stem}.stale.pt`` with a warning naming what changed: its weights must
    never end up under the new settings.
    """
    if not path.is_file():
        return None
    try:
        state = read_checkpoint(path)
    except OldCheckpointError:
        state = None
    except ChoirbenchError as err:
        raise ChoirbenchError(f"{err}; delete it to train afresh") from None
    if state is not None and state.get("training_sha256") == header["training_sha256"]:
        return state
    changes = (describe_changes(state.get("training"), header["training"]) if state
               else "written by an older choirbench, without a training identity")
    aside = path.with_name(f"{path.stem}.stale.pt")
    path.replace(aside)
    log.warning("%s was trained under other settings (%s): moved to %s, training starts afresh",
                path, changes, aside.name)
    return None


_SPLITS = ("train", "valid")


def _format_row(row: tuple) -> list[str]:
    step, split, loss, lr, elapsed = row
    return [str(step), split, f"{loss:.6g}", f"{lr:.3g}", f"{elapsed:.2f}"]


def _log_tensors(rows: list[tuple]) -> dict[str, torch.Tensor]:
    """The log rows as tensors (compact in the checkpoint, and exact: the CSV is formatted from them)."""
    columns = list(zip(*rows)) if rows else [()] * 5
    return {"step": torch.tensor(columns[0], dtype=torch.int64),
            "split": torch.tensor([_SPLITS.index(s) for s in columns[1]], dtype=torch.uint8),
            "loss": torch.tensor(columns[2], dtype=torch.float64),
            "lr": torch.tensor(columns[3], dtype=torch.float64),
            "elapsed_s": torch.tensor(columns[4], dtype=torch.float64)}


def _log_rows(log: dict[str, torch.Tensor]) -> list[tuple]:
    columns = [log[k].tolist() for k in ("step", "split", "loss", "lr", "elapsed_s")]
    return [(s, _SPLITS[k], loss, lr, t) for s, k, loss, lr, t in zip(*columns)]


def _write_log(path: Path, rows: list[tuple]) -> None:
    """``train_log.csv`` with the header and ``rows`` (atomically)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "split", "loss", "lr", "elapsed_s"])
        writer.writerows(_format_row(r) for r in rows)


@torch.no_grad()
def validate(model, loss_fn, valid_batches, to_batch, micro_batch: int = 0) -> float:
    """Mean loss over the fixed validation batches, in eval mode.

    Each batch's loss is taken in micro-batches of ``micro_batch`` examples (0: whole), weighted by
    their shares, as in training (:func:`accumulate_gradients`): the same value, a lower peak.
    """
    if not valid_batches:
        return math.inf
    model.eval()
    total = 0.0
    for raw in valid_batches:
        batch = to_batch(raw)
        pieces = micro_batches(batch, micro_batch)
        total += float(loss_fn(model, batch)) if len(pieces) == 1 else \
            sum(float(loss_fn(model, piece)) * share for piece, share in pieces)
        del batch, pieces
    return total / len(valid_batches)
