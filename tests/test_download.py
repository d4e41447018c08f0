"""Tests for hicmix.download and its CLI, against a local 127.0.0.1 HTTP server and local files."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from hicmix.atomic import temporary_sibling
from hicmix.cli import cli
from hicmix.download import (
    Portals,
    append_sources_log,
    classify_source,
    fetch,
    normalize_md5,
    portal_assembly,
    resolve_accession,
    resolve_sheet,
)
from hicmix.errors import DownloadError

TEST_TIMEOUT_S = 30
FAST = {"backoff": 0.01, "timeout": 5}


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def payload(n_bytes: int = 300_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def _time_limit() -> Iterator[None]:
    """Fail any test that runs longer than TEST_TIMEOUT_S instead of hanging the suite."""

    def _expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"test exceeded {TEST_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(TEST_TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@dataclasses.dataclass
class Route:
    """What the test server answers on one path."""

    body: bytes = b""
    content_type: str = "application/octet-stream"
    ranges: bool = True  # honour Range requests with 206
    send_length: bool = True  # send Content-Length
    truncate_first: int = 0  # first N answers send half the body, then close
    truncate_always: bool = False
    fail_first: int = 0  # first N answers are fail_status
    fail_status: int = 500
    status: int = 200  # a non-200 status is sent on every request
    drop_first: int = 0  # first N connections are closed without an answer
    stall_first: int = 0  # first N answers wait stall_s before sending anything
    stall_s: float = 1.0
    redirect: str | None = None
    requests: list[str | None] = dataclasses.field(default_factory=list)  # Range headers seen


class _Handler(BaseHTTPRequestHandler):
    server_version = "hicmix-test"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            self.send_error(404)
            return
        n = len(route.requests)
        route.requests.append(self.headers.get("Range"))
        if n < route.drop_first:
            self.close_connection = True
            return
        if n < route.stall_first:
            time.sleep(route.stall_s)
        if route.redirect is not None:
            self.send_response(302)
            self.send_header("Location", route.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if n < route.fail_first:
            self.send_error(route.fail_status)
            return
        if route.status != 200:
            self.send_error(route.status)
            return
        self._send_body(route, truncate=route.truncate_always or n < route.truncate_first)

    def _send_body(self, route: Route, truncate: bool) -> None:
        body, start = route.body, 0
        requested = self.headers.get("Range")
        if requested and route.ranges:
            start = int(requested.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Type", route.content_type)
        if route.send_length:
            self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        # the client may have given up already (timeout tests): a closed socket is fine here
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(chunk[: len(chunk) // 2] if truncate else chunk)
            self.wfile.flush()
        self.close_connection = True


@dataclasses.dataclass
class Server:
    base: str
    routes: dict[str, Route]

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.base + path

    def add_json(self, path: str, data: dict) -> str:
        return self.add(path, Route(json.dumps(data).encode(), "application/json"))

    def portals(self) -> Portals:
        return Portals(
            encode=f"{self.base}/encode",
            fourdn=f"{self.base}/4dn",
            fourdn_mirror=f"{self.base}/mirror",
        )


@pytest.fixture
def server() -> Iterator[Server]:
    """A threaded HTTP server on 127.0.0.1 and a free port; a watchdog stops it after 60 s."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.routes = {}
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    watchdog = threading.Timer(60, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    host, port = httpd.server_address[:2]
    try:
        yield Server(f"http://{host}:{port}", httpd.routes)
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def leftovers(folder: Path) -> list[str]:
    """Every file in folder (hidden partial files included)."""
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------ classify


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("ENCFF734CUT", "encode"),
        ("4DNFIXP4QG5B", "4dn"),
        ("https://example.org/a.bw", "url"),
        ("http://example.org/a.bw", "url"),
        ("file:///data/a.bw", "url"),
        ("resources/a.bw", "path"),
        ("ENCFF734cut", "path"),
        ("ENCSR000EMT", "path"),
        ("4DNFIXP4QG5", "path"),
    ],
)
def test_classify_source(source: str, kind: str) -> None:
    assert classify_source(source) == kind


