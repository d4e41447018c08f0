"""Sources and downloads: accessions, URLs and local paths, fetched md5-checked and atomically.

A source is one of
- an ENCODE file accession (``ENCFF123ABC``), resolved through
  ``{encode}/files/{acc}/?format=json``;
- a 4DN file accession (``4DNFI1234567``), resolved through
  ``{4dn}/files-processed/{acc}/?format=json`` and downloaded from the AWS open-data mirror
  (the portal's ``@@download`` needs an access key);
- an ``http://``, ``https://`` or ``file://`` URL;
- anything else: a local path.

Decisions
- Downloads stream to ``hicmix.atomic.temporary_sibling(out)`` while the md5 is computed; only a
  verified file is renamed to ``out``. A failed download removes its partial file. A partial file
  left by a *killed* process is resumed on the next run only when an md5 is known, so the result is
  still verified.
- Resume: after a transient failure the next attempt asks for ``Range: bytes=N-``. A ``206`` whose
  ``Content-Range`` starts at N is appended; a ``200`` (range ignored), a mismatching range or a
  ``416`` restarts from byte 0.
- Local sources are copied, the md5 computed during the copy. Files of at least ``link_min_bytes``
  (1 GiB by default, e.g. a 27 GB mcool on shared storage) are symlinked to their absolute,
  resolved path instead, after their md5 is checked: a copy would double the storage, and a hard
  link fails across filesystems. Caveats: moving the original breaks the link and editing it
  changes the data (the md5 in the sources log records what was checked), and Snakemake's
  ``protected()`` chmods through the link on Linux, so the original becomes read-only.
- An existing output is kept only when an md5 is known and matches; without an md5 it is fetched
  again (Snakemake does not rerun a finished download, so this only affects manual calls).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hicmix import __version__
from hicmix.atomic import atomic_path, temporary_sibling
from hicmix.errors import DownloadError

log = logging.getLogger(__name__)

ENCODE_FILE_RE = re.compile(r"^ENCFF[0-9]{3}[A-Z]{3}$")
FOURDN_FILE_RE = re.compile(r"^4DNFI[0-9A-Z]{7}$")
URL_RE = re.compile(r"^(https?|file)://", re.IGNORECASE)
MD5_RE = re.compile(r"^[0-9a-f]{32}$")

DEFAULT_ENCODE_URL = "https://www.encodeproject.org"
DEFAULT_4DN_URL = "https://data.4dnucleome.org"
DEFAULT_4DN_MIRROR = "https://4dn-open-data-public.s3.amazonaws.com/fourfront-webprod/wfoutput"
ENV_ENCODE_URL = "HICMIX_ENCODE_URL"
ENV_4DN_URL = "HICMIX_4DN_URL"
ENV_4DN_MIRROR = "HICMIX_4DN_MIRROR"

#: UCSC assembly name (as in the sheets) -> the name the portals use in file metadata.
PORTAL_ASSEMBLY = {"hg38": "GRCh38", "grch38": "GRCh38", "hg19": "hg19", "grch37": "hg19"}
#: Columns of the sources log, one row per fetched file.
SOURCES_LOG_COLUMNS = ("date_utc", "source", "url", "out", "size", "md5")

CHUNK_BYTES = 1 << 20
LINK_MIN_BYTES = 1 << 30
MAX_BACKOFF_S = 60.0
#: HTTP statuses worth retrying; every other 4xx is final.
TRANSIENT_STATUS = frozenset({408, 425, 429})

T = TypeVar("T")


class _TransientError(Exception):
    """A failure worth retrying (connection reset, timeout, 5xx, short body)."""


class _RestartError(Exception):
    """The server cannot continue a partial download (416); start again from byte 0."""


@dataclasses.dataclass(frozen=True)
class Portals:
    """Base URLs of the portals: arguments win over environment variables, then defaults."""

    encode: str = DEFAULT_ENCODE_URL
    fourdn: str = DEFAULT_4DN_URL
    fourdn_mirror: str = DEFAULT_4DN_MIRROR

    @classmethod
    def from_env(
        cls,
        encode: str | None = None,
        fourdn: str | None = None,
        fourdn_mirror: str | None = None,
    ) -> Portals:
        """Portal URLs: arguments, else ``HICMIX_ENCODE_URL``/``_4DN_URL``/``_4DN_MIRROR``."""
        return cls(
            encode=(encode or os.environ.get(ENV_ENCODE_URL) or DEFAULT_ENCODE_URL).rstrip("/"),
            fourdn=(fourdn or os.environ.get(ENV_4DN_URL) or DEFAULT_4DN_URL).rstrip("/"),
            fourdn_mirror=(
                fourdn_mirror or os.environ.get(ENV_4DN_MIRROR) or DEFAULT_4DN_MIRROR
            ).rstrip("/"),
        )


@dataclasses.dataclass(frozen=True)
class ResolvedSource:
    """Where an accession's file lives and what it must hash to, from portal metadata."""

    accession: str
    url: str
    md5: str | None
    size: int | None
    assembly: str | None


