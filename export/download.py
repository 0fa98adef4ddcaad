"""Official PaddleClas files (inference tarballs, pretrained .pdparams) fetched into a local cache.

The files are large (ViT_large weights: 1.2 GB) and the hosts far away, so a download shows a
progress bar, resumes an interrupted transfer with an HTTP Range request, and is checked before
it enters the cache: the byte count the server announced, the file's type (a tar archive with an
inference model, or a pickled weights file; an HTML error page saved under the right name is the
usual wrong file), and, when the caller knows it, the SHA-256. Each cached file's size and SHA-256
are recorded in `downloads.json` and checked again whenever the file is reused.

Layout of the cache: `<file>` when complete, `<file>.part` while incomplete, `downloads.json`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Literal

from catalog import ModelEntry
from catalog.models import OFFICIAL_HOST
from export.errors import DownloadError

DownloadKind = Literal["inference", "weights"]
DOWNLOAD_KINDS: tuple[DownloadKind, ...] = ("inference", "weights")
MANIFEST = "downloads.json"
CHUNK = 1 << 20
TIMEOUT_S = 60
# First bytes of a file written by paddle.save: a pickle, protocol 2 to 5.
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass(frozen=True)
class Downloaded:
    path: Path
    url: str
    bytes: int
    sha256: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"path": str(self.path)}


def official_url(entry: ModelEntry, kind: DownloadKind, mirror: str | None = None) -> str:
    """The catalog's URL for `kind`, or the same path on `mirror` (e.g. an internal file server)."""
    url = entry.inference_url if kind == "inference" else entry.weights_url
    if mirror:
        url = mirror.rstrip("/") + url.removeprefix(OFFICIAL_HOST)
    return url


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(cache: Path) -> dict[str, dict]:
    path = cache / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise DownloadError(f"{path} is not valid JSON ({err}): delete it to start the cache afresh") from err


def _write_manifest(cache: Path, manifest: dict[str, dict]) -> None:
    temporary = cache / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", "utf-8")
    os.replace(temporary, cache / MANIFEST)


def check_archive(path: Path, label: str | None = None) -> None:
    """A tar archive holding one PaddleClas inference model, with no member escaping its folder."""
    label = label or path.name
    try:
        with tarfile.open(path) as archive:
            members = archive.getmembers()
    except (tarfile.TarError, EOFError, OSError) as err:
        detail = (str(err).splitlines() or [type(err).__name__])[0].rstrip(":")
        raise DownloadError(f"{label} is not a readable tar archive ({detail})") from err
    names = {PurePosixPath(m.name).name for m in members if m.isfile()}
    for member in members:
        parts = PurePosixPath(member.name).parts
        if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            raise DownloadError(f"{label}: unsafe archive member {member.name!r}")
    if "inference.pdiparams" not in names or not names & {"inference.pdmodel", "inference.json"}:
        raise DownloadError(
            f"{label} holds no PaddleClas inference model (found {', '.join(sorted(names)) or 'nothing'})"
        )


def check_weights(path: Path, label: str | None = None) -> None:
    """The cheap test that catches the usual wrong file (an HTML page): paddle.save writes a pickle."""
    with path.open("rb") as f:
        head = f.read(16)
    if not head.startswith(PICKLE_MAGIC):
        raise DownloadError(f"{label or path.name} is not a PaddlePaddle weights file (it starts with {head!r})")


def check_content(path: Path, name: str) -> None:
    """Type check by the file name the catalog gives it (.tar or .pdparams); errors name that file."""
    if name.endswith(".tar"):
        check_archive(path, name)
    elif name.endswith(".pdparams"):
        check_weights(path, name)


def _total_size(response: object, start: int) -> int | None:
    """Full size of the file from Content-Range (a resumed transfer) or Content-Length."""
    content_range = response.headers.get("Content-Range")
    if content_range:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range.strip())
        if not match or int(match.group(1)) != start:
            raise DownloadError(f"the server answered range {content_range!r} to a request from byte {start}")
        return int(match.group(3)) if match.group(3) != "*" else None
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def _open(url: str, start: int) -> tuple[object, int]:
    """Open `url` from byte `start`; returns the response and the byte it really starts at."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # the partial file is not a prefix of this file: start again
            return _open(url, 0)
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"cannot reach {url} ({reason}); use --mirror URL for a reachable copy") from err
    return response, start if response.status == 206 else 0


def _transfer(url: str, part: Path, show_progress: bool) -> None:
    """Append the rest of `url` to `part`, resuming where it ends; raise if the transfer stops short."""
    from tqdm import tqdm

    start = part.stat().st_size if part.exists() else 0
    response, start = _open(url, start)
    with response:
        total = _total_size(response, start)
        with (
            part.open("ab" if start else "wb") as sink,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not show_progress,
                mininterval=1.0,
            ) as bar,
        ):
            received = start
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:  # reset, timeout, IncompleteRead
                    raise DownloadError(
                        f"{url}: transfer stopped after {received} of {total or '?'} bytes ({err!r}); "
                        "run the same command again to resume"
                    ) from err
                if not block:
                    break
                sink.write(block)  # a local error (disk full) propagates as the OSError it is
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:
        raise DownloadError(
            f"{url}: transfer stopped after {received} of {total} bytes (the server closed the connection); "
            "run the same command again to resume"
        )


def fetch(url: str, cache: Path, expected_sha256: str | None = None, show_progress: bool = True) -> Downloaded:
    """The file at `url` in `cache`, downloaded or resumed if needed, checked either way."""
    cache.mkdir(parents=True, exist_ok=True)
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name
    target, part = cache / name, cache / f"{name}.part"
    manifest = _read_manifest(cache)
    known = manifest.get(name)
    if target.is_file() and known and known.get("url") == url:
        digest = file_sha256(target)
        if digest != known["sha256"] or target.stat().st_size != known["bytes"]:
            raise DownloadError(
                f"cached {target} changed since it was downloaded (sha256 {digest}, recorded "
                f"{known['sha256']}): delete it to download it again"
            )
        _check_expected(name, digest, expected_sha256)
        return Downloaded(target, url, known["bytes"], digest)
    _transfer(url, part, show_progress)
    digest = file_sha256(part)
    try:
        _check_expected(name, digest, expected_sha256)
        check_content(part, name)
    except DownloadError:
        part.unlink(missing_ok=True)  # complete but wrong: resuming it would only repeat the error
        raise
    os.replace(part, target)
    size = target.stat().st_size
    manifest[name] = {
        "url": url,
        "bytes": size,
        "sha256": digest,
        "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_manifest(cache, manifest)
    return Downloaded(target, url, size, digest)


def _check_expected(name: str, digest: str, expected: str | None) -> None:
    if expected and digest != expected.lower():
        raise DownloadError(f"{name}: sha256 {digest}, expected {expected.lower()}")


def fetch_official(
    entry: ModelEntry, kind: DownloadKind, cache: Path, mirror: str | None = None, expected_sha256: str | None = None
) -> Downloaded:
    return fetch(official_url(entry, kind, mirror), cache, expected_sha256)


def unpack_inference(archive: Path, destination: Path) -> Path:
    """Extract an inference tarball into `destination` (refusing unsafe members); returns it."""
    check_archive(archive)
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    return destination
