"""Per-file md5 index of a pinned release: read it, check files against it, remember what was hashed.

An index is a text file of ``<md5>  <relative/path>`` lines (``md5sum`` format; ``#`` starts a
comment), paths relative to the release's top folder. Shipped: ``checksums/dagstuhl_choirset_1.2.3.md5``
(4135 files of Dagstuhl ChoirSet V1.2.3, from mirdata's published index; see its header).

Hashing a multi-GB release takes a while (md5 ran at 0.3 GiB/s on one core here: about 17 s for
the 5-GB release), so each digest is remembered in ``.choirbench_md5.tsv`` at the release's top
folder, keyed by the file's relative path, size and modification time (ns): a file rewritten in
place gets a new mtime and is hashed again. A release folder that cannot be written to is simply
hashed every time.
"""
from __future__ import annotations

import logging
from pathlib import Path

from choirbench import ChoirbenchError
from choirbench.data_prep.download import file_digest, read_checksum_list
from choirbench.io import atomic_path

log = logging.getLogger(__name__)

CACHE_FILE = ".choirbench_md5.tsv"


def read_md5_index(path: Path) -> dict[str, str]:
    """``<md5>  <relative/path>`` lines -> {relative path: md5} (download.read_checksum_list); a missing
    file, a malformed line or an index that lists nothing is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ChoirbenchError(f"{path}: md5 index not found")
    index = read_checksum_list(path, "md5")
    if not index:
        raise ChoirbenchError(f"{path}: the md5 index lists no files")
    return index


class Md5Cache:
    """md5 of files under ``base``, each hashed once per (size, mtime) and remembered in :data:`CACHE_FILE`."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.path = self.base / CACHE_FILE
        self.known: dict[str, tuple[int, int, str]] = {}
        self.dirty = False
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                fields = line.split("\t")
                if len(fields) == 4 and fields[1].isdigit() and fields[2].isdigit():
                    self.known[fields[3]] = (int(fields[1]), int(fields[2]), fields[0])

    def digest(self, rel: str) -> str:
        stat = (self.base / rel).stat()
        hit = self.known.get(rel)
        if hit is not None and hit[:2] == (stat.st_size, stat.st_mtime_ns):
            return hit[2]
        value = file_digest(self.base / rel, "md5")
        self.known[rel] = (stat.st_size, stat.st_mtime_ns, value)
        self.dirty = True
        return value

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(f"{md5}\t{size}\t{mtime}\t{rel}\n"
                                       for rel, (size, mtime, md5) in sorted(self.known.items())))
            self.dirty = False
        except OSError as err:  # a read-only copy of the release: hash again next time
            log.info("md5 cache not written to %s (%s)", self.path, err)


def check_files(base: Path, rels, index: dict[str, str], source: str, cache: Md5Cache | None = None,
                ) -> list[tuple[str, str, str]]:
    """(relative path, problem, detail) for every file of ``rels`` under ``base`` that the index refutes.

    problem: ``missing`` (listed, not on disk), ``checksum`` (md5 differs; the detail names the expected
    and the actual md5) or ``unlisted`` (on disk but not in the index: not a file of this release).
    ``source`` names the index in the details.
    """
    cache = cache or Md5Cache(base)
    problems = []
    for rel in sorted(set(rels)):
        path = Path(base) / rel
        if rel not in index:
            problems.append((rel, "unlisted", f"not a file of the release ({source} does not list it)"))
        elif not path.is_file():
            problems.append((rel, "missing", f"listed in {source} but not found"))
        else:
            actual = cache.digest(rel)
            if actual != index[rel]:
                problems.append((rel, "checksum", f"md5 {actual}, expected {index[rel]} ({source})"))
    cache.save()
    order = {"missing": 0, "unlisted": 1, "checksum": 2}  # the likelier mistakes first
    return sorted(problems, key=lambda p: (order[p[1]], p[0]))