# --------------------------------------------------------------------------------------- classify


def classify_source(source: str) -> str:
    """``"encode"``, ``"4dn"``, ``"url"`` or ``"path"`` for a sheet's source value."""
    source = source.strip()
    if ENCODE_FILE_RE.match(source):
        return "encode"
    if FOURDN_FILE_RE.match(source):
        return "4dn"
    if URL_RE.match(source):
        return "url"
    return "path"


def is_accession(source: str) -> bool:
    """True for an ENCODE or 4DN file accession."""
    return classify_source(source) in ("encode", "4dn")


def normalize_md5(md5: str | None, where: str = "the md5 argument") -> str | None:
    """Lower-case md5, or None when empty; a malformed value is a DownloadError."""
    if md5 is None or not str(md5).strip():
        return None
    value = str(md5).strip().lower()
    if not MD5_RE.match(value):
        raise DownloadError(
            f"{where} is {md5!r}, which is not an md5 (32 hex digits); fix it or leave it empty."
        )
    return value


def portal_assembly(assembly: str | None) -> str | None:
    """The portal's name for a sheet assembly (hg38 -> GRCh38); unknown names pass through."""
    if assembly is None or not str(assembly).strip():
        return None
    return PORTAL_ASSEMBLY.get(str(assembly).strip().lower(), str(assembly).strip())


# --------------------------------------------------------------------------------------- HTTP


def _sleep_backoff(attempt: int, backoff: float) -> None:
    time.sleep(min(backoff * 2**attempt, MAX_BACKOFF_S))


def _with_retries(
    action: Callable[[], T], *, retries: int, backoff: float, what: str, fix: str
) -> T:
    """Run ``action``; retry transient failures ``retries`` times with exponential back-off."""
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return action()
        except _TransientError as error:
            last = error
            log.warning("%s: attempt %d/%d failed: %s", what, attempt + 1, retries + 1, error)
            if attempt < retries:
                _sleep_backoff(attempt, backoff)
    raise DownloadError(f"{what} failed after {retries + 1} attempts (last: {last}); {fix}.")


def _request(url: str, headers: dict[str, str] | None = None) -> urllib.request.Request:
    merged = {"User-Agent": f"hicmix/{__version__}"}
    merged.update(headers or {})
    return urllib.request.Request(url, headers=merged)


