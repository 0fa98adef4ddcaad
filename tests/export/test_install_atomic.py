"""Installing into a repository is all or nothing (uses the real exported network from the session fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import catalog
from model_repository import configs, install
from tests.support.snapshots import snapshot

ENTRY = catalog.get("NextViT_small_224")


@pytest.fixture
def onnx_and_record(exported_repository: Path) -> tuple[Path, dict]:
    network = exported_repository / configs.network_name(ENTRY)
    return network / "1" / "model.onnx", json.loads((network / install.EXPORT_RECORD).read_text())


def test_install_writes_every_model_it_needs_and_they_parse(tmp_path: Path, onnx_and_record: tuple[Path, dict]) -> None:
    repository = tmp_path / "repo"
    install.install(ENTRY, *onnx_and_record, repository, "production")
    assert sorted(p.name for p in repository.iterdir()) == sorted(install.model_dirs(ENTRY))
    for name in install.model_dirs(ENTRY):
        assert configs.parse_pbtxt((repository / name / "config.pbtxt").read_text()).name == name
    labels = (repository / configs.postprocess_name() / "1" / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000
    assert (repository / configs.preprocess_name(ENTRY) / "1" / "preprocess" / "image.py").is_file()
    assert not (repository / configs.network_name(ENTRY) / "1" / "model.py").exists()  # production: onnxruntime
    assert install.installed_models(repository) == [ENTRY.triton_name]


def test_failure_while_swapping_leaves_repository_as_it_was(
    tmp_path: Path, onnx_and_record: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = tmp_path / "repo"
    install.install(ENTRY, *onnx_and_record, repository, "portable")
    before = snapshot(repository)
    real_rename = Path.rename
    calls = {"n": 0}

    def failing_rename(self: Path, target: Path) -> Path:
        calls["n"] += 1
        if calls["n"] == 5:  # mid-way: two of the six directories already swapped in
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="No space left"):
        install.install(ENTRY, *onnx_and_record, repository, "production")
    monkeypatch.undo()
    assert snapshot(repository) == before
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no staging directory left behind


def test_failure_while_staging_leaves_repository_as_it_was(tmp_path: Path, onnx_and_record: tuple[Path, dict]) -> None:
    repository = tmp_path / "repo"
    install.install(ENTRY, *onnx_and_record, repository, "portable")
    before = snapshot(repository)
    with pytest.raises(FileNotFoundError):
        install.install(ENTRY, tmp_path / "missing.onnx", onnx_and_record[1], repository, "portable")
    assert snapshot(repository) == before


def test_python_sources_are_copied_not_linked(tmp_path: Path, onnx_and_record: tuple[Path, dict]) -> None:
    """Editing the source tree later must not change a repository that is already installed."""
    repository = tmp_path / "repo"
    install.install(ENTRY, *onnx_and_record, repository, "portable")
    model_py = repository / configs.preprocess_name(ENTRY) / "1" / "model.py"
    assert model_py.stat().st_nlink == 1
    assert model_py.read_bytes() == (install.PYTHON_MODELS / "preprocess.py").read_bytes()
