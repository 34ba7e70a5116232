"""Verified, resumable downloads of the public datasets (standard library only).

A dataset folder ``dest`` is complete when ``dest/.complete`` exists; such a
folder is never fetched again. Until then, downloads go to ``dest/.partial/``
and resume with HTTP ``Range`` requests after a dropped connection or an
interrupted run. Every file is checked against its published checksum before
it is unpacked; a file that fails the check is deleted (nothing half-trusted is
left behind) and the error names it.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from choirbench import ChoirbenchError

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"
PARTIAL_DIR = ".partial"
CHUNK_BYTES = 1 << 20
USER_AGENT = "choirbench-downloader/0.1 (+urllib)"


@dataclass
class RemoteFile:
    """One file of a release: where to get it and how to check it."""

    name: str
    url: str
    size: int | None = None
    checksum: tuple[str, str] | None = None  # (algorithm, hex digest), e.g. ("md5", "ab12...")


def is_complete(dest: Path) -> bool:
    return (Path(dest) / COMPLETE_MARKER).is_file()


# ----------------------------------------------------------------------------- Zenodo

def parse_checksum(value) -> tuple[str, str] | None:
    """``"md5:abc"`` -> ("md5", "abc"); a bare hex digest is taken as md5 (old Zenodo API)."""
    if not value:
        return None
    value = str(value).strip()
    if ":" in value:
        algo, digest = value.split(":", 1)
        return algo.lower(), digest.lower()
    return "md5", value.lower()


def zenodo_files(record: dict, api_base: str = "https://zenodo.org/api") -> list[RemoteFile]:
    """The file list of a Zenodo record JSON, accepting the legacy and the InvenioRDM shapes.

    Legacy: ``files`` is a list of ``{key|filename, size|filesize, checksum, links: {self|download}}``.
    InvenioRDM: ``files`` is ``{"entries": {key: {key, size, checksum, links: {content}}}}`` (or a
    list under ``entries``). Download links are taken from ``links.content``, then ``links.download``,
    then ``links.self``; without any, the record's ``/files/<key>/content`` endpoint is used.
    """
    files = record.get("files")
    native = isinstance(files, dict)  # InvenioRDM: links.self is the file's metadata, content is below it
    if native:
        files = files.get("entries", [])
    if isinstance(files, dict):
        files = list(files.values())
    if not isinstance(files, list) or not files:
        raise ChoirbenchError(f"Zenodo record {record.get('id', '?')}: the record lists no files "
                              "(restricted or withdrawn?)")
    out = []
    for entry in files:
        name = entry.get("key") or entry.get("filename")
        if not name:
            raise ChoirbenchError(f"Zenodo record {record.get('id', '?')}: a file entry has no name: {entry}")
        links = entry.get("links") or {}
        url = links.get("content") or links.get("download") or links.get("self")
        if native and url and not links.get("content") and not links.get("download") \
                and not url.rstrip("/").endswith("/content"):
            url = url.rstrip("/") + "/content"
        if not url:
            url = f"{api_base}/records/{record.get('id')}/files/{urllib.parse.quote(name)}/content"
        size = entry.get("size", entry.get("filesize"))
        out.append(RemoteFile(name=name, url=url, size=int(size) if size is not None else None,
                              checksum=parse_checksum(entry.get("checksum"))))
    return out


def fetch_zenodo(record_id: str, dest: Path, api_base: str = "https://zenodo.org/api",
                 files: list[str] | None = None, *, retries: int = 3, timeout: float = 60.0) -> Path:
    """Download (resumably), verify and unpack the files of Zenodo record ``record_id`` into ``dest``.

    ``files`` restricts the download to those file names. A ``dest`` holding the
    ``.complete`` marker is returned at once without any network access.
    """
    dest = Path(dest)
    if is_complete(dest):
        log.info("%s: already downloaded (found %s), not fetching again", dest, COMPLETE_MARKER)
        return dest
    url = f"{api_base.rstrip('/')}/records/{record_id}"
    record = _get_json(url, timeout=timeout)
    remote = zenodo_files(record, api_base=api_base.rstrip("/"))
    if files:
        known = {r.name for r in remote}
        missing = sorted(set(files) - known)
        if missing:
            raise ChoirbenchError(f"Zenodo record {record_id} has no file(s) {missing} "
                                  f"(it has: {', '.join(sorted(known))})")
        remote = [r for r in remote if r.name in set(files)]
    for item in remote:
        if item.checksum is None:
            raise ChoirbenchError(f"Zenodo record {record_id}: file {item.name} has no published checksum; "
                                  "refusing to use an unverified download")
    _fetch_all(remote, dest, source=f"Zenodo record {record_id}", retries=retries, timeout=timeout)
    return dest


def fetch_url(url: str, dest: Path, sha256: str | None = None, *, filename: str | None = None,
              retries: int = 3, timeout: float = 60.0) -> Path:
    """Download one file (resumably), check its sha256 when given, unpack it into ``dest``.

    Without ``sha256`` the archive itself is not verified (log warning); callers
    then verify the unpacked content (e.g. Bach10's audio sums kept in the repo).
    """
    dest = Path(dest)
    if is_complete(dest):
        log.info("%s: already downloaded (found %s), not fetching again", dest, COMPLETE_MARKER)
        return dest
    name = filename or Path(urllib.parse.urlparse(url).path).name or "download"
    if sha256 is None:
        log.warning("%s: no sha256 given for the archive itself; its content must be verified after unpacking",
                    url)
    remote = RemoteFile(name=name, url=url, checksum=("sha256", sha256.lower()) if sha256 else None)
    _fetch_all([remote], dest, source=url, retries=retries, timeout=timeout)
    return dest


# ----------------------------------------------------------------------------- internals

def _request(url: str, headers: dict | None = None, timeout: float = 60.0):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http(s) URLs from config)
    except urllib.error.HTTPError as err:
        raise ChoirbenchError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise ChoirbenchError(f"{url}: cannot connect ({getattr(err, 'reason', err)}); "
                              "check the network or download the dataset by hand") from None


def _get_json(url: str, timeout: float = 60.0) -> dict:
    with _request(url, {"Accept": "application/json"}, timeout=timeout) as resp:
        body = resp.read()
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        raise ChoirbenchError(f"{url}: the answer is not JSON ({err})") from None


def _fetch_all(remote: list[RemoteFile], dest: Path, *, source: str, retries: int, timeout: float) -> None:
    created = not dest.exists()
    partial = dest / PARTIAL_DIR
    partial.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for item in remote:
            path = partial / item.name
            _download(item, path, retries=retries, timeout=timeout)
            _verify(item, path, source=source)
            paths.append(path)
    except ChoirbenchError:
        # a bad checksum deletes its file in _verify; if nothing useful is left, leave no trace
        if created and not any(p.stat().st_size for p in partial.glob("*") if p.is_file()):
            shutil.rmtree(dest, ignore_errors=True)
        raise
    for path in paths:
        unpack(path, dest)
    shutil.rmtree(partial, ignore_errors=True)
    marker = {"source": source, "files": [{"name": r.name, "url": r.url,
                                           "checksum": ":".join(r.checksum) if r.checksum else None}
                                          for r in remote],
              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (dest / COMPLETE_MARKER).write_text(json.dumps(marker, indent=1))
    log.info("%s: complete (%d file(s) from %s)", dest, len(remote), source)


def _download(item: RemoteFile, path: Path, *, retries: int, timeout: float) -> None:
    """Fetch ``item`` into ``path``, resuming from what is already there."""
    attempt = 0
    while True:
        have = path.stat().st_size if path.exists() else 0
        if item.size is not None and have == item.size:
            return
        if item.size is not None and have > item.size:
            path.unlink()
            have = 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with _request(item.url, headers, timeout=timeout) as resp:
                status = resp.status
                if have and status != 206:
                    log.info("%s: server ignored the Range request; restarting the download", item.name)
                    have = 0
                total = _total_size(resp, have)
                if item.size is None and total is not None:
                    item.size = total
                with open(path, "ab" if have else "wb") as out:
                    while True:
                        chunk = resp.read(CHUNK_BYTES)
                        if not chunk:
                            break
                        out.write(chunk)
            got = path.stat().st_size
            if item.size is not None and got < item.size:
                raise ConnectionError(f"connection closed after {got} of {item.size} bytes")
            return
        except (ConnectionError, http.client.HTTPException, TimeoutError, OSError) as err:
            attempt += 1
            got = path.stat().st_size if path.exists() else 0
            if attempt > retries:
                raise ChoirbenchError(f"{item.url}: download interrupted at {got} bytes ({err}); "
                                      f"run again to resume from {path}") from None
            log.warning("%s: interrupted at %d bytes (%s); resuming (try %d of %d)", item.name, got, err,
                        attempt, retries)
            time.sleep(min(2.0 ** (attempt - 1), 10.0) * 0.1)


def _total_size(resp, have: int) -> int | None:
    """Full size of the file from Content-Range (206) or Content-Length (200)."""
    content_range = resp.headers.get("Content-Range")
    if content_range and "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        if tail.isdigit():
            return int(tail)
    length = resp.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + (have if resp.status == 206 else 0)
    return None


def file_digest(path: Path, algorithm: str) -> str:
    try:
        digest = hashlib.new(algorithm)
    except ValueError:
        raise ChoirbenchError(f"{path}: unsupported checksum algorithm {algorithm!r}") from None
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(item: RemoteFile, path: Path, *, source: str) -> None:
    if item.size is not None and path.stat().st_size != item.size:
        size = path.stat().st_size
        path.unlink()
        raise ChoirbenchError(f"{item.name}: size {size} bytes differs from the published {item.size} bytes "
                              f"({source}); the file was deleted, run again to download it anew")
    if item.checksum is None:
        return
    algorithm, expected = item.checksum
    actual = file_digest(path, algorithm)
    if actual != expected:
        path.unlink()
        raise ChoirbenchError(f"{item.name}: {algorithm} checksum mismatch (published {expected}, downloaded "
                              f"{actual}) from {source}; the file was deleted")


def unpack(path: Path, dest: Path) -> None:
    """Unpack a zip/tar archive into ``dest`` (refusing paths that leave it); move other files there."""
    dest = Path(dest)
    root = dest.resolve()
    name = path.name.lower()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                target = (root / member).resolve()
                if root != target and root not in target.parents:
                    raise ChoirbenchError(f"{path.name}: archive member {member!r} would leave {dest}")
            archive.extractall(dest)
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")) and tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            try:
                archive.extractall(dest, filter="data")
            except tarfile.FilterError as err:
                raise ChoirbenchError(f"{path.name}: unsafe archive member ({err})") from None
    else:
        shutil.move(str(path), str(dest / path.name))


# ----------------------------------------------------------------------------- checksum lists

DIGEST_HEX_DIGITS = {"md5": 32, "sha256": 64}


def read_checksum_list(list_path: Path, algorithm: str = "sha256") -> dict[str, str]:
    """``<digest>  <relative/path>`` lines (``md5sum`` / ``sha256sum`` format, ``#`` comments) ->
    {path: digest}. A line that is not a hex digest of ``algorithm``'s length and a path is a
    :class:`ChoirbenchError` naming the file and the line."""
    list_path, digits = Path(list_path), DIGEST_HEX_DIGITS[algorithm]
    sums = {}
    for number, line in enumerate(list_path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(maxsplit=1)
        if len(fields) != 2 or len(fields[0]) != digits or any(c not in "0123456789abcdefABCDEF" for c in fields[0]):
            raise ChoirbenchError(f"{list_path}: line {number} is not '<{algorithm}>  <relative/path>': {line[:80]!r}")
        sums[fields[1].lstrip("*")] = fields[0].lower()
    return sums


def write_sha256_list(list_path: Path, root: Path, relative_paths: list[str]) -> None:
    lines = [f"{file_digest(Path(root) / rel, 'sha256')}  {rel}" for rel in sorted(relative_paths)]
    Path(list_path).write_text("\n".join(lines) + "\n")


def verify_sha256_list(root: Path, list_path: Path, only: set[str] | None = None) -> int:
    """Check the files named in ``list_path`` (relative to ``root``); a mismatch is an error naming them.

    ``only`` restricts the check to entries whose first path component is in it
    (e.g. the songs being converted). Returns the number of files checked.
    """
    sums = read_checksum_list(list_path, "sha256")
    bad, missing, checked = [], [], 0
    for rel, expected in sums.items():
        if only is not None and rel.split("/", 1)[0] not in only:
            continue
        path = Path(root) / rel
        if not path.is_file():
            missing.append(rel)
            continue
        checked += 1
        if file_digest(path, "sha256") != expected:
            bad.append(rel)
    if missing:
        raise ChoirbenchError(f"{root}: {len(missing)} file(s) of the release are missing, e.g. {missing[0]}")
    if bad:
        raise ChoirbenchError(f"{root}: sha256 mismatch for {', '.join(bad[:5])}"
                              f"{' ...' if len(bad) > 5 else ''} (expected sums in {list_path}); "
                              "the copy is corrupt or a different version")
    return checked


__all__ = ["RemoteFile", "fetch_zenodo", "fetch_url", "zenodo_files", "unpack", "is_complete",
           "verify_sha256_list", "read_checksum_list", "write_sha256_list", "file_digest", "COMPLETE_MARKER"]


def zenodo_fetcher(params: dict):
    """``fetch(dest)`` for a converter whose config has ``zenodo_record`` and ``zenodo_api``."""
    def fetch(dest: Path) -> None:
        fetch_zenodo(params["zenodo_record"], dest, api_base=params["zenodo_api"])
    return fetch