def _open(url: str, headers: dict[str, str], timeout: float, what: str, fix: str) -> Any:
    """Open ``url`` (redirects followed); sort failures into transient, restart and final."""
    try:
        return urllib.request.urlopen(_request(url, headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        code, reason = error.code, error.reason
        error.close()
        if code >= 500 or code in TRANSIENT_STATUS:
            raise _TransientError(f"HTTP {code} {reason} from {url}") from None
        if code == 416 and "Range" in headers:
            raise _RestartError(f"HTTP 416 from {url}") from None
        raise DownloadError(f"{what} failed: {url} answered HTTP {code} {reason}; {fix}.") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, OSError):
            raise _TransientError(f"{error.reason} ({url})") from None
        raise DownloadError(f"{what} failed: cannot open {url} ({error.reason}); {fix}.") from None
    except (OSError, http.client.HTTPException) as error:
        raise _TransientError(f"{type(error).__name__}: {error} ({url})") from None


def _get_json(
    url: str, *, timeout: float, retries: int, backoff: float, what: str, fix: str
) -> dict:
    def attempt() -> dict:
        response = _open(url, {"Accept": "application/json"}, timeout, what, fix)
        try:
            with response:
                body = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise _TransientError(f"{type(error).__name__}: {error} ({url})") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise DownloadError(f"{what} failed: {url} did not return JSON; {fix}.") from None
        if not isinstance(data, dict):
            raise DownloadError(f"{what} failed: {url} did not return a JSON object; {fix}.")
        return data

    return _with_retries(attempt, retries=retries, backoff=backoff, what=what, fix=fix)


# --------------------------------------------------------------------------------------- portals


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _check_metadata(
    accession: str, portal: str, meta: dict, status: Any, assembly: Any, expected: str | None
) -> None:
    if meta.get("accession") not in (None, accession):
        raise DownloadError(
            f"{portal} metadata for {accession} describes {meta.get('accession')}; "
            "check the accession in the sheet."
        )
    if status != "released":
        raise DownloadError(
            f"{portal} file {accession} has status {status!r}, not 'released'; "
            "pick a released file of the same experiment and put its accession in the sheet."
        )
    if expected and assembly and str(assembly) != expected:
        raise DownloadError(
            f"{portal} file {accession} is on assembly {assembly}, not {expected}; "
            f"pick the experiment's {expected} file and put its accession in the sheet."
        )


def _file_format(meta: dict) -> str | None:
    fmt = meta.get("file_format")
    if isinstance(fmt, dict):  # 4DN embeds the linked file-format object
        fmt = fmt.get("file_format") or fmt.get("display_title")
    if isinstance(fmt, str) and fmt.strip():
        return fmt.strip().strip("/").split("/")[-1]
    return None


def _portal_metadata(
    url: str,
    portal: str,
    accession: str,
    env_var: str,
    timeout: float,
    retries: int,
    backoff: float,
) -> dict:
    return _get_json(
        url,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        what=f"{portal} metadata for {accession}",
        fix=f"check the accession and the network (or set {env_var})",
    )


def resolve_encode(
    accession: str,
    expected_assembly: str | None = None,
    *,
    portals: Portals | None = None,
    timeout: float = 60,
    retries: int = 5,
    backoff: float = 1.0,
) -> ResolvedSource:
    """Download URL, md5 and size of a released ENCODE file, checking its assembly when given."""
    portals = portals or Portals.from_env()
    url = f"{portals.encode}/files/{accession}/?format=json"
    meta = _portal_metadata(
        url, "ENCODE", accession, "HICMIX_ENCODE_URL", timeout, retries, backoff
    )
    expected = portal_assembly(expected_assembly)
    _check_metadata(accession, "ENCODE", meta, meta.get("status"), meta.get("assembly"), expected)
    href = meta.get("href")
    if isinstance(href, str) and href.startswith("/"):
        download = f"{portals.encode}{href}"
    elif isinstance(href, str) and href:
        download = urllib.parse.urljoin(portals.encode + "/", href)
    else:
        ext = _file_format(meta) or "bin"
        download = f"{portals.encode}/files/{accession}/@@download/{accession}.{ext}"
    return ResolvedSource(
        accession=accession,
        url=download,
        md5=normalize_md5(meta.get("md5sum"), f"ENCODE md5sum of {accession}"),
        size=_int_or_none(meta.get("file_size")),
        assembly=meta.get("assembly"),
    )


def resolve_4dn(
    accession: str,
    expected_assembly: str | None = None,
    *,
    portals: Portals | None = None,
    timeout: float = 60,
    retries: int = 5,
    backoff: float = 1.0,
) -> ResolvedSource:
    """Open-data mirror URL, md5 and size of a released 4DN processed file (uuid from metadata)."""
    portals = portals or Portals.from_env()
    url = f"{portals.fourdn}/files-processed/{accession}/?format=json"
    meta = _portal_metadata(url, "4DN", accession, "HICMIX_4DN_URL", timeout, retries, backoff)
    expected = portal_assembly(expected_assembly)
    _check_metadata(
        accession, "4DN", meta, meta.get("status"), meta.get("genome_assembly"), expected
    )
    uuid = meta.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        raise DownloadError(
            f"4DN metadata for {accession} has no uuid, so its open-data URL is unknown; "
            "give the file's URL in the sheet instead."
        )
    # upload_key is "<uuid>/<accession>.<ext>", the object key on the mirror.
    key = meta.get("upload_key")
    if isinstance(key, str) and key.startswith(f"{uuid}/"):
        name = key.split("/", 1)[1]
    else:
        name = f"{accession}.{_file_format(meta) or 'bin'}"
    return ResolvedSource(
        accession=accession,
        url=f"{portals.fourdn_mirror}/{uuid}/{name}",
        md5=normalize_md5(meta.get("md5sum"), f"4DN md5sum of {accession}"),
        size=_int_or_none(meta.get("file_size")),
        assembly=meta.get("genome_assembly"),
    )


def resolve_accession(
    accession: str,
    expected_assembly: str | None = None,
    *,
    portals: Portals | None = None,
    timeout: float = 60,
    retries: int = 5,
    backoff: float = 1.0,
) -> ResolvedSource:
    """Resolve an ENCODE or 4DN file accession through its portal's metadata."""
    kind = classify_source(accession)
    resolver = {"encode": resolve_encode, "4dn": resolve_4dn}.get(kind)
    if resolver is None:
        raise DownloadError(
            f"{accession!r} is not an ENCODE (ENCFF...) or 4DN (4DNFI...) file accession; "
            "fix the source in the sheet."
        )
    return resolver(
        accession.strip(),
        expected_assembly,
        portals=portals,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
    )


# --------------------------------------------------------------------------------------- hashing


def md5_file(path: str | os.PathLike[str], chunk_size: int = CHUNK_BYTES) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _mismatch(out: Path, source: str, expected: str, observed: str) -> DownloadError:
    return DownloadError(
        f"{out}: md5 of {source} is {observed}, expected {expected}; nothing was written; "
        "fix the md5 in the sheet if the source changed on purpose, or re-run to fetch it again."
    )


# --------------------------------------------------------------------------------------- HTTP fetch


@dataclasses.dataclass
class _Partial:
    """State of one download across attempts: bytes on disk and their running md5."""

    path: Path
    size: int = 0
    digest: Any = dataclasses.field(default_factory=hashlib.md5)
    final_url: str = ""
    total: int | None = None

    def reset(self) -> None:
        self.path.write_bytes(b"")
        self.size, self.digest, self.total = 0, hashlib.md5(), None

    def adopt_existing(self, chunk_size: int) -> None:
        """Continue from a partial file left by a killed run (its bytes are re-hashed)."""
        self.digest = hashlib.md5()
        with open(self.path, "rb") as handle:
            while block := handle.read(chunk_size):
                self.digest.update(block)
        self.size = self.path.stat().st_size


def _content_range_start(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) from ``Content-Range: bytes a-b/total``; None where absent."""
    match = re.match(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", header or "")
    if not match:
        return None, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _download_attempt(
    url: str, part: _Partial, *, timeout: float, chunk_size: int, what: str, fix: str
) -> None:
    headers = {"Range": f"bytes={part.size}-"} if part.size else {}
    try:
        response = _open(url, headers, timeout, what, fix)
    except _RestartError:
        # The partial file cannot be continued (416): start again at once, without a Range header.
        log.info("%s cannot continue the partial download; restarting from byte 0", url)
        part.reset()
        response = _open(url, {}, timeout, what, fix)
    with response:
        part.final_url = response.geturl()
        length = _int_or_none(response.headers.get("Content-Length"))
        if part.size and response.status == 206:
            start, total = _content_range_start(response.headers.get("Content-Range"))
            if start != part.size:
                part.reset()
                raise _TransientError(f"{url} sent an unexpected range; restarting")
        elif part.size:
            log.info("%s ignored the range request; restarting from byte 0", url)
            part.reset()
            total = None
        else:
            total = None
        if total is None and length is not None:
            total = part.size + length
        part.total = total
        with open(part.path, "ab") as handle:
            try:
                while block := response.read(chunk_size):
                    handle.write(block)
                    part.digest.update(block)
                    part.size += len(block)
            except http.client.IncompleteRead as error:
                handle.write(error.partial)
                part.digest.update(error.partial)
                part.size += len(error.partial)
                raise _TransientError(f"connection closed early by {url}") from None
            except (OSError, http.client.HTTPException) as error:
                raise _TransientError(f"{type(error).__name__}: {error} ({url})") from None
    if total is not None and part.size < total:
        raise _TransientError(f"body shorter than announced ({part.size} of {total} bytes)")
    if total is not None and part.size > total:
        part.reset()
        raise _TransientError(f"body longer than announced ({total} bytes); restarting")


def _fetch_http(
    url: str,
    out: Path,
    source: str,
    md5: str | None,
    *,
    retries: int,
    timeout: float,
    backoff: float,
    chunk_size: int,
) -> dict:
    tmp = temporary_sibling(out)
    part = _Partial(tmp)
    resumed = 0
    if tmp.exists() and md5 is not None:
        part.adopt_existing(chunk_size)
        resumed = part.size
        log.info("resuming %s from byte %d", tmp, part.size)
    else:
        part.reset()
    what = f"download of {source} to {out}"
    fix = "check the source in the sheet, or the network, and re-run"

    def transfer() -> str:
        _with_retries(
            lambda: _download_attempt(
                url, part, timeout=timeout, chunk_size=chunk_size, what=what, fix=fix
            ),
            retries=retries,
            backoff=backoff,
            what=what,
            fix=fix,
        )
        return part.digest.hexdigest()

    try:
        observed = transfer()
        if md5 is not None and observed != md5 and resumed:
            # the leftover partial file was damaged: never use it, fetch everything once more
            log.warning(
                "%s: md5 %s after resuming from byte %d; downloading again from byte 0",
                out,
                observed,
                resumed,
            )
            part.reset()
            observed = transfer()
        if md5 is not None and observed != md5:
            raise _mismatch(out, source, md5, observed)
        if md5 is None and part.total is None:
            log.warning(
                "%s: no md5 known and the server sent no Content-Length, so a truncated "
                "transfer cannot be detected; add the md5 to the sheet",
                out,
            )
        _commit(tmp, out)
    except Exception:
        # Not BaseException: after Ctrl-C the partial file stays, to be resumed when md5 is known.
        tmp.unlink(missing_ok=True)
        raise
    return {
        "url": part.final_url or url,
        "size": part.size,
        "md5": observed,
        "action": "downloaded",
    }


def _commit(tmp: Path, out: Path) -> None:
    """fsync the finished temporary file and rename it over ``out`` (atomic on one filesystem)."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, out)
    with contextlib.suppress(OSError):
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------- local


def _local_path(source: str) -> Path:
    if URL_RE.match(source):
        parsed = urllib.parse.urlparse(source)
        if parsed.netloc not in ("", "localhost"):
            raise DownloadError(
                f"{source} names host {parsed.netloc!r}; file:// URLs must be local "
                "(file:///absolute/path)."
            )
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(source).expanduser()


def _fetch_local(
    source: str, out: Path, md5: str | None, *, chunk_size: int, link_min_bytes: int | None
) -> dict:
    path = _local_path(source)
    if not path.is_file():
        raise DownloadError(
            f"source {source} for {out} does not exist or is not a file; "
            "fix the path in the sheet or put the file there."
        )
    if path.resolve() == out.resolve():
        raise DownloadError(f"source {source} is the output {out} itself; point --out elsewhere.")
    size = path.stat().st_size
    tmp = temporary_sibling(out)
    tmp.unlink(missing_ok=True)
    try:
        if link_min_bytes is not None and size >= link_min_bytes:
            observed = md5_file(path, chunk_size)
            if md5 is not None and observed != md5:
                raise _mismatch(out, source, md5, observed)
            os.symlink(path.resolve(), tmp)
            os.replace(tmp, out)
            action = "linked"
        else:
            digest = hashlib.md5()
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                while block := src.read(chunk_size):
                    dst.write(block)
                    digest.update(block)
            observed = digest.hexdigest()
            if md5 is not None and observed != md5:
                raise _mismatch(out, source, md5, observed)
            shutil.copystat(path, tmp)
            _commit(tmp, out)
            action = "copied"
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"url": path.resolve().as_uri(), "size": size, "md5": observed, "action": action}