def test_md5_and_assembly_helpers() -> None:
    assert normalize_md5("") is None
    assert normalize_md5(" D41D8CD98F00B204E9800998ECF8427E ") == "d41d8cd98f00b204e9800998ecf8427e"
    with pytest.raises(DownloadError, match="not an md5"):
        normalize_md5("abc")
    assert portal_assembly("hg38") == "GRCh38"
    assert portal_assembly("hg19") == "hg19"
    assert portal_assembly("") is None


# ------------------------------------------------------------------------------------ HTTP


def test_http_download_with_length_and_sources_log(server: Server, tmp_path: Path) -> None:
    body = payload()
    url = server.add("/data/a.bw", Route(body))
    out, log = tmp_path / "res" / "a.bw", tmp_path / "res" / "SOURCES.tsv"
    record = fetch(url, out, md5=md5_of(body), sources_log=log, **FAST)
    assert out.read_bytes() == body
    assert record["action"] == "downloaded"
    assert record["size"] == len(body) and record["md5"] == md5_of(body)
    fetch(url, tmp_path / "res" / "b.bw", sources_log=log, **FAST)
    with open(log) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [row["out"] for row in rows] == [str(out), str(tmp_path / "res" / "b.bw")]
    assert rows[0]["source"] == url and rows[0]["url"] == url
    assert rows[0]["size"] == str(len(body)) and rows[0]["md5"] == md5_of(body)
    assert rows[0]["date_utc"].endswith("Z")
    assert leftovers(tmp_path / "res") == [".SOURCES.tsv.lock", "SOURCES.tsv", "a.bw", "b.bw"]


def test_interrupted_transfer_resumes_with_range(server: Server, tmp_path: Path) -> None:
    body = payload()
    route = Route(body, truncate_first=2)
    url = server.add("/data/a.bw", route)
    out = tmp_path / "a.bw"
    record = fetch(url, out, md5=md5_of(body), retries=3, **FAST)
    assert out.read_bytes() == body and record["md5"] == md5_of(body)
    assert route.requests[0] is None
    half = len(body) // 2
    assert route.requests[1] == f"bytes={half}-"  # resumed, not restarted
    assert route.requests[2] == f"bytes={half + (len(body) - half) // 2}-"
    assert len(route.requests) == 3
    assert leftovers(tmp_path) == ["a.bw"]


def test_interrupted_transfer_restarts_when_range_ignored(server: Server, tmp_path: Path) -> None:
    body = payload()
    route = Route(body, ranges=False, truncate_first=1)
    url = server.add("/data/a.bw", route)
    out = tmp_path / "a.bw"
    fetch(url, out, md5=md5_of(body), retries=2, **FAST)
    assert out.read_bytes() == body
    assert route.requests == [None, f"bytes={len(body) // 2}-"]


def test_always_truncated_fails_after_retries_leaving_nothing(
    server: Server, tmp_path: Path
) -> None:
    route = Route(payload(), truncate_always=True)
    url = server.add("/data/a.bw", route)
    with pytest.raises(DownloadError, match=r"failed after 3 attempts.*shorter than announced"):
        fetch(url, tmp_path / "a.bw", retries=2, **FAST)
    assert len(route.requests) == 3
    assert leftovers(tmp_path) == []


def test_404_is_final_with_clear_error(server: Server, tmp_path: Path) -> None:
    route = Route(status=404)
    url = server.add("/data/missing.bw", route)
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "a.bw", retries=3, **FAST)
    message = str(caught.value)
    assert "HTTP 404" in message and url in message and str(tmp_path / "a.bw") in message
    assert "\n" not in message
    assert len(route.requests) == 1  # not retried
    assert leftovers(tmp_path) == []


def test_403_is_final(server: Server, tmp_path: Path) -> None:
    route = Route(status=403)
    url = server.add("/data/private.bw", route)
    with pytest.raises(DownloadError, match="HTTP 403"):
        fetch(url, tmp_path / "a.bw", retries=3, **FAST)
    assert len(route.requests) == 1


