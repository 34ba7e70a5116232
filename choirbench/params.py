"""Parameter dictionaries with defaults, where an unknown key is an error, not a silent no-op."""
from __future__ import annotations

import copy

from choirbench import ChoirbenchError


def resolve_params(defaults: dict, given: dict, where: str) -> dict:
    """Defaults updated by ``given`` (recursively); an unknown key raises, naming it."""
    out = copy.deepcopy(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise ChoirbenchError(f"config key {where}.{key} is unknown (known keys: {known})")
        if isinstance(defaults[key], dict) and isinstance(value, dict):
            out[key] = resolve_params(defaults[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out