# --------------------------------------------------------------------------------------- fetch


def fetch(
    source: str,
    out: str | os.PathLike[str],
    md5: str | None = None,
    retries: int = 5,
    timeout: float = 60,
    backoff: float = 1.0,
    sources_log: str | os.PathLike[str] | None = None,
    expected_assembly: str | None = None,
    *,
    portals: Portals | None = None,
    chunk_size: int = CHUNK_BYTES,
    link_min_bytes: int | None = LINK_MIN_BYTES,
) -> dict:
    """Fetch ``source`` (accession, URL or path) to ``out``, md5-checked, atomically.

    Returns a record with ``source``, ``url`` (final URL after redirects), ``out``, ``size``,
    ``md5``, ``date_utc`` and ``action`` (downloaded, copied, linked or present), and appends it
    to ``sources_log`` unless ``out`` was already present with the right md5.
    """
    source = str(source).strip()
    if not source:
        raise DownloadError(f"the source for {out} is empty; fill it in the sheet.")
    if retries < 0:
        raise DownloadError(f"retries is {retries}; use 0 or more.")
    out = Path(out)
    md5 = normalize_md5(md5, f"the md5 given for {out}")
    kind = classify_source(source)

    if md5 is not None and _present(out, md5, chunk_size):
        return _present_record(source, out, md5)

    url = source
    if kind in ("encode", "4dn"):
        resolved = resolve_accession(
            source,
            expected_assembly,
            portals=portals,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )
        if md5 is not None and resolved.md5 is not None and md5 != resolved.md5:
            raise DownloadError(
                f"{out}: the sheet's md5 {md5} for {source} differs from the portal's "
                f"{resolved.md5}; fix the md5 in the sheet (or re-run hicmix resolve-sources)."
            )
        if md5 is None and resolved.md5 is not None:
            md5 = resolved.md5
            if _present(out, md5, chunk_size):
                return _present_record(source, out, md5)
        url = resolved.url

    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "path" or url.lower().startswith("file://"):
        result = _fetch_local(url, out, md5, chunk_size=chunk_size, link_min_bytes=link_min_bytes)
    else:
        result = _fetch_http(
            url,
            out,
            source,
            md5,
            retries=retries,
            timeout=timeout,
            backoff=backoff,
            chunk_size=chunk_size,
        )
    record = {"source": source, "out": str(out), "date_utc": _utc_now(), **result}
    if sources_log is not None:
        append_sources_log(sources_log, record)
    log.info(
        "%s %s -> %s (%d bytes, md5 %s)",
        record["action"],
        source,
        out,
        record["size"],
        record["md5"],
    )
    return record


