"""Bad input to `python -m export`: one clear `error:` line each, and the repository exactly as it was.

Every case runs the real command line against a repository that already serves a model (a copy of
the session's exported repository), and compares the whole tree, file contents included, before and
after. The failures stop early (before any conversion), so these tests are quick.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import paddle
import pytest

import catalog
from export import network
from export.__main__ import describe, main
from export.errors import storage_error
from tests.support.download_server import DownloadHost
from tests.support.snapshots import snapshot


@pytest.fixture
def repository(exported_repository: Path, tmp_path: Path) -> Path:
    """A private copy of the session's repository (hard links: big files cost nothing)."""
    copy = tmp_path / "work" / "model_repository"
    shutil.copytree(exported_repository, copy, copy_function=_link)
    return copy


def _link(source: str, target: str) -> None:
    Path(target).hardlink_to(source)


def run(args: list[str], repository: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Run the CLI; returns the exit code and the `error` lines of stderr (progress bars filtered out)."""
    before = snapshot(repository)
    code = main([*args, "--repository", str(repository)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert snapshot(repository) == before
    leftovers = [p.name for p in repository.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], "temporary directories left beside the repository"
    return code, [line for line in err.splitlines() if line.startswith("error")]


def test_unknown_name_suggests_the_closest(repository: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, errors = run(["ViT_base_patch16_348", "--download", "inference"], repository, capsys)
    assert code == 2
    assert len(errors) == 1 and "did you mean ViT_base_patch16_384" in errors[0]


def test_weights_of_another_architecture_name_the_first_tensor_and_both_shapes(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "ViT_small_patch16_224_pretrained.pdparams"
    paddle.save(network.build_backbone(catalog.get("ViT_small_patch16_224")).state_dict(), str(weights))
    code, errors = run(["ViT_base_patch16_384", "--weights", str(weights)], repository, capsys)
    assert code == 1 and len(errors) == 1
    assert "WeightsMismatchError" in errors[0]
    assert "'pos_embed' has shape [1, 197, 768], the architecture needs [1, 577, 768]" in errors[0]
    assert errors[0].endswith("was left as it was.")


def test_weights_file_that_is_no_weights_file(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "broken.pdparams"
    weights.write_bytes(b"\x80\x04 this pickle stops here")
    code, errors = run(["NextViT_small_224", "--weights", str(weights)], repository, capsys)
    assert code == 1 and len(errors) == 1
    assert "broken.pdparams is not a readable PaddlePaddle weights file" in errors[0]


def test_directory_without_a_model(repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    (empty / "some_folder").mkdir(parents=True)
    code, errors = run(["NextViT_small_224", "--inference-dir", str(empty)], repository, capsys)
    assert code == 1 and len(errors) == 1
    assert "holds no PaddleClas inference model: expected inference.json or inference.pdmodel" in errors[0]


def test_corrupt_archive_given_as_inference_model(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "NextViT_small_224_infer.tar"
    archive.write_bytes(b"PK\x03\x04 a zip file, or half of a tar" * 50)
    code, errors = run(["NextViT_small_224", "--inference-dir", str(archive)], repository, capsys)
    assert code == 1 and len(errors) == 1
    assert "is not a readable tar archive" in errors[0]


def test_corrupt_download(repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = catalog.get("NextViT_small_224")
    cache = tmp_path / "downloads"
    with DownloadHost() as host:
        host.serve_for(entry, "inference", b"\x1f\x8b not what it claims to be" * 1000)
        args = [entry.name, "--download", "inference", "--mirror", host.mirror, "--cache", str(cache)]
        code, errors = run(args, repository, capsys)
    assert code == 1 and len(errors) == 1
    assert "NextViT_small_224_infer.tar is not a readable tar archive" in errors[0]
    assert list(cache.iterdir()) == []  # nothing half-checked stays in the cache


def test_truncated_download(repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = catalog.get("ViT_base_patch16_384")
    cache = tmp_path / "downloads"
    with DownloadHost() as host:
        url = host.serve_for(entry, "weights", b"\x80\x04" + bytes(3_000_000))
        host.behaviour.cut_once[url.removeprefix(host.mirror)] = 2_000_000
        args = [entry.name, "--download", "weights", "--mirror", host.mirror, "--cache", str(cache)]
        code, errors = run(args, repository, capsys)
    assert code == 1 and len(errors) == 1
    assert "transfer stopped after 2000000 of 3000002 bytes" in errors[0]
    assert "run the same command again to resume" in errors[0]


def test_downloaded_weights_of_another_architecture(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The official-weights path end to end up to the check: fetched, recorded, refused with names and shapes."""
    entry = catalog.get("ViT_base_patch16_384")
    weights = tmp_path / "small.pdparams"
    paddle.save(network.build_backbone(catalog.get("ViT_small_patch16_224")).state_dict(), str(weights))
    cache = tmp_path / "downloads"
    with DownloadHost() as host:
        host.serve_for(entry, "weights", weights.read_bytes())
        args = [entry.name, "--download", "weights", "--mirror", host.mirror, "--cache", str(cache)]
        code, errors = run(args, repository, capsys)
    assert code == 1 and len(errors) == 1
    assert "ViT_base_patch16_384_pretrained.pdparams: tensor 'pos_embed' has shape [1, 197, 768]" in errors[0]
    assert (cache / "ViT_base_patch16_384_pretrained.pdparams").stat().st_size == weights.stat().st_size


def test_disk_full_message_is_one_actionable_line() -> None:
    err = OSError(errno.ENOSPC, "No space left on device", "/models/vit/1/model.onnx")
    err.add_note("converter log: build/export-logs/X.log")
    assert describe(storage_error(err)) == (
        "disk full while writing /models/vit/1/model.onnx: free some space and run again; "
        "converter log: build/export-logs/X.log"
    )
