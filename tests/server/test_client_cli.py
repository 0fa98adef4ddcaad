"""`python -m client classify` against the real server: tables, JSON, exit codes, bad-file isolation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from client.__main__ import main
from model_repository.server import free_port


def test_folder_with_a_bad_file_classifies_the_rest(
    triton_server, sample_photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for photo in sample_photos[:3]:
        shutil.copy(photo, tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code = main(["classify", str(tmp_path), "--model", "nextvit_small_224", "--url", triton_server.grpc_url, "--json"])
    captured = capsys.readouterr()
    rows = {Path(r["path"]).name: r for r in json.loads(captured.out)}
    assert code == 1
    assert "error" in rows["broken.jpg"]
    assert all(len(rows[p.name]["class_ids"]) == 5 for p in sample_photos[:3])
    assert "RANDOM WEIGHTS" in captured.err and "1 of 4 images failed" in captured.err


def test_http_table_output(triton_server, sample_photos: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "classify",
            str(sample_photos[0]),
            "--model",
            "vit_base_patch16_224",
            "--protocol",
            "http",
            "--url",
            triton_server.http_url,
            "--top-k",
            "3",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split(".")[0].strip() for line in lines[1:]] == ["1", "2", "3"]


def test_unknown_model_and_absent_server_exit_2(
    triton_server, sample_photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    photo = str(sample_photos[0])
    assert main(["classify", photo, "--model", "resnet50", "--url", triton_server.grpc_url]) == 2
    assert "not ready" in capsys.readouterr().err
    assert main(["classify", photo, "--model", "nextvit_small_224", "--url", f"127.0.0.1:{free_port()}"]) == 2
    assert "no Triton server answers" in capsys.readouterr().err
