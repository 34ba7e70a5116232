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

No piece is both trained and tested: each converter writes which composition a
song is (``pieces.csv``; e.g. the Dagstuhl ChoirSet's *Locus Iste* takes are the
piece of 46 of the 102 CSD test excerpts), and training and validation songs
whose piece is in the test split are left out, listed in ``excluded.csv`` and
the log. ``allow_piece_overlap: true`` keeps them.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from choirbench import ChoirbenchError
from choirbench.data_prep.prepared import F0_DIRS, SPLITS, read_manifest, write_manifest
from choirbench.data_prep.release import read_pieces, write_pieces
from choirbench.io import write_csv

log = logging.getLogger(__name__)

DEFAULTS = {"sources": [], "results": "results/data", "allow_piece_overlap": False}
EXCLUDED_FILE = "excluded.csv"


def prepare(out_root: Path, params: dict) -> None:
    if not params["sources"]:
        raise ChoirbenchError("datasets.<name>.sources must list the datasets to combine")
    frames, pieces = [], {}
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
        pieces.update({f"{name}__{song}": piece for song, piece in read_pieces(root, manifest["song"].unique()).items()})
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
    manifest, excluded = exclude_tested_pieces(pd.concat(frames, ignore_index=True), pieces,
                                               allow=bool(params["allow_piece_overlap"]))
    write_csv(out_root / EXCLUDED_FILE, excluded)
    write_pieces(out_root, {song: pieces[song] for song in manifest["song"].unique()})
    write_manifest(out_root, manifest)


def exclude_tested_pieces(manifest: pd.DataFrame, pieces: dict[str, str], *, allow: bool
                          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop training and validation songs whose piece is also tested (unless ``allow``).

    Returns (kept manifest, one row per excluded song: song, split, piece).
    """
    song_piece = manifest["song"].map(pieces)
    tested = set(song_piece[manifest["split"] == "test"])
    leaking = (manifest["split"] != "test") & song_piece.isin(tested)
    excluded = (manifest.loc[leaking, ["song", "split"]].assign(piece=song_piece[leaking])
                .drop_duplicates().reset_index(drop=True))
    if excluded.empty:
        return manifest, excluded
    listing = ", ".join(f"{r.song} ({r.split}, {r.piece})" for r in excluded.itertuples())
    if allow:
        log.warning("combine: these songs are pieces of the test set and are kept (allow_piece_overlap): %s", listing)
        return manifest, excluded.iloc[0:0]
    log.warning("combine: left out of training/validation because their piece is tested: %s", listing)
    return manifest[~leaking].reset_index(drop=True), excluded
