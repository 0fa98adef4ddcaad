"""Export from inference models as users get them: an official-style legacy tarball, downloaded, and a
Paddle 3 .json directory; plus a disk that fills up while the repository is being written.

The tarball is made here the way PaddleClas's exporter made the official ones (old-IR
inference.pdmodel in a <Name>_infer/ folder, input tensor named `inputs`, not the `x` our own export
uses), served by a local HTTP server under the official path, and fetched with --download.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import catalog
from export import network
from export.__main__ import main
from model_repository import configs, install
from tests.support.download_server import DownloadHost
from tests.support.snapshots import snapshot

ENTRY = catalog.get("NextViT_small_224")
SEED = 3  # not the session's seed: this network must not coincide with the one already served


@dataclass(frozen=True)
class Made:
    tarball: Path
    json_dir: Path


@dataclass(frozen=True)
class Downloaded:
    repository: Path
    cache: Path
    url: str
    ranges: list[str | None]
    code: int


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """The same seeded network saved both ways: legacy .pdmodel (as a tarball) and Paddle 3 .json."""
    root = tmp_path_factory.mktemp("made")
    classifier = network.build(ENTRY, seed=SEED)
    legacy = root / f"{ENTRY.name}_infer"
    legacy.mkdir()
    assert network.save_inference_model(classifier, ENTRY, legacy, "pdmodel", input_name="inputs").suffix == ".pdmodel"
    tarball = root / f"{ENTRY.name}_infer.tar"
    with tarfile.open(tarball, "w") as archive:
        archive.add(legacy, arcname=legacy.name)
    json_dir = root / "json"
    json_dir.mkdir()
    assert network.save_inference_model(classifier, ENTRY, json_dir, "json").suffix == ".json"
    return Made(tarball, json_dir)


@pytest.fixture(scope="module")
def downloaded(made: Made, tmp_path_factory: pytest.TempPathFactory) -> Downloaded:
    root = tmp_path_factory.mktemp("downloaded")
    repository, cache = root / "model_repository", root / "downloads"
    with DownloadHost() as host:
        url = host.serve_for(ENTRY, "inference", made.tarball.read_bytes())
        args = ["--download", "inference", "--mirror", host.mirror, "--cache", str(cache)]
        code = main([ENTRY.name, *args, "--repository", str(repository)])
        return Downloaded(repository, cache, url, host.ranges(url), code)


def record_of(repository: Path) -> dict:
    return json.loads((repository / configs.network_name(ENTRY) / install.EXPORT_RECORD).read_text())


def test_official_style_tarball_downloads_and_exports(made: Made, downloaded: Downloaded) -> None:
    assert downloaded.code == 0
    assert downloaded.ranges == [None]
    record = record_of(downloaded.repository)
    source = record["source"]
    assert source["kind"] == "inference" and source["url"] == downloaded.url
    assert source["sha256"] == hashlib.sha256(made.tarball.read_bytes()).hexdigest()
    manifest = json.loads((downloaded.cache / "downloads.json").read_text())
    assert manifest[made.tarball.name]["sha256"] == source["sha256"]
    assert record["weights_note"].startswith("inference model ")


def test_legacy_program_names_are_read_from_the_model(downloaded: Downloaded) -> None:
    record = record_of(downloaded.repository)
    assert record["onnx"]["original_tensor_names"][0] == "inputs"  # not our exporter's `x`
    parity = record["parity"]
    assert parity["passed"] and 0 < parity["max_abs_diff"] <= ENTRY.parity_atol
    assert record["merge_bn"] is None  # an inference model is converted as given
    measured = record["measured"]
    assert measured["basis"] == "catalog architecture"
    assert round(measured["flops_paddleclas"] / 1e9, 2) == ENTRY.published.flops_g


def test_disk_full_while_installing_leaves_the_repository_as_it_was(
    made: Made,
    downloaded: Downloaded,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Paddle 3 .json directory goes through conversion and parity; the disk fills while installing it.

    The error can only come from the last step, so reaching it also shows the .json path converts.
    """
    repository = tmp_path / "model_repository"
    shutil.copytree(downloaded.repository, repository)
    before = snapshot(repository)

    def half_written_then_full(source: Path, target: Path) -> None:
        with source.open("rb") as reader, target.open("wb") as writer:
            writer.write(reader.read(source.stat().st_size // 2))
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(install, "_link_or_copy", half_written_then_full)
    code = main([ENTRY.name, "--inference-dir", str(made.json_dir), "--repository", str(repository)])
    out, err = capsys.readouterr()
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith(f"error: {ENTRY.name}: disk full while writing ")
    assert errors[0].endswith(f"{repository} was left as it was.")
    assert "6/7" in out and "max |p_onnx - p_paddle|" not in out  # parity ran; the install step failed
    assert snapshot(repository) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export-logs", "model_repository"]
