"""Registry of dataset converters: id -> module with ``DEFAULTS`` and ``prepare(out_root, params)``.

A converter writes the prepared format of :mod:`choirbench.data_prep.prepared`
(audio, F0, optional notes, ``manifest.csv`` written last). Config entries
``datasets.<name>`` pick a converter with ``kind`` (default: ``<name>``).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from choirbench import ChoirbenchError
from choirbench.params import resolve_params

CONVERTERS = {
    "synth-chorales": "choirbench.data_prep.synth_chorales",
    "prepared": "choirbench.data_prep.local",
    "combine": "choirbench.data_prep.combine",
    "bach10": "choirbench.data_prep.bach10",
    "csd": "choirbench.data_prep.csd",
    "cantoria": "choirbench.data_prep.cantoria",
    "dagstuhl": "choirbench.data_prep.dagstuhl",
    "bcbq": "choirbench.data_prep.bcbq",
    "stems": "choirbench.data_prep.stems",
}


def converter(kind: str):
    if kind not in CONVERTERS:
        raise ChoirbenchError(f"unknown dataset kind {kind!r} (known: {', '.join(sorted(CONVERTERS))})")
    try:
        return importlib.import_module(CONVERTERS[kind])
    except ModuleNotFoundError as err:
        raise ChoirbenchError(f"dataset kind {kind!r} is not available in this version ({err})") from None


def prepare(kind: str, params: dict, out_root: Path) -> None:
    module = converter(kind)
    module.prepare(Path(out_root), resolve_params(module.DEFAULTS, params, where=f"datasets.{kind}",
                                                     limits=getattr(module, "LIMITS", None)))