def test_500_then_ok_is_retried(server: Server, tmp_path: Path) -> None:
    body = payload(5000)
    route = Route(body, fail_first=2, fail_status=503)
    url = server.add("/data/a.bw", route)
    fetch(url, tmp_path / "a.bw", md5=md5_of(body), retries=3, **FAST)
    assert (tmp_path / "a.bw").read_bytes() == body
    assert len(route.requests) == 3


def test_connection_reset_and_timeout_are_retried(server: Server, tmp_path: Path) -> None:
    body = payload(5000)
    dropped = Route(body, drop_first=1)
    stalled = Route(body, stall_first=1, stall_s=1.0)
    url_dropped = server.add("/data/dropped.bw", dropped)
    url_stalled = server.add("/data/stalled.bw", stalled)
    fetch(url_dropped, tmp_path / "a.bw", md5=md5_of(body), retries=2, backoff=0.01, timeout=5)
    fetch(url_stalled, tmp_path / "b.bw", md5=md5_of(body), retries=2, backoff=0.01, timeout=0.3)
    assert (tmp_path / "a.bw").read_bytes() == body == (tmp_path / "b.bw").read_bytes()
    assert len(dropped.requests) == 2 and len(stalled.requests) == 2


def test_md5_mismatch_leaves_nothing(server: Server, tmp_path: Path) -> None:
    body = payload(5000)
    url = server.add("/data/a.bw", Route(body))
    wrong = "0" * 32
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "a.bw", md5=wrong, **FAST)
    message = str(caught.value)
    assert wrong in message and md5_of(body) in message and url in message
    assert "fix the md5 in the sheet" in message and "re-run" in message
    assert leftovers(tmp_path) == []


def test_present_file_with_right_md5_is_skipped(server: Server, tmp_path: Path) -> None:
    body = payload(5000)
    route = Route(body)
    url = server.add("/data/a.bw", route)
    out = tmp_path / "a.bw"
    out.write_bytes(body)
    log = tmp_path / "SOURCES.tsv"
    record = fetch(url, out, md5=md5_of(body), sources_log=log, **FAST)
    assert record["action"] == "present"
    assert route.requests == [] and not log.exists()
    out.write_bytes(b"stale")  # wrong content is replaced
    assert fetch(url, out, md5=md5_of(body), **FAST)["action"] == "downloaded"
    assert out.read_bytes() == body


def test_partial_from_killed_run_is_resumed_when_md5_known(server: Server, tmp_path: Path) -> None:
    body = payload()
    route = Route(body)
    url = server.add("/data/a.bw", route)
    out = tmp_path / "a.bw"
    temporary_sibling(out).write_bytes(body[:1000])
    fetch(url, out, md5=md5_of(body), **FAST)
    assert out.read_bytes() == body
    assert route.requests == ["bytes=1000-"]
    # a complete leftover answers 416, and the download restarts from byte 0
    temporary_sibling(out).write_bytes(body)
    out.unlink()
    fetch(url, out, md5=md5_of(body), retries=0, **FAST)
    assert out.read_bytes() == body
    assert route.requests[1:] == [f"bytes={len(body)}-", None]
    assert leftovers(tmp_path) == ["a.bw"]


def test_redirect_is_followed_and_final_url_recorded(server: Server, tmp_path: Path) -> None:
    body = payload(5000)
    final = server.add("/s3/a.bw", Route(body))
    url = server.add("/files/a.bw", Route(redirect=final))
    record = fetch(url, tmp_path / "a.bw", md5=md5_of(body), **FAST)
    assert record["url"] == final and record["source"] == url


