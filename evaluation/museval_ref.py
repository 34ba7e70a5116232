"""museval's own metric module, loaded without ``museval/__init__``.

``import museval`` imports musdb -> stempeg, which refuses to import without
the ffmpeg binary. The metric definitions live in ``museval/metrics.py``, which
only needs numpy and scipy; loading that file directly keeps museval usable as
the reference (tests, benchmarks) on machines without ffmpeg.
"""
from __future__ import annotations

import importlib.util
from functools import cache
from types import ModuleType

from choirbench import ChoirbenchError


@cache
def museval_metrics() -> ModuleType:
    spec = importlib.util.find_spec("museval")
    if spec is None or not spec.submodule_search_locations:
        raise ChoirbenchError("museval is not installed (pip install museval)")
    path = f"{list(spec.submodule_search_locations)[0]}/metrics.py"
    module_spec = importlib.util.spec_from_file_location("_museval_metrics", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module
