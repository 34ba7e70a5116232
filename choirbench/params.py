"""Parameter dictionaries with defaults, checked key by key: an unknown key, a value of the wrong
type or out of its declared range is an error naming the key, never a silent no-op.

The defaults are the one source of truth for a knob's type: a value must have its default's type
(an integer is accepted where a float is expected, ``true``/``false`` never count as numbers, a
list's items follow the default's items). What the type cannot say (a range, ``null`` allowed,
a value that is ``"auto"`` or a number) is declared next to the defaults as a :class:`Limit`.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from choirbench import ChoirbenchError


@dataclass(frozen=True)
class Limit:
    """What one knob accepts beyond its default's type. Bounds apply to numbers only."""

    minimum: float | None = None       # value >= minimum
    above: float | None = None         # value > above
    maximum: float | None = None       # value <= maximum
    below: float | None = None         # value < below
    choices: tuple = ()                # the only values allowed (when not empty)
    types: tuple[type, ...] = ()       # accepted types, when more than the default's (e.g. "auto" or a number)
    nullable: bool = False             # null accepted (e.g. "off")


POSITIVE = Limit(above=0)
NON_NEGATIVE = Limit(minimum=0)
FRACTION = Limit(minimum=0, maximum=1)

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a mapping", type(None): "null"}


def _accepted(default: Any) -> tuple[type, ...] | None:
    """The types a value may have, from its default (None: no default type, anything goes)."""
    if default is None:
        return None
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, (list, tuple)):
        return (list, tuple)
    return (type(default),)


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types  # bool is an int subclass in Python, never a number here
    return isinstance(value, types)


def _describe(types: tuple[type, ...]) -> str:
    names = [_TYPE_NAMES.get(t, t.__name__) for t in types if t not in (tuple,) and not (t is int and float in types)]
    return " or ".join(dict.fromkeys(names))


_KINDS = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", tuple: "list",
          dict: "mapping", type(None): "null"}


def _got(value: Any) -> str:
    hint = ""
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value.strip()):
        hint = f" (YAML reads {value} as a string: write it with a dot and a signed exponent, e.g. 1.0e-3)"
    return f"got {value!r} ({_KINDS.get(type(value), type(value).__name__)}){hint}"


def check_value(value: Any, default: Any, limit: Limit | None, where: str) -> None:
    """Raise :class:`ChoirbenchError` naming ``where`` when ``value`` does not fit its default/limit."""
    limit = limit or Limit()
    if value is None:
        if limit.nullable or default is None:
            return
        raise ChoirbenchError(f"config key {where} must be {_describe(limit.types or _accepted(default))}, {_got(value)}")
    types = limit.types or _accepted(default)
    if types is not None and float in types and int not in types:
        types = (*types, int)  # an integer is a number
    if types is not None and not _is(value, types):
        raise ChoirbenchError(f"config key {where} must be {_describe(types)}"
                              f"{' or null' if limit.nullable else ''}, {_got(value)}")
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)) and default:
        item_types = {t for d in default for t in _accepted(d) or ()}
        if item_types and all(_accepted(d) == _accepted(default[0]) for d in default):
            for i, item in enumerate(value):
                if not _is(item, tuple(item_types)):
                    raise ChoirbenchError(f"config key {where}[{i}] must be {_describe(_accepted(default[0]))}, "
                                          f"{_got(item)}")
    if limit.choices and value not in limit.choices:
        raise ChoirbenchError(f"config key {where} must be one of {', '.join(map(repr, limit.choices))}, "
                              f"got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for bound, fails, word in ((limit.minimum, lambda b: value < b, ">="), (limit.above, lambda b: value <= b, ">"),
                                   (limit.maximum, lambda b: value > b, "<="), (limit.below, lambda b: value >= b, "<")):
            if bound is not None and fails(bound):
                raise ChoirbenchError(f"config key {where} must be {word} {bound}, got {value!r}")


def resolve_params(defaults: dict, given: dict, where: str, limits: dict[str, Limit] | None = None) -> dict:
    """Defaults updated by ``given`` (recursively), every given value checked.

    Raises :class:`ChoirbenchError` naming ``where.key`` for an unknown key, a value whose type is not
    its default's (see the module docstring) or outside its ``limits`` entry.
    """
    limits = limits or {}
    if given is not None and not isinstance(given, dict):
        raise ChoirbenchError(f"config key {where} must be a mapping, {_got(given)}")
    out = copy.deepcopy(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise ChoirbenchError(f"config key {where}.{key} is unknown (known keys: {known})")
        if isinstance(defaults[key], dict) and isinstance(value, dict):
            out[key] = resolve_params(defaults[key], value, f"{where}.{key}")
        else:
            check_value(value, defaults[key], limits.get(key), f"{where}.{key}")
            out[key] = value
    return out
