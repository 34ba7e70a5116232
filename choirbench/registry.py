"""The method contract and the registry of methods by id.

A method is one class in one module under :mod:`choirbench.methods`, registered
with :func:`register`. The harness only ever calls:

* ``Method(params, device=...)`` - ``params`` from the method's config entry;
  unknown keys are an error (a config typo must not pass silently);
* ``fit(train, valid, out_dir, seed, provenance=None)`` (trainable methods
  only) - writes ``out_dir/model.pt`` and a CSV log, resumes from
  ``out_dir/last.pt`` (through :mod:`choirbench.training`);
* ``load(checkpoint, entry=None)`` (trainable methods only) - reads the file
  safely and checks it (:mod:`choirbench.checkpoints`), then hands its
  state to the method's ``load_state``;
* ``separate(mixture[N], sr, f0[J, T], notes) -> voices[J, N]``.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from choirbench import ChoirbenchError
from choirbench.checkpoints import load_checkpoint
from choirbench.params import Limit, resolve_params

_REGISTRY: dict[str, type["Method"]] = {}


class Method:
    """Base class: holds the resolved parameters; subclasses implement ``separate``."""

    name: ClassVar[str] = ""
    trainable: ClassVar[bool] = False
    needs_references: ClassVar[bool] = False
    """Informed bounds (``oracle``) get the true voices: ``separate(..., references=...)``."""
    defaults: ClassVar[dict[str, Any]] = {}
    """Every knob a researcher can turn, with its default value (which also fixes the knob's type)."""
    limits: ClassVar[dict[str, Limit]] = {}
    """Ranges and extra types of knobs, beyond the defaults' types (see :mod:`choirbench.params`)."""
    smoke_params: ClassVar[dict[str, Any]] = {}
    """Tiny settings (a few training steps, narrow layers) for the contract test."""
    inference_params: ClassVar[frozenset[str]] = frozenset()
    """Trainable methods: the knobs that do not shape the trained weights (output mode, device, checkpoint
    cadence). A trained model loads under an entry that differs from its training entry only in these."""

    block_s: ClassVar[float] = 30.0
    """Long inputs (``separate_file``) are separated in blocks of this many seconds (see
    :func:`choirbench.harness.separate_blocked`); a method's default, overridden by ``--block-s``."""
    overlap_s: ClassVar[float] = 1.0
    """Seconds by which consecutive blocks overlap; the join is a raised-cosine cross-fade over them."""

    def __init__(self, params: dict | None = None, *, device: str = "cpu"):
        self.params = resolve_params(self.defaults, params or {}, where=f"methods.{self.name}.params",
                                     limits=self.limits)
        self.device = device

    @property
    def uses_isolated_voices(self) -> bool:
        """Whether training may see isolated voices (False: the harness hides them)."""
        return False

    def training_params(self) -> dict[str, Any]:
        """The params that shape the trained weights: all but :attr:`inference_params`."""
        return {k: v for k, v in self.params.items() if k not in self.inference_params}

    def fit(self, train, valid, out_dir: Path, seed: int,
            provenance: dict | None = None) -> Path:  # pragma: no cover - interface
        raise NotImplementedError(f"method {self.name!r} is not trainable")

    def load(self, checkpoint: Path, entry: dict | None = None) -> None:
        """Load ``checkpoint`` (a ``model.pt`` of this method) without running code from it.

        Refused with one ChoirbenchError line naming the file when it is not a
        valid checkpoint of this method, or when it was trained with params
        (or, given ``entry``, entry-level training keys) other than this
        method's, apart from :attr:`inference_params`.
        """
        if not self.trainable:
            raise NotImplementedError(f"method {self.name!r} has no checkpoint")
        state = load_checkpoint(checkpoint, method=self.name, params=self.params, defaults=self.defaults,
                                inference_params=self.inference_params, entry=entry)
        self.load_state(state, Path(checkpoint))

    def load_state(self, state: dict, path: Path) -> None:  # pragma: no cover - interface
        """Rebuild the trained model from a checked checkpoint's state (``state["model"]``: the weights)."""
        raise NotImplementedError(f"method {self.name!r} has no checkpoint")

    def separate(self, mixture: np.ndarray, sr: int, f0: np.ndarray, notes: list[np.ndarray] | None = None,
                 **kwargs) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def separate_with_parameters(self, mixture: np.ndarray, sr: int, f0: np.ndarray,
                                 notes: list[np.ndarray] | None = None, **kwargs
                                 ) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
        """The voices plus, for methods with interpretable parameters, those parameters (else None).

        The harness calls this, so a model computes its controls once for both.
        """
        return self.separate(mixture, sr, f0, notes, **kwargs), None

    def separate_batch(self, mixtures: np.ndarray, sr: int, f0s: np.ndarray,
                       notes: list[list[np.ndarray] | None] | None = None, *, parameters: bool = True, **kwargs
                       ) -> tuple[np.ndarray, list[dict[str, np.ndarray] | None]]:
        """Separate B excerpts of equal length and voice count at once.

        mixtures [B, N] samples at ``sr`` Hz, f0s [B, J, T] Hz on the 16-ms grid, ``notes`` one
        :meth:`separate` notes argument per excerpt (or None). Returns (voices [B, J, N], one
        :meth:`separate_with_parameters` parameter dict or None per excerpt; all None when
        ``parameters`` is False, which spares computing them). This default loops over
        :meth:`separate_with_parameters`; trained models (sf, unet) override it to run the network on
        the whole batch, with the same output as the loop (to float rounding).
        """
        notes = notes if notes is not None else [None] * len(mixtures)
        if not parameters:
            return np.stack([self.separate(m, sr, f, n, **kwargs) for m, f, n in zip(mixtures, f0s, notes)]), \
                [None] * len(mixtures)
        out = [self.separate_with_parameters(m, sr, f, n, **kwargs) for m, f, n in zip(mixtures, f0s, notes)]
        return np.stack([v for v, _ in out]), [p for _, p in out]


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} needs a non-empty `name`")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _import_all() -> None:
    """Import every module of this package so that their ``@register`` runs."""
    import choirbench.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"choirbench.methods.{info.name}")


def available() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def get(name: str) -> type[Method]:
    """The method class registered under ``name``; a clear error listing the known ids."""
    _import_all()
    if name not in _REGISTRY:
        raise ChoirbenchError(f"unknown method {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def check_output(voices: np.ndarray, mixture: np.ndarray, J: int, name: str) -> np.ndarray:
    """The harness's check on what a method returns: [J, N], finite, float32."""
    voices = np.asarray(voices)
    if voices.shape != (J, len(mixture)):
        raise RuntimeError(f"method {name!r} returned shape {voices.shape}, expected {(J, len(mixture))}")
    if not np.all(np.isfinite(voices)):
        raise RuntimeError(f"method {name!r} returned NaN or Inf samples")
    return voices.astype(np.float32, copy=False)
