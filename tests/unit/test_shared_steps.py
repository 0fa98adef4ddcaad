"""What an installed repository holds: networks with their records, one copy of each shared step's data.

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
    expected = {configs.network_name(e) for e in (NEXTVIT_S, NEXTVIT_B, VIT)}
    expected |= {*configs.shared_steps(NEXTVIT_S), *configs.shared_steps(VIT)}
    assert names == sorted(expected)
    assert len([n for n in names if configs.step_kind(n) not in ("ensemble", "network")]) == 7  # 2 keys x 3 + top-k
    assert snapshot(repository / configs.preprocess_name(NEXTVIT_S)) == steps_before
    assert install.installed_models(repository) == sorted(e.triton_name for e in (NEXTVIT_S, NEXTVIT_B, VIT))
    assert not list(repository.rglob("*.pbtxt")) and not list(repository.rglob("*.py")), "data only, no configs or code"


def test_reinstalling_keeps_the_installed_shared_steps(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    put(NEXTVIT_S, repository, network_file)
    labels = repository / configs.postprocess_name() / "1" / install.LABELS_FILE
    inode = labels.stat().st_ino
    put(NEXTVIT_S, repository, network_file)
    assert labels.stat().st_ino == inode  # not rewritten, not swapped: a running server's links stay valid


def test_removing_a_model_keeps_the_steps_others_use(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    for entry in (NEXTVIT_S, NEXTVIT_B, VIT):
        put(entry, repository, network_file)
    (repository / NEXTVIT_S.triton_name).mkdir()  # an ensemble directory an older checkout installed
    removed = install.remove(NEXTVIT_S, repository)
    assert removed == [NEXTVIT_S.triton_name, configs.network_name(NEXTVIT_S)]  # NextViT_base still uses its steps
    assert all((repository / name).is_dir() for name in configs.shared_steps(NEXTVIT_B))
    removed = install.remove(NEXTVIT_B, repository)
    assert configs.preprocess_name(NEXTVIT_B) in removed and configs.pixels_preprocess_name(NEXTVIT_B) in removed
    assert configs.interactive_preprocess_name(NEXTVIT_B) in removed
    assert configs.postprocess_name() not in removed  # ViT uses the top-k step
    assert install.remove(VIT, repository)[-1:] and sorted(p.name for p in repository.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="not installed"):
        install.remove(VIT, repository)


def test_the_list_command_names_each_models_directories(tmp_path: Path, network_file: Path, capsys) -> None:
    repository = tmp_path / "repo"
    put(VIT, repository, network_file)
    assert repository_cli.main(["list", "--repository", str(repository)]) == 0
    assert capsys.readouterr().out == f"{VIT.triton_name}: {', '.join(install.referenced_models([VIT.triton_name]))}\n"


def test_production_networks_carry_both_precisions_and_their_variant(tmp_path: Path, network_file: Path) -> None:
    repository = tmp_path / "repo"
    network_file.with_name(install.FP16_NETWORK).write_bytes(b"the FP16 network")
    put(VIT, repository, network_file, "production")
    network = repository / configs.network_name(VIT)
    assert (network / "1" / install.FP16_NETWORK).read_bytes() == b"the FP16 network"
    assert install.installed_variant(network) == "production" and not (network / "1" / "model.py").exists()


def test_a_production_record_without_its_memory_estimate_is_refused_before_anything_changes(
    tmp_path: Path, network_file: Path
) -> None:
    repository = tmp_path / "repo"
    with pytest.raises(ValueError, match="no memory estimate"):
        install.install(VIT, network_file, {"weights_note": "placeholder"}, repository, "production")
    assert not repository.exists() or not list(repository.iterdir())


def test_warmup_data_is_a_real_photograph_in_each_steps_form(tmp_path: Path, network_file: Path) -> None:
    import numpy as np

    from preprocess import Preprocessor, decode

    repository = tmp_path / "repo"
    put(VIT, repository, network_file)
    encoded = (repository / configs.preprocess_name(VIT) / "warmup" / configs.WARMUP_IMAGE_FILE).read_bytes()
    length = int.from_bytes(encoded[:4], "little")
    assert length == len(encoded) - 4 and encoded[4:6] == b"\xff\xd8"  # one BYTES element holding a JPEG
    reserved = repository / configs.interactive_preprocess_name(VIT) / "warmup" / configs.WARMUP_IMAGE_FILE
    assert reserved.read_bytes() == encoded  # the interactive step warms with the same request
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
