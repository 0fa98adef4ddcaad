"""The downloader against a local HTTP server: progress, resume, records, and every way a file goes wrong.

No test touches the internet: tests/support/download_server.py serves archives and weights files the tests
build, under the official URL paths (the catalog's URL with the host replaced by --mirror).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import catalog
from export import download
from tests.support.download_server import DownloadHost

ENTRY = catalog.get("NextViT_small_224")


def inference_tarball(name: str, files: dict[str, bytes]) -> bytes:
    """A tar laid out as PaddleClas's <Name>_infer.tar: one folder holding the inference files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for filename, content in files.items():
            info = tarfile.TarInfo(f"{name}_infer/{filename}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def sample_archive() -> bytes:
    """3 MB of incompressible parameters: several read chunks, so a cut lands mid-transfer."""
    params = np.random.default_rng(0).bytes(3 << 20)
    return inference_tarball(ENTRY.name, {"inference.json": b"{}", "inference.pdiparams": params})


@pytest.fixture
def host() -> Iterator[DownloadHost]:
    with DownloadHost() as server:
        yield server


def test_official_url_on_a_mirror_keeps_the_catalog_path() -> None:
    url = download.official_url(ENTRY, "inference", "http://mirror.internal/paddle/")
    assert url == "http://mirror.internal/paddle/dygraph/inference/NextViT_small_224_infer.tar"
    assert download.official_url(ENTRY, "weights") == ENTRY.weights_url


def test_download_records_size_and_sha256(host: DownloadHost, tmp_path: Path) -> None:
    content = sample_archive()
    url = host.serve_for(ENTRY, "inference", content)
    fetched = download.fetch(url, tmp_path, show_progress=False)
    assert fetched.path.read_bytes() == content
    assert (fetched.bytes, fetched.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    manifest = json.loads((tmp_path / download.MANIFEST).read_text())
    assert manifest[fetched.path.name] | {"downloaded_at": None} == {
        "url": url,
        "bytes": len(content),
        "sha256": fetched.sha256,
        "downloaded_at": None,
    }
    assert not list(tmp_path.glob("*.part"))


def test_second_fetch_reuses_the_cache_without_a_request(host: DownloadHost, tmp_path: Path) -> None:
    url = host.serve_for(ENTRY, "inference", sample_archive())
    first = download.fetch(url, tmp_path, show_progress=False)
    again = download.fetch(url, tmp_path, show_progress=False)
    assert again == first
    assert len(host.ranges(url)) == 1


def test_truncated_transfer_fails_clearly_then_resumes_with_a_range_request(host: DownloadHost, tmp_path: Path) -> None:
    content = sample_archive()
    url = host.serve_for(ENTRY, "inference", content)
    host.behaviour.cut_once[url.removeprefix(host.mirror)] = 1_500_000
    with pytest.raises(download.DownloadError, match=r"run the same command again to resume") as failure:
        download.fetch(url, tmp_path, show_progress=False)
    assert "1500000 of" in str(failure.value)
    part = tmp_path / f"{ENTRY.name}_infer.tar.part"
    assert part.stat().st_size == 1_500_000
    assert not (tmp_path / f"{ENTRY.name}_infer.tar").exists()

    fetched = download.fetch(url, tmp_path, show_progress=False)
    assert host.ranges(url) == [None, "bytes=1500000-"]  # the second request asked only for the rest
    assert fetched.sha256 == hashlib.sha256(content).hexdigest()
    assert not part.exists()


def test_server_that_ignores_range_gets_a_fresh_download(host: DownloadHost, tmp_path: Path) -> None:
    content = sample_archive()
    url = host.serve_for(ENTRY, "inference", content)
    (tmp_path / f"{ENTRY.name}_infer.tar.part").write_bytes(b"stale bytes from another file")
    host.behaviour.ignore_range = True
    fetched = download.fetch(url, tmp_path, show_progress=False)
    assert fetched.path.read_bytes() == content


def test_partial_file_longer_than_the_remote_one_starts_again(host: DownloadHost, tmp_path: Path) -> None:
    content = sample_archive()
    url = host.serve_for(ENTRY, "inference", content)
    (tmp_path / f"{ENTRY.name}_infer.tar.part").write_bytes(b"x" * (len(content) + 10))
    assert download.fetch(url, tmp_path, show_progress=False).path.read_bytes() == content  # after a 416


def test_corrupt_archive_is_refused_and_not_cached(host: DownloadHost, tmp_path: Path) -> None:
    url = host.serve_for(ENTRY, "inference", b"\x00garbage that is no tar archive" * 100)
    with pytest.raises(download.DownloadError, match="not a readable tar archive"):
        download.fetch(url, tmp_path, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_archive_without_an_inference_model_is_refused(host: DownloadHost, tmp_path: Path) -> None:
    url = host.serve_for(ENTRY, "inference", inference_tarball(ENTRY.name, {"README": b"nothing here"}))
    with pytest.raises(download.DownloadError, match="holds no PaddleClas inference model"):
        download.fetch(url, tmp_path, show_progress=False)


def test_archive_escaping_its_folder_is_refused(host: DownloadHost, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("../../inference.pdiparams")
        archive.addfile(info, io.BytesIO(b""))
    url = host.serve_for(ENTRY, "inference", buffer.getvalue())
    with pytest.raises(download.DownloadError, match="unsafe archive member"):
        download.fetch(url, tmp_path, show_progress=False)


def test_html_page_saved_as_weights_is_refused(host: DownloadHost, tmp_path: Path) -> None:
    url = host.serve_for(ENTRY, "weights", b"<html><body>Access denied</body></html>")
    with pytest.raises(download.DownloadError, match="not a PaddlePaddle weights file"):
        download.fetch(url, tmp_path, show_progress=False)
    assert not list(tmp_path.glob("*.pdparams*"))


def test_wrong_expected_sha256_is_refused(host: DownloadHost, tmp_path: Path) -> None:
    url = host.serve_for(ENTRY, "inference", sample_archive())
    with pytest.raises(download.DownloadError, match="expected 00"):
        download.fetch(url, tmp_path, expected_sha256="00" * 32, show_progress=False)
    assert not list(tmp_path.glob("*.tar*"))


def test_cached_file_changed_after_download_is_detected(host: DownloadHost, tmp_path: Path) -> None:
    url = host.serve_for(ENTRY, "inference", sample_archive())
    fetched = download.fetch(url, tmp_path, show_progress=False)
    with fetched.path.open("r+b") as f:
        f.seek(1000)
        f.write(b"bit rot")
    with pytest.raises(download.DownloadError, match="changed since it was downloaded"):
        download.fetch(url, tmp_path, show_progress=False)


def test_missing_file_and_unreachable_host(host: DownloadHost, tmp_path: Path) -> None:
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        download.fetch(host.mirror + "/dygraph/nothing.pdparams", tmp_path, show_progress=False)
    with pytest.raises(download.DownloadError, match=r"cannot reach .*--mirror"):
        download.fetch("http://127.0.0.1:9/dygraph/x.pdparams", tmp_path, show_progress=False)


def test_progress_bar_is_shown(host: DownloadHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = host.serve_for(ENTRY, "inference", sample_archive())
    download.fetch(url, tmp_path, show_progress=True)
    err = capsys.readouterr().err
    assert f"{ENTRY.name}_infer.tar" in err and "100%" in err


def test_unpacked_archive_is_found_by_the_exporter(tmp_path: Path) -> None:
    from export import network

    archive = tmp_path / "model_infer.tar"
    archive.write_bytes(sample_archive())
    program = network.find_program(download.unpack_inference(archive, tmp_path / "unpacked"))
    assert program == tmp_path / "unpacked" / f"{ENTRY.name}_infer" / "inference.json"
