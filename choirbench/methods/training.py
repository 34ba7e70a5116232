"""The one training loop shared by every trainable method (source-filter model, U-Net).

What it guarantees, so that methods don't each re-implement it:

* Adam with weight decay, step-wise LR decay, early stopping on the validation
  loss (patience counted in validations);
* a checkpoint ``last.pt`` every ``checkpoint_every`` steps, written atomically,
  holding model, optimiser, scheduler, counters, the best weights and every RNG
  state (torch and the data sampler), so that a run killed and restarted ends
  exactly where an uninterrupted run ends (same seed, CPU);
* ``train_log.csv`` (step, split, loss, lr, elapsed_s) and progress in the log;
* ``model.pt`` (the best weights) written last: its presence means "done".

A method supplies the model, a ``loss_fn(model, batch) -> scalar tensor``, a
sampler with ``batch(size)``, ``get_state()``, ``set_state()`` and a fixed list
of validation batches.
"""
from __future__ import annotations

import csv
import ctypes
import logging
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch

from choirbench.io import atomic_path
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
    "mmap_threshold_mb": 0,   # glibc: allocations above this size go straight to the OS (0 = glibc's default)
}
TRAIN_LIMITS: dict[str, Limit] = {
    "steps": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE, "weight_decay": NON_NEGATIVE,
    "lr_decay": Limit(above=0, maximum=1), "lr_decay_every": POSITIVE, "valid_every": POSITIVE,
    "patience": NON_NEGATIVE, "checkpoint_every": POSITIVE, "grad_clip": NON_NEGATIVE,
    "mmap_threshold_mb": NON_NEGATIVE,
}
"""Ranges of the training knobs, checked with their types when the workflow loads."""


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

    @classmethod
    def from_params(cls, params: dict) -> "TrainSettings":
        return cls(**{f.name: params[f.name] for f in fields(cls)})


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_mmap_threshold(megabytes: int) -> bool:
    """Make glibc hand allocations above ``megabytes`` straight back to the OS when freed.

    By default glibc raises this threshold as large blocks are freed (up to
    32 MB), so a training step's big temporaries are recycled inside the heap,
    where fragmentation can hold hundreds of MB more than is ever live. A fixed
    threshold (16 MB measured best for the paper-size source-filter step: peak
    about 2.1 -> 1.7 GB for 10-20 % more time) trades a little time for a lower peak.
    Returns False where it does not apply (not glibc, or 0).
    """
    if megabytes <= 0:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_MMAP_THRESHOLD = -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(megabytes) << 20))


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def train(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], sampler,
          valid_batches: list, out_dir: Path, settings: TrainSettings, seed: int,
          to_batch: Callable[[Any], Any] = lambda b: b, extra: dict | None = None) -> Path:
    """Train ``model`` and return the path of ``model.pt`` (see the module docstring).

    ``to_batch`` turns what ``sampler.batch`` returns into what ``loss_fn``
    takes (e.g. numpy -> tensors on the device); ``extra`` is stored in
    ``model.pt`` (e.g. the model's hyperparameters, to rebuild it).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final, last, log_path = out_dir / "model.pt", out_dir / "last.pt", out_dir / "train_log.csv"
    set_mmap_threshold(settings.mmap_threshold_mb)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, settings.lr_decay_every), gamma=settings.lr_decay)
    step, best, best_state, bad_validations, elapsed = 0, math.inf, None, 0, 0.0

    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, best, best_state = state["step"], state["best"], state["best_state"]
        bad_validations, elapsed = state["bad_validations"], state["elapsed_s"]
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        sampler.set_state(state["sampler"])
        _truncate_log(log_path, step)
        log.info("resumed from %s at step %d", last, step)
    elif log_path.exists():
        log_path.unlink()

    def checkpoint() -> None:
        save_checkpoint(last, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "step": step, "best": best, "best_state": best_state, "bad_validations": bad_validations,
            "elapsed_s": elapsed, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "sampler": sampler.get_state()})

    with open(log_path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if handle.tell() == 0:
            writer.writerow(["step", "split", "loss", "lr", "elapsed_s"])
        started = time.perf_counter() - elapsed
        stop = False
        while step < settings.steps and not stop:
            model.train()
            batch = to_batch(sampler.batch(settings.batch_size))
            loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss is {loss.item()} at step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            opt.step()
            sched.step()
            del batch  # before the next batch is built: two batches alive at once would raise the peak
            step += 1
            elapsed = time.perf_counter() - started
            writer.writerow([step, "train", f"{loss.item():.6g}", f"{sched.get_last_lr()[0]:.3g}", f"{elapsed:.2f}"])
            if step % settings.valid_every == 0 or step == settings.steps:
                valid = validate(model, loss_fn, valid_batches, to_batch)
                writer.writerow([step, "valid", f"{valid:.6g}", f"{sched.get_last_lr()[0]:.3g}", f"{elapsed:.2f}"])
                if valid < best:
                    best, bad_validations = valid, 0
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                else:
                    bad_validations += 1
                    stop = bad_validations >= settings.patience
                log.info("step %d/%d  train %.4g  valid %.4g  best %.4g  (%.0f s)",
                         step, settings.steps, loss.item(), valid, best, elapsed)
                if stop:
                    log.info("early stop: %d validations without improvement", bad_validations)
            if step % settings.checkpoint_every == 0 or stop or step == settings.steps:
                handle.flush()
                checkpoint()

    if best_state is None:  # no validation data: keep the last weights
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_checkpoint(final, {"model": best_state, "step": step, "best_valid": best, **(extra or {})})
    return final


@torch.no_grad()
def validate(model, loss_fn, valid_batches, to_batch) -> float:
    """Mean loss over the fixed validation batches, in eval mode."""
    if not valid_batches:
        return math.inf
    model.eval()
    total = sum(float(loss_fn(model, to_batch(b))) for b in valid_batches)
    return total / len(valid_batches)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from."""
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step] if rows else []
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)
