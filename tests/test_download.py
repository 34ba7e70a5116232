"""Downloads against a local HTTP server: checksums, resume after a dropped connection, no refetch."""
from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import pytest

from choirbench import ChoirbenchError
from choirbench.data_prep.download import (COMPLETE_MARKER, fetch_url, fetch_zenodo, verify_sha256_list,
                                           write_sha256_list, zenodo_files)


def make_archive() -> bytes:
    """A zip laid out like a release: a top folder with a few files (~200 kB, so a drop falls mid-file)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("Release_v1/Audio/song_S.wav", bytes(range(256)) * 400)
        archive.writestr("Release_v1/F0/song_S.csv", "0.0,220.0\n0.01,221.0\n")
        archive.writestr("Release_v1/README.md", "fixture\n")
    return buf.getvalue()


class Server:
    """http.server with Range support; can drop the first GET of a file halfway, and counts requests."""

    def __init__(self, files: dict[str, bytes], record: dict | None = None):
        self.files = files
        self.record = record
        self.requests: list[tuple[str, str | None]] = []
        self.drop_first_at: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                if self.path.startswith("/api/records/"):
                    body = json.dumps(outer.record).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                name = self.path.rsplit("/", 1)[-1]
                if name not in outer.files:
                    self.send_error(404)
                    return
                data = outer.files[name]
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if outer.drop_first_at is not None:
                    cut, outer.drop_first_at = outer.drop_first_at, None
                    self.wfile.write(data[start:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def record_new(base: str, archive: bytes, md5: str | None = None) -> dict:
    """The current (InvenioRDM) Zenodo record JSON shape."""
    return {"id": 42, "files": [{"key": "release.zip", "size": len(archive),
                                 "checksum": f"md5:{md5 or hashlib.md5(archive).hexdigest()}",
                                 "links": {"self": f"{base}/files/release.zip"}}]}


def record_old(base: str, archive: bytes) -> dict:
    """The legacy shape: filename/filesize, bare md5, links.download."""
    return {"id": 42, "files": [{"filename": "release.zip", "filesize": len(archive),
                                 "checksum": hashlib.md5(archive).hexdigest(),
                                 "links": {"download": f"{base}/files/release.zip"}}]}


def test_zenodo_files_accepts_entries_shape():
    record = {"id": 7, "files": {"enabled": True, "entries": {
        "a.zip": {"key": "a.zip", "size": 3, "checksum": "md5:abc", "links": {"content": "http://x/a.zip/content"}}}}}
    (remote,) = zenodo_files(record)
    assert (remote.name, remote.size, remote.checksum, remote.url) == ("a.zip", 3, ("md5", "abc"),
                                                                       "http://x/a.zip/content")
    record["files"]["entries"]["a.zip"]["links"] = {"self": "http://x/records/7/files/a.zip"}
    assert zenodo_files(record)[0].url == "http://x/records/7/files/a.zip/content"


@pytest.mark.parametrize("shape", [record_new, record_old])
def test_fetch_zenodo_verifies_and_unpacks(tmp_path, shape):
    archive = make_archive()
    with Server({"release.zip": archive}) as server:
        server.record = shape(server.base, archive)
        dest = fetch_zenodo("42", tmp_path / "csd", api_base=f"{server.base}/api")
    assert (dest / "Release_v1" / "F0" / "song_S.csv").read_text().startswith("0.0,220.0")
    assert (dest / COMPLETE_MARKER).is_file()
    assert not (dest / ".partial").exists()


def test_wrong_checksum_fails_clearly_and_leaves_nothing(tmp_path):
    archive = make_archive()
    with Server({"release.zip": archive}) as server:
        server.record = record_new(server.base, archive, md5="0" * 32)
        with pytest.raises(ChoirbenchError, match=r"release\.zip: md5 checksum mismatch"):
            fetch_zenodo("42", tmp_path / "csd", api_base=f"{server.base}/api")
    assert not (tmp_path / "csd").exists()


def test_interrupted_download_resumes_with_range(tmp_path):
    archive = make_archive()
    half = len(archive) // 2
    with Server({"release.zip": archive}) as server:
        server.record = record_new(server.base, archive)
        server.drop_first_at = half
        dest = fetch_zenodo("42", tmp_path / "csd", api_base=f"{server.base}/api")
        file_requests = [r for r in server.requests if r[0].startswith("/files/")]
    assert file_requests[0][1] is None
    assert file_requests[1][1] == f"bytes={half}-"  # resumed where the connection dropped
    assert (dest / "Release_v1" / "Audio" / "song_S.wav").read_bytes() == bytes(range(256)) * 400


def test_interrupted_run_resumes_on_next_call(tmp_path):
    archive = make_archive()
    half = len(archive) // 2
    with Server({"release.zip": archive}) as server:
        server.record = record_new(server.base, archive)
        server.drop_first_at = half
        with pytest.raises(ChoirbenchError, match="run again to resume"):
            fetch_zenodo("42", tmp_path / "csd", api_base=f"{server.base}/api", retries=0)
        partial = tmp_path / "csd" / ".partial" / "release.zip"
        assert partial.stat().st_size == half
        fetch_zenodo("42", tmp_path / "csd", api_base=f"{server.base}/api", retries=0)
        ranges = [r[1] for r in server.requests if r[0].startswith("/files/")]
    assert ranges == [None, f"bytes={half}-"]
    assert (tmp_path / "csd" / COMPLETE_MARKER).is_file()


def test_present_dataset_is_not_fetched_again(tmp_path):
    archive = make_archive()
    with Server({"release.zip": archive}) as server:
        server.record = record_new(server.base, archive)
        fetch_zenodo("42", tmp_path / "csd", api_base=f"{server.base}/api")
        before = len(server.requests)
        assert before == 2  # record listing + one file
        fetch_zenodo("42", tmp_path / "csd", api_base=f"{server.base}/api")
        fetch_url(f"{server.base}/files/release.zip", tmp_path / "csd")
        assert len(server.requests) == before


def test_fetch_url_checks_sha256(tmp_path):
    archive = make_archive()
    with Server({"release.zip": archive}) as server:
        with pytest.raises(ChoirbenchError, match="sha256 checksum mismatch"):
            fetch_url(f"{server.base}/files/release.zip", tmp_path / "bad", sha256="f" * 64)
        assert not (tmp_path / "bad").exists()
        dest = fetch_url(f"{server.base}/files/release.zip", tmp_path / "good",
                         sha256=hashlib.sha256(archive).hexdigest())
    assert (dest / "Release_v1" / "README.md").is_file()


def test_zip_member_outside_dest_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("../evil.txt", "x")
    data = buf.getvalue()
    with Server({"evil.zip": data}) as server:
        with pytest.raises(ChoirbenchError, match="would leave"):
            fetch_url(f"{server.base}/files/evil.zip", tmp_path / "d", sha256=hashlib.sha256(data).hexdigest())
    assert not (tmp_path / "evil.txt").exists()


def test_sha256_list_detects_corruption(tmp_path):
    (tmp_path / "song").mkdir()
    (tmp_path / "song" / "a.wav").write_bytes(b"abc")
    write_sha256_list(tmp_path / "sums.sha256", tmp_path, ["song/a.wav"])
    assert verify_sha256_list(tmp_path, tmp_path / "sums.sha256") == 1
    (tmp_path / "song" / "a.wav").write_bytes(b"abd")
    with pytest.raises(ChoirbenchError, match="sha256 mismatch for song/a.wav"):
        verify_sha256_list(tmp_path, tmp_path / "sums.sha256")