def _present(out: Path, md5: str, chunk_size: int) -> bool:
    return out.is_file() and md5_file(out, chunk_size) == md5


def _present_record(source: str, out: Path, md5: str) -> dict:
    log.info("%s is already present with md5 %s; nothing to do", out, md5)
    return {
        "source": source,
        "url": "",
        "out": str(out),
        "size": out.stat().st_size,
        "md5": md5,
        "date_utc": _utc_now(),
        "action": "present",
    }


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------ sources log


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on a sibling ``.lock`` file: parallel jobs share one log per cell line."""
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def append_sources_log(path: str | os.PathLike[str], record: dict) -> None:
    """Append a record to the sources TSV (header on creation): locked, rewritten atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = "\t".join(str(record.get(column, "")) for column in SOURCES_LOG_COLUMNS) + "\n"
    with _locked(path):
        existing = path.read_text() if path.exists() else ""
        if not existing:
            existing = "\t".join(SOURCES_LOG_COLUMNS) + "\n"
        elif not existing.endswith("\n"):
            existing += "\n"
        with atomic_path(path) as tmp:
            tmp.write_text(existing + row)


# --------------------------------------------------------------------------------------- sheets


def _source_columns(columns: list[str]) -> list[tuple[str, str]]:
    """(source column, prefix) pairs: ``source`` -> "", ``hic_source`` -> "hic_"."""
    pairs = []
    for column in columns:
        if column == "source":
            pairs.append((column, ""))
        elif column.endswith("_source"):
            pairs.append((column, column[: -len("source")]))
    return pairs


