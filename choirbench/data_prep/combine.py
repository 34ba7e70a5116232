"""Several prepared datasets as one: train on some, validate or test on others.

The paper trains on one corpus and tests on another (e.g. Cantoría + Dagstuhl
-> CSD). Config::

    paper-data:
      kind: combine
      sources:
        - {dataset: cantoria, splits: {train: train, valid: valid}}
        - {dataset: csd, splits: {test: test}}

Each source's songs keep their files (the song folders are linked, not
copied); song ids get the source's name as prefix so that they cannot clash;
``splits`` maps the source's split to the combined split, and splits not
mentioned are left out.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from choirbench import ChoirbenchError
from choirbench.data_prep.prepared import F0_DIRS, SPLITS, read_manifest, write_manifest

DEFAULTS = {"sources": [], "results": "results/data"}


def prepare(out_root: Path, params: dict) -> None:
    if not params["sources"]:
        raise ChoirbenchError("datasets.<name>.sources must list the datasets to combine")
    frames = []
    for source in params["sources"]:
        unknown = set(source) - {"dataset", "splits"}
        if unknown or "dataset" not in source:
            raise ChoirbenchError(f"datasets.<name>.sources: each entry needs `dataset` and `splits`, "
                                  f"got keys {sorted(source)}")
        name, mapping = source["dataset"], source.get("splits") or {s: s for s in SPLITS}
        bad = {k for k in mapping} | set(mapping.values())
        if bad - set(SPLITS):
            raise ChoirbenchError(f"datasets.<name>.sources[{name}].splits: unknown splits {sorted(bad - set(SPLITS))}")
        root = Path(params["results"]) / name
        manifest = read_manifest(root)
        manifest = manifest[manifest["split"].isin(mapping)].copy()
        manifest["split"] = manifest["split"].map(mapping)
        for song in manifest["song"].unique():
            for sub in ("audio", *F0_DIRS.values(), "score"):
                target = (root / sub / song).resolve()
                link = out_root / sub / f"{name}__{song}"
                if target.is_dir():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    if link.is_symlink():
                        link.unlink()
                    os.symlink(target, link, target_is_directory=True)
        manifest["song"] = name + "__" + manifest["song"].astype(str)
        for col in ("audio", "f0"):
            manifest[col] = manifest.apply(lambda r: f"{r[col].split('/')[0]}/{r['song']}/{r[col].split('/')[-1]}",
                                           axis=1)
        frames.append(manifest)
    write_manifest(out_root, pd.concat(frames, ignore_index=True))