def test_no_md5_and_no_length_warns(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = payload(5000)
    url = server.add("/data/a.bw", Route(body, send_length=False))
    with caplog.at_level(logging.WARNING, logger="hicmix.download"):
        fetch(url, tmp_path / "a.bw", **FAST)
    assert (tmp_path / "a.bw").read_bytes() == body
    assert "no Content-Length" in caplog.text


# ------------------------------------------------------------------------------------ local


def test_file_url_and_bare_path_are_copied(tmp_path: Path) -> None:
    body = payload(5000)
    src = tmp_path / "src dir" / "a.bw"
    src.parent.mkdir()
    src.write_bytes(body)
    out_dir = tmp_path / "out"
    by_url = fetch(src.as_uri(), out_dir / "url.bw", md5=md5_of(body))
    by_path = fetch(str(src), out_dir / "path.bw", md5=md5_of(body))
    for record, name in ((by_url, "url.bw"), (by_path, "path.bw")):
        assert record["action"] == "copied"
        assert not (out_dir / name).is_symlink()
        assert (out_dir / name).read_bytes() == body
    assert by_url["url"] == src.resolve().as_uri()


def test_large_local_file_is_symlinked_absolute(tmp_path: Path) -> None:
    body = payload(5000)
    src = tmp_path / "big.mcool"
    src.write_bytes(body)
    out = tmp_path / "out" / "hic.mcool"
    record = fetch(str(src), out, md5=md5_of(body), link_min_bytes=1000)
    assert record["action"] == "linked"
    assert out.is_symlink() and Path(out.readlink()).is_absolute()
    assert out.resolve() == src.resolve() and out.read_bytes() == body


@pytest.mark.parametrize("link_min_bytes", [None, 1])
def test_local_md5_mismatch_leaves_nothing(tmp_path: Path, link_min_bytes: int | None) -> None:
    src = tmp_path / "a.bw"
    src.write_bytes(b"content")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DownloadError, match="expected 00000000000000000000000000000000"):
        fetch(str(src), out_dir / "a.bw", md5="0" * 32, link_min_bytes=link_min_bytes)
    assert leftovers(out_dir) == []


def test_missing_local_source(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="does not exist"):
        fetch(str(tmp_path / "nope.bw"), tmp_path / "a.bw")
    with pytest.raises(DownloadError, match="does not exist"):
        fetch((tmp_path / "nope.bw").as_uri(), tmp_path / "a.bw")


def test_sources_log_appends_under_existing_header(tmp_path: Path) -> None:
    log = tmp_path / "SOURCES.tsv"
    for i in range(3):
        append_sources_log(log, {"source": f"s{i}", "url": "u", "out": "o", "size": i, "md5": "m"})
    lines = log.read_text().splitlines()
    assert lines[0] == "date_utc\tsource\turl\tout\tsize\tmd5"
    assert [line.split("\t")[1] for line in lines[1:]] == ["s0", "s1", "s2"]


# ------------------------------------------------------------------------------------ portals


def encode_meta(accession: str, body: bytes, extra: dict) -> dict:
    meta = {
        "accession": accession,
        "status": "released",
        "assembly": "GRCh38",
        "file_format": "bigWig",
        "md5sum": md5_of(body),
        "file_size": len(body),
        "href": f"/files/{accession}/@@download/{accession}.bigWig",
    }
    meta.update(extra)
    return meta


def add_encode(server: Server, accession: str, body: bytes, meta: dict | None = None) -> Route:
    """Metadata, the @@download redirect and the file on a fake 'S3' path, like ENCODE."""
    server.add_json(f"/encode/files/{accession}/", encode_meta(accession, body, meta or {}))
    final = server.base + f"/s3/{accession}.bigWig"
    server.add(f"/encode/files/{accession}/@@download/{accession}.bigWig", Route(redirect=final))
    route = Route(body)
    server.add(f"/s3/{accession}.bigWig", route)
    return route


UUID = "d6abea45-b0bb-4154-9854-1d3075b98097"


def add_4dn(server: Server, accession: str, body: bytes, meta: dict | None = None) -> Route:
    record = {
        "accession": accession,
        "uuid": UUID,
        "status": "released",
        "genome_assembly": "GRCh38",
        "file_format": "/file-formats/mcool/",
        "md5sum": md5_of(body),
        "file_size": len(body),
        "upload_key": f"{UUID}/{accession}.mcool",
    }
    record.update(meta or {})
    server.add_json(f"/4dn/files-processed/{accession}/", record)
    route = Route(body)
    server.add(f"/mirror/{UUID}/{accession}.mcool", route)
    return route