def resolve_sheet(
    sheet_in: str | os.PathLike[str],
    sheet_out: str | os.PathLike[str],
    expected_assembly: str | None = None,
    *,
    portals: Portals | None = None,
    timeout: float = 60,
    retries: int = 5,
    backoff: float = 1.0,
) -> int:
    """Fill ``url``/``md5``/``size`` (``hic_url``/``hic_md5``/``hic_size``, ...) for accessions.

    Every ``source`` or ``*_source`` column is handled; a row's ``assembly`` column, when present,
    overrides ``expected_assembly``. Other rows are left as they are. Returns the number of
    accessions resolved.
    """
    sheet_in, sheet_out = Path(sheet_in), Path(sheet_out)
    try:
        with open(sheet_in, newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            columns = list(reader.fieldnames or [])
            rows = [dict(row) for row in reader]
    except OSError as error:
        raise DownloadError(
            f"cannot read sheet {sheet_in} ({error.strerror}); check the path."
        ) from None
    pairs = _source_columns(columns)
    if not pairs:
        raise DownloadError(
            f"sheet {sheet_in} has no 'source' or '*_source' column; is it a hicmix sheet?"
        )
    for _, prefix in pairs:
        for suffix in ("url", "md5", "size"):
            if f"{prefix}{suffix}" not in columns:
                columns.append(f"{prefix}{suffix}")
    cache: dict[tuple[str, str | None], ResolvedSource] = {}
    resolved_count = 0
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        assembly = (row.get("assembly") or "").strip() or expected_assembly
        for column, prefix in pairs:
            value = (row.get(column) or "").strip()
            if not is_accession(value):
                continue
            key = (value, portal_assembly(assembly))
            if key not in cache:
                cache[key] = resolve_accession(
                    value,
                    assembly,
                    portals=portals,
                    timeout=timeout,
                    retries=retries,
                    backoff=backoff,
                )
            _fill_row(row, prefix, cache[key], f"{sheet_in} line {number} column {prefix}md5")
            resolved_count += 1
    with atomic_path(sheet_out) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column) or "" for column in columns})
    return resolved_count


def _fill_row(row: dict, prefix: str, resolved: ResolvedSource, where: str) -> None:
    given = normalize_md5(row.get(f"{prefix}md5"), where)
    if given is not None and resolved.md5 is not None and given != resolved.md5:
        raise DownloadError(
            f"{where} is {given} but the portal's md5 of {resolved.accession} is {resolved.md5}; "
            "clear the md5 to take the portal's, or fix the accession."
        )
    row[f"{prefix}url"] = resolved.url
    row[f"{prefix}md5"] = resolved.md5 or given or ""
    row[f"{prefix}size"] = "" if resolved.size is None else str(resolved.size)


__all__ = [
    "DEFAULT_4DN_MIRROR",
    "DEFAULT_4DN_URL",
    "DEFAULT_ENCODE_URL",
    "ENCODE_FILE_RE",
    "FOURDN_FILE_RE",
    "SOURCES_LOG_COLUMNS",
    "Portals",
    "ResolvedSource",
    "append_sources_log",
    "classify_source",
    "fetch",
    "is_accession",
    "md5_file",
    "normalize_md5",
    "portal_assembly",
    "resolve_4dn",
    "resolve_accession",
    "resolve_encode",
    "resolve_sheet",
]
