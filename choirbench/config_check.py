"""The workflow's config checked as a whole when the Snakefile loads, before any job runs.

The JSON schema (``workflow/schemas/config.schema.yaml``) checks the config's own layout; this
module checks what the schema cannot: every method entry's ``params`` against the method's typed
defaults and limits, the datasets' knobs against their converter's, the names that cross the config
(``dataset``, ``run``, ``checkpoint_from``, combined sources), and every name that ends up in a file
path or a shell command. Each problem is one :class:`ChoirbenchError` naming the config key.
"""
from __future__ import annotations

import re

from choirbench import ChoirbenchError
from choirbench.params import resolve_params

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Names that become path components and shell words: no spaces, quotes, slashes or leading dots."""


def check_name(value, key: str) -> None:
    """Raise naming ``key`` unless ``value`` is a string matching :data:`SAFE_NAME`."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise ChoirbenchError(f"config key {key}: {value!r} is not a usable name (letters, digits, '_', '.', '-', "
                              "starting with a letter or digit: it becomes part of file paths and shell commands)")


def _known(names) -> str:
    return ", ".join(sorted(names)) or "none"


def check_method_entries(methods: dict) -> None:
    """Every entry: safe id, known model, typed and ranged params, a ``checkpoint_from`` that trains."""
    from choirbench.registry import get
    from choirbench.harness import ENTRY_DEFAULTS, ENTRY_LIMITS, build

    for name, block in methods.items():
        check_name(name, "methods")
        rest = {k: v for k, v in block.items() if k != "params"}
        entry = resolve_params(ENTRY_DEFAULTS, rest, where=f"methods.{name}", limits=ENTRY_LIMITS)
        try:
            cls = get(entry["model"])
        except ChoirbenchError as err:
            raise ChoirbenchError(f"config key methods.{name}.model: {err}") from None
        build({**entry, "id": name, "params": block.get("params") or {}})
        source = entry["checkpoint_from"]
        if source is None:
            continue
        if source not in methods:
            raise ChoirbenchError(f"config key methods.{name}.checkpoint_from names {source!r}, which has no entry "
                                  f"under 'methods' (known: {_known(methods)})")
        if not cls.trainable:
            raise ChoirbenchError(f"config key methods.{name}.checkpoint_from: {entry['model']} is not trained, "
                                  "so it has no checkpoint to reuse")
        if methods[source].get("model") != entry["model"]:
            raise ChoirbenchError(f"config key methods.{name}.checkpoint_from names {source!r}, a "
                                  f"{methods[source].get('model')} entry, but {name} is a {entry['model']}")
        if methods[source].get("checkpoint_from"):
            raise ChoirbenchError(f"config key methods.{name}.checkpoint_from names {source!r}, which trains no "
                                  f"model of its own (it reuses {methods[source]['checkpoint_from']!r}): name that")
        own, lent = entry["train_J"], methods[source].get("train_J", ENTRY_DEFAULTS["train_J"])
        if own != "per_J" and lent != "per_J" and own != lent:
            raise ChoirbenchError(f"config key methods.{name}.train_J is {own}, but {source!r} trains only its "
                                  f"J={lent} model (train_J: {lent}); drop the key or train {source!r} per_J")


def used_datasets(config: dict) -> list[str]:
    """The run's dataset and, for a combined one, its sources (in order, each once)."""
    order, todo = [], [(config["dataset"], "dataset")]
    while todo:
        name, key = todo.pop(0)
        if name in order:
            continue
        check_name(name, key)
        if name not in config["datasets"]:
            raise ChoirbenchError(f"config key {key} names {name!r}, which has no entry under 'datasets' "
                                  f"(known: {_known(config['datasets'])})")
        order.append(name)
        block = config["datasets"][name] or {}
        if block.get("kind", name) == "combine":
            for field in ("sources", "prefer_sources"):
                for i, source in enumerate(block.get(field) or []):
                    if isinstance(source, dict) and "dataset" in source:
                        todo.append((source["dataset"], f"datasets.{name}.{field}[{i}].dataset"))
    return order


def check_dataset_blocks(config: dict, names: list[str]) -> None:
    """Each used dataset's knobs against its converter's defaults (types, unknown keys)."""
    from choirbench.data_prep.datasets import converter

    for name in names:
        block = dict(config["datasets"][name] or {})
        kind = block.pop("kind", name)
        block.pop("prefer_sources", None)
        block.pop("prefer_if_exists", None)
        try:
            module = converter(kind)
        except ChoirbenchError as err:
            raise ChoirbenchError(f"config key datasets.{name}.kind: {err}") from None
        resolve_params(module.DEFAULTS, block, where=f"datasets.{name}", limits=getattr(module, "LIMITS", None))


def check_config(config: dict) -> None:
    """Everything above, on a config the schema has validated (defaults filled in)."""
    for name in config["datasets"]:
        check_name(name, "datasets")
    check_dataset_blocks(config, used_datasets(config))
    check_method_entries(config["methods"])
    from choirbench.evaluation.claims import verdict_settings

    verdict_settings(config.get("verdicts"))
    for i, name in enumerate(config["run"]):
        check_name(name, f"run[{i}]")
        if name not in config["methods"]:
            raise ChoirbenchError(f"config key run[{i}] names {name!r}, which has no entry under 'methods' "
                                  f"(known: {_known(config['methods'])})")
    singer = config["examples"]["singer"]
    if isinstance(singer, dict):
        for song, value in singer.items():
            check_name(song, "examples.singer")
            check_name(str(value), f"examples.singer.{song}")
    elif singer is not None:
        check_name(str(singer), "examples.singer")