def test_encode_accession_uses_portal_md5(server: Server, tmp_path: Path) -> None:
    body = payload(5000)
    add_encode(server, "ENCFF001AAA", body)
    out = tmp_path / "CTCF.bw"
    record = fetch("ENCFF001AAA", out, expected_assembly="hg38", portals=server.portals(), **FAST)
    assert out.read_bytes() == body
    assert record["md5"] == md5_of(body)
    assert record["url"] == server.base + "/s3/ENCFF001AAA.bigWig"


def test_encode_accession_portal_md5_mismatch(server: Server, tmp_path: Path) -> None:
    add_encode(server, "ENCFF001AAA", payload(5000), {"md5sum": "1" * 32})
    with pytest.raises(DownloadError, match=r"expected 1{32}"):
        fetch("ENCFF001AAA", tmp_path / "a.bw", portals=server.portals(), **FAST)
    assert leftovers(tmp_path) == []


def test_sheet_md5_differing_from_portal_fails_before_download(
    server: Server, tmp_path: Path
) -> None:
    route = add_encode(server, "ENCFF001AAA", payload(5000))
    with pytest.raises(DownloadError, match="differs from the portal"):
        fetch("ENCFF001AAA", tmp_path / "a.bw", md5="2" * 32, portals=server.portals(), **FAST)
    assert route.requests == []


@pytest.mark.parametrize(
    ("extra", "expected", "match"),
    [
        ({"assembly": "hg19"}, "hg38", "is on assembly hg19, not GRCh38"),
        ({"status": "revoked"}, None, "status 'revoked'"),
        ({"accession": "ENCFF999ZZZ"}, None, "describes ENCFF999ZZZ"),
    ],
)
def test_encode_metadata_checks(
    server: Server, tmp_path: Path, extra: dict, expected: str | None, match: str
) -> None:
    route = add_encode(server, "ENCFF001AAA", payload(100), extra)
    with pytest.raises(DownloadError, match=match):
        fetch(
            "ENCFF001AAA",
            tmp_path / "a.bw",
            expected_assembly=expected,
            portals=server.portals(),
            **FAST,
        )
    assert route.requests == []
    assert leftovers(tmp_path) == []


def test_unknown_accession_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"ENCODE metadata for ENCFF404AAA failed.*HTTP 404"):
        fetch("ENCFF404AAA", tmp_path / "a.bw", portals=server.portals(), **FAST)


def test_encode_without_href_uses_download_path(server: Server) -> None:
    server.add_json(
        "/encode/files/ENCFF002AAA/",
        {"accession": "ENCFF002AAA", "status": "released", "file_format": "hic"},
    )
    resolved = resolve_accession("ENCFF002AAA", portals=server.portals(), **FAST)
    assert resolved.url == f"{server.base}/encode/files/ENCFF002AAA/@@download/ENCFF002AAA.hic"
    assert resolved.md5 is None and resolved.size is None


