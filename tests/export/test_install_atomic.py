"""Installing into a repository is all or nothing (uses the real exported network from the session fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import catalog
from model_repository import configs, install, layout
from tests.support.snapshots import snapshot

ENTRY = catalog.get("NextViT_small_224")


@pytest.fixture
def onnx_and_record(exported_repository: Path) -> tuple[Path, dict]:
    network = exported_repository / configs.network_name(ENTRY)
    return network / "1" / "model.onnx", json.loads((network / install.EXPORT_RECORD).read_text())


def test_install_writes_the_network_and_the_steps_data_and_they_render(
    tmp_path: Path, onnx_and_record: tuple[Path, dict]
) -> None:
    repository = tmp_path / "repo"
    install.install(ENTRY, *onnx_and_record, repository, "production")
    expected = [configs.network_name(ENTRY), *configs.shared_steps(ENTRY)]
    assert sorted(p.name for p in repository.iterdir()) == sorted(expected)
    labels = (repository / configs.postprocess_name() / "1" / install.LABELS_FILE).read_text().splitlines()
    assert len(labels) == 1000
    assert install.installed_models(repository) == [ENTRY.triton_name]
    serving = tmp_path / "serving"
    layout.render(repository, serving, None, configs.Layout(), 1)
    for name in install.model_dirs(ENTRY):
        assert configs.parse_pbtxt((serving / name / "config.pbtxt").read_text()).name == name
    assert (serving / configs.preprocess_name(ENTRY) / "1" / "preprocess" / "image.py").is_file()
    assert not (serving / configs.network_name(ENTRY) / "1" / "model.py").exists()  # production: onnxruntime


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
        if calls["n"] == 2:  # mid-way: the installed network moved aside, the new one fails to move in
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


def test_python_sources_are_copied_into_the_serving_copy_not_linked(
    tmp_path: Path, onnx_and_record: tuple[Path, dict]
) -> None:
    """Editing the source tree later must not change a running server's steps."""
    repository = tmp_path / "repo"
    install.install(ENTRY, *onnx_and_record, repository, "portable")
    layout.render(repository, tmp_path / "serving", None, configs.Layout(), 1)
    model_py = tmp_path / "serving" / configs.preprocess_name(ENTRY) / "1" / "model.py"
    assert not model_py.is_symlink() and model_py.stat().st_nlink == 1
    assert model_py.read_bytes() == (layout.PYTHON_MODELS / "preprocess.py").read_bytes()
