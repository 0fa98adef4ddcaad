"""Shared steps in a repository: identical ones are reused, conflicting ones refused, used ones never removed.

Repository bookkeeping only: the network file is installed as given (linked), never run, so these
tests use a placeholder file instead of an export; tests/export/test_install_atomic.py installs a real one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import catalog
from model_repository import __main__ as repository_cli
from model_repository import configs, install
from tests.support.records import placeholder_record
from tests.support.snapshots import snapshot

NEXTVIT_S, NEXTVIT_B = catalog.get("NextViT_small_224"), catalog.get("NextViT_base_224")
VIT = catalog.get("ViT_base_patch16_224")


@pytest.fixture
def network_file(tmp_path: Path) -> Path:
    path = tmp_path / "placeholder.onnx"
    path.write_bytes(b"not a network: repository bookkeeping only")
    return path


def put(entry: catalog.ModelEntry, repository: Path, network_file: Path, variant: configs.Variant = "portable") -> None:
    install.install(entry, network_file, placeholder_record(entry), repository, variant)


def test_models_of_one_preprocessing_share_their_steps(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    put(NEXTVIT_S, repository, network_file)
    steps_before = snapshot(repository / configs.preprocess_name(NEXTVIT_S))
    put(NEXTVIT_B, repository, network_file)
    put(VIT, repository, network_file)
    names = sorted(p.name for p in repository.iterdir())
    expected = {*configs.own_models(NEXTVIT_S), *configs.own_models(NEXTVIT_B), *configs.own_models(VIT)}
    expected |= {*configs.shared_steps(NEXTVIT_S), *configs.shared_steps(VIT)}
    assert names == sorted(expected)
    assert len([n for n in names if configs.step_kind(n) not in ("ensemble", "network")]) == 5  # 2 keys x 2 + top-k
    assert snapshot(repository / configs.preprocess_name(NEXTVIT_S)) == steps_before
    assert install.installed_models(repository) == sorted(e.triton_name for e in (NEXTVIT_S, NEXTVIT_B, VIT))


def test_reinstalling_an_identical_step_is_a_no_op(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    put(NEXTVIT_S, repository, network_file)
    shared = configs.preprocess_name(NEXTVIT_S)
    inode = (repository / shared / "config.pbtxt").stat().st_ino
    put(NEXTVIT_S, repository, network_file)
    assert (repository / shared / "config.pbtxt").stat().st_ino == inode  # not rewritten, not swapped


def test_a_conflicting_shared_step_is_refused_and_nothing_changes(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    put(NEXTVIT_S, repository, network_file)
    config = repository / configs.postprocess_name() / "config.pbtxt"
    config.write_text(config.read_text().replace("count: 1", "count: 3"))  # someone else's definition
    before = snapshot(repository)
    with pytest.raises(install.SharedStepConflictError, match=r"postprocess.*nextvit_small_224.*config\.pbtxt"):
        put(VIT, repository, network_file)
    assert snapshot(repository) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_bytecode_a_served_step_wrote_is_not_a_conflict(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    put(NEXTVIT_S, repository, network_file)
    cache = repository / configs.postprocess_name() / "1" / "__pycache__"
    cache.mkdir()
    (cache / "model.cpython-311.pyc").write_bytes(b"written by the stub's Python at serve time")
    put(VIT, repository, network_file)  # shares postprocess with NextViT_small_224: identical source, kept
    assert configs.network_name(VIT) in [p.name for p in repository.iterdir()]


def test_reexporting_the_only_user_of_a_changed_step_updates_it(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    put(NEXTVIT_S, repository, network_file)
    config = repository / configs.postprocess_name() / "config.pbtxt"
    ours = config.read_text()
    config.write_text(ours.replace("count: 1", "count: 3"))  # an older release's definition
    put(NEXTVIT_S, repository, network_file)  # nobody else calls it: the upgrade replaces it
    assert config.read_text() == ours


def test_removing_a_model_keeps_the_steps_others_use(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    for entry in (NEXTVIT_S, NEXTVIT_B, VIT):
        put(entry, repository, network_file)
    removed = install.remove(NEXTVIT_S, repository)
    assert sorted(removed) == sorted(configs.own_models(NEXTVIT_S))  # NextViT_base still uses its steps
    assert all((repository / name).is_dir() for name in configs.shared_steps(NEXTVIT_B))
    removed = install.remove(NEXTVIT_B, repository)
    assert configs.preprocess_name(NEXTVIT_B) in removed and configs.pixels_preprocess_name(NEXTVIT_B) in removed
    assert configs.postprocess_name() not in removed  # ViT uses the top-k step
    assert install.remove(VIT, repository)[-1:] and sorted(p.name for p in repository.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="not installed"):
        install.remove(VIT, repository)


def test_production_networks_carry_their_tensorrt_build(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    put(VIT, repository, network_file, "production")
    network = repository / configs.network_name(VIT)
    tensorrt = configs.parse_pbtxt((network / install.TENSORRT_CONFIG).read_text())
    assert tensorrt == configs.parse_pbtxt(configs.to_pbtxt(configs.tensorrt_network_config(VIT)))
    assert not (network / "1" / "model.py").exists()


def test_warmup_data_is_a_real_photograph_in_each_steps_form(tmp_path: Path, network_file: Path) -> None:
    import numpy as np

    from preprocess import Preprocessor, decode

    repository = tmp_path / "repo"
    put(VIT, repository, network_file)
    encoded = (repository / configs.preprocess_name(VIT) / "warmup" / configs.WARMUP_IMAGE_FILE).read_bytes()
    length = int.from_bytes(encoded[:4], "little")
    assert length == len(encoded) - 4 and encoded[4:6] == b"\xff\xd8"  # one BYTES element holding a JPEG
    frame = np.frombuffer(
        (repository / configs.pixels_preprocess_name(VIT) / "warmup" / configs.WARMUP_PIXELS_FILE).read_bytes(),
        np.uint8,
    )
    assert frame.size == np.prod(configs.WARMUP_PIXELS_SHAPE) and frame.std() > 20  # a photograph, not a flat fill
    crop = (repository / configs.network_name(VIT) / "warmup" / configs.WARMUP_CROP_FILE).read_bytes()
    prep = VIT.preprocessing
    expected = Preprocessor(prep.resize_short, prep.crop, prep.resize).pixels(decode(encoded[4:]))
    assert len(crop) == expected.nbytes == 224 * 224 * 3
    # The crop comes from the lossless original, the JPEG from its re-encoding: close, not equal.
    assert np.abs(np.frombuffer(crop, np.uint8).astype(int) - expected.reshape(-1).astype(int)).mean() < 3


def test_upgrade_rewrites_a_stale_shared_step_that_a_reinstall_refuses(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    put(NEXTVIT_S, repository, network_file)
    put(VIT, repository, network_file)
    config = repository / configs.postprocess_name() / "config.pbtxt"
    current = config.read_text()
    config.write_text(current.replace("dynamic_batching {", "dynamic_batching {\n  max_queue_delay_microseconds: 7"))
    with pytest.raises(install.SharedStepConflictError):
        put(VIT, repository, network_file)  # an older checkout's step, shared by two models
    network = repository / configs.network_name(VIT) / "1" / "model.onnx"
    inode = network.stat().st_ino
    assert install.upgrade(repository) == sorted([NEXTVIT_S.triton_name, VIT.triton_name])
    assert config.read_text() == current  # today's definition
    assert network.stat().st_ino == inode  # the exported network is linked again, not converted or copied
    assert install.installed_models(repository) == sorted([NEXTVIT_S.triton_name, VIT.triton_name])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_upgrade_refuses_to_drop_a_built_plan_and_changes_nothing(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    put(VIT, repository, network_file, "production")
    (repository / configs.network_name(VIT) / "1" / "model.plan").write_bytes(b"a TensorRT plan built for one GPU")
    before = snapshot(repository)
    with pytest.raises(FileExistsError, match=r"1/model\.plan"):
        install.upgrade(repository)
    assert snapshot(repository) == before
    with pytest.raises(FileNotFoundError, match="no exported model"):
        install.upgrade(tmp_path / "empty")


def test_the_upgrade_command_says_what_it_rewrote(tmp_path: Path, network_file: Path, capsys) -> None:
    repository = tmp_path / "repo"
    put(VIT, repository, network_file)
    assert repository_cli.main(["upgrade", "--repository", str(repository)]) == 0
    assert VIT.triton_name in capsys.readouterr().out
    assert repository_cli.main(["upgrade", "--repository", str(tmp_path / "empty")]) == 1
    assert "left as it was" in capsys.readouterr().err