def test_4dn_accession_via_mirror_and_env(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = payload(5000)
    route = add_4dn(server, "4DNFI1234ABC", body)
    monkeypatch.setenv("HICMIX_4DN_URL", server.base + "/4dn")
    monkeypatch.setenv("HICMIX_4DN_MIRROR", server.base + "/mirror/")
    out = tmp_path / "hic.mcool"
    record = fetch("4DNFI1234ABC", out, expected_assembly="hg38", **FAST)
    assert out.read_bytes() == body and len(route.requests) == 1
    assert record["url"] == f"{server.base}/mirror/{UUID}/4DNFI1234ABC.mcool"
    with pytest.raises(DownloadError, match="not hg19"):
        fetch("4DNFI1234ABC", tmp_path / "b.mcool", expected_assembly="hg19", **FAST)


def test_4dn_without_upload_key_and_without_uuid(server: Server) -> None:
    add_4dn(server, "4DNFI1234ABC", b"x", {"upload_key": None})
    resolved = resolve_accession("4DNFI1234ABC", portals=server.portals(), **FAST)
    assert resolved.url == f"{server.base}/mirror/{UUID}/4DNFI1234ABC.mcool"
    add_4dn(server, "4DNFI5678XYZ", b"x", {"uuid": None})
    with pytest.raises(DownloadError, match="has no uuid"):
        resolve_accession("4DNFI5678XYZ", portals=server.portals(), **FAST)


def test_metadata_5xx_is_retried(server: Server) -> None:
    server.add_json(
        "/encode/files/ENCFF003AAA/", {"accession": "ENCFF003AAA", "status": "released"}
    )
    server.routes["/encode/files/ENCFF003AAA/"].fail_first = 1
    resolved = resolve_accession("ENCFF003AAA", portals=server.portals(), retries=2, **FAST)
    assert resolved.accession == "ENCFF003AAA"


# ------------------------------------------------------------------------------------ sheets


def write_tsv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_resolve_tracks_sheet(server: Server, tmp_path: Path) -> None:
    body = payload(5000)
    add_encode(server, "ENCFF001AAA", body)
    sheet = tmp_path / "tracks.tsv"
    write_tsv(
        sheet,
        [
            {
                "cell_line": "GM12878",
                "assay": "CTCF",
                "strand": ".",
                "source": "ENCFF001AAA",
                "md5": "",
                "note": "",
            },
            {
                "cell_line": "GM12878",
                "assay": "ATAC",
                "strand": ".",
                "source": "https://example.org/a.bw",
                "md5": "",
                "note": "kept",
            },
        ],
    )
    out = tmp_path / "resolved.tsv"
    assert resolve_sheet(sheet, out, "hg38", portals=server.portals(), **FAST) == 1
    rows = read_tsv(out)
    assert rows[0]["url"] == f"{server.base}/encode/files/ENCFF001AAA/@@download/ENCFF001AAA.bigWig"
    assert rows[0]["md5"] == md5_of(body) and rows[0]["size"] == str(len(body))
    assert rows[1]["url"] == "" and rows[1]["md5"] == "" and rows[1]["note"] == "kept"
    assert list(rows[0]) == ["cell_line", "assay", "strand", "source", "md5", "note", "url", "size"]


def test_resolve_cell_lines_sheet_and_md5_conflict(server: Server, tmp_path: Path) -> None:
    hic, loops = payload(5000), payload(300, seed=1)
    add_4dn(server, "4DNFI1234ABC", hic)
    add_encode(server, "ENCFF780AAA", loops)
    sheet = tmp_path / "cell_lines.tsv"
    row = {
        "cell_line": "GM12878",
        "assembly": "hg38",
        "roles": "finetune",
        "hic_source": "4DNFI1234ABC",
        "hic_md5": "",
        "loops_source": "ENCFF780AAA",
        "loops_md5": md5_of(loops),
        "genes_source": "genes.tsv",
        "genes_md5": "",
    }
    write_tsv(sheet, [row])
    assert resolve_sheet(sheet, sheet, portals=server.portals(), **FAST) == 2
    resolved = read_tsv(sheet)[0]
    assert resolved["hic_url"] == f"{server.base}/mirror/{UUID}/4DNFI1234ABC.mcool"
    assert resolved["hic_md5"] == md5_of(hic) and resolved["hic_size"] == str(len(hic))
    assert resolved["loops_md5"] == md5_of(loops) and resolved["loops_url"].endswith(".bigWig")
    assert resolved["genes_url"] == "" and resolved["genes_md5"] == ""
    # a sheet md5 that disagrees with the portal names the sheet, line and column
    write_tsv(sheet, [{**row, "hic_md5": "3" * 32}])
    before = sheet.read_text()
    with pytest.raises(DownloadError, match=r"cell_lines.tsv line 2 column hic_md5"):
        resolve_sheet(sheet, sheet, portals=server.portals(), **FAST)
    assert sheet.read_text() == before
    # the row's assembly is checked against the portal
    write_tsv(sheet, [{**row, "assembly": "hg19"}])
    with pytest.raises(DownloadError, match="not hg19"):
        resolve_sheet(sheet, sheet, portals=server.portals(), **FAST)


# ------------------------------------------------------------------------------------ CLI


def test_cli_download_and_error(server: Server, tmp_path: Path) -> None:
    body = payload(5000)
    url = server.add("/data/a.bw", Route(body))
    missing = server.add("/data/missing.bw", Route(status=404))
    runner = CliRunner()
    log = tmp_path / "SOURCES.tsv"
    ok = runner.invoke(
        cli,
        [
            "download",
            "--source",
            url,
            "--out",
            str(tmp_path / "a.bw"),
            "--md5",
            md5_of(body),
            "--retries",
            "1",
            "--timeout",
            "5",
            "--sources-log",
            str(log),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "a.bw").read_bytes() == body and log.exists()
    bad = runner.invoke(
        cli, ["download", "--source", missing, "--out", str(tmp_path / "b.bw"), "--md5", ""]
    )
    assert bad.exit_code == 1
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "HTTP 404" in errors[0]
    assert "Traceback" not in bad.output
    assert not (tmp_path / "b.bw").exists()


def test_cli_md5_mismatch_exit_1(tmp_path: Path) -> None:
    src = tmp_path / "a.bw"
    src.write_bytes(b"content")
    result = CliRunner().invoke(
        cli, ["download", "--source", str(src), "--out", str(tmp_path / "o.bw"), "--md5", "0" * 32]
    )
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: ") and "expected 0000" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_resolve_sources(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = payload(300)
    add_encode(server, "ENCFF001AAA", body)
    monkeypatch.setenv("HICMIX_ENCODE_URL", server.base + "/encode")
    sheet = tmp_path / "tracks.tsv"
    write_tsv(
        sheet,
        [
            {
                "cell_line": "K562",
                "assay": "CTCF",
                "strand": ".",
                "source": "ENCFF001AAA",
                "md5": "",
                "note": "",
            }
        ],
    )
    out = tmp_path / "out.tsv"
    result = CliRunner().invoke(
        cli, ["resolve-sources", "--sheet", str(sheet), "--out", str(out), "--assembly", "hg38"]
    )
    assert result.exit_code == 0, result.output
    assert read_tsv(out)[0]["md5"] == md5_of(body)
    wrong = CliRunner().invoke(
        cli, ["resolve-sources", "--sheet", str(sheet), "--assembly", "hg19", "--retries", "0"]
    )
    assert wrong.exit_code == 1 and "not hg19" in wrong.stderr
    assert read_tsv(sheet)[0]["source"] == "ENCFF001AAA"


# -------------------------------------------------------------------------------- shipped sheets

CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_shipped_encode_4dn_sheets_are_well_formed() -> None:
    cfg = yaml.safe_load((CONFIG / "encode_4dn.yaml").read_text())
    cells = read_tsv(CONFIG / "encode_4dn" / "cell_lines.tsv")
    tracks = read_tsv(CONFIG / "encode_4dn" / "tracks.tsv")
    roles = {row["cell_line"]: row["roles"] for row in cells}
    assert roles == {
        "HCT116": "pretrain",
        "IMR90": "pretrain",
        "HepG2": "pretrain",
        "WTC11": "pretrain",
        "GM12878": "finetune",
        "K562": "finetune",
    }
    assert {row["assembly"] for row in cells} == {cfg["assembly"]} == {"hg38"}
    for row in cells:
        assert classify_source(row["hic_source"]) in ("4dn", "path"), row
        assert row["note"].strip()
    for row in tracks:
        assert row["cell_line"] in roles and row["strand"] in ("+", "-", ".")
        assert row["source"].strip() and row["note"].strip()
        assert normalize_md5(row["md5"]) is None  # filled by resolve-sources
        if row["source"].startswith("ENC"):
            assert classify_source(row["source"]) == "encode", row
    for cell in roles:  # every channel is configured for every cell line
        assays = {row["assay"] for row in tracks if row["cell_line"] == cell}
        assert set(cfg["channels"]) <= assays, cell
    for cell in ("GM12878", "K562"):  # CAGE on both strands for the fine-tuning lines
        strands = {
            row["strand"] for row in tracks if row["cell_line"] == cell and row["assay"] == "CAGE"
        }
        assert strands == {"+", "-"}
    assert cfg["splits"] == {"val": ["chr10", "chr11"], "test": ["chr3", "chr13", "chr17"]}
    assert (cfg["resolution"], cfg["window_bins"], cfg["track_subbin_bp"]) == (5000, 50, 100)
