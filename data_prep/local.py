"""Your own data, already in the prepared format: checked, then linked into ``results/data``.

Config: ``datasets: {my-choir: {kind: prepared, root: /path/to/folder}}``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from choirbench import ChoirbenchError
from choirbench.data_prep.prepared import check_prepared, write_manifest

DEFAULTS = {"root": ""}


def prepare(out_root: Path, params: dict) -> None:
    if not params["root"]:
        raise ChoirbenchError("datasets.<name>.root must name a folder in the prepared format")
    source = Path(params["root"]).expanduser().resolve()
    if not source.is_dir():
        raise ChoirbenchError(f"{source}: dataset folder not found")
    manifest = check_prepared(source)
    out_root.mkdir(parents=True, exist_ok=True)
    for sub in ("audio", "f0", "f0_pyin", "f0_score", "score"):
        link = out_root / sub
        if (source / sub).is_dir():
            if link.is_symlink() or link.exists():
                link.unlink() if link.is_symlink() else shutil.rmtree(link)
            link.symlink_to(source / sub, target_is_directory=True)
    write_manifest(out_root, manifest)
