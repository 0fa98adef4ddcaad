"""The catalog: complete, resolvable against PaddleClas's own code, strict about names."""

from __future__ import annotations

import importlib

import pytest

import catalog
from catalog.reference import NUM_CLASSES, imagenet_labels, sample_photo_paths


def test_catalog_holds_the_19_published_models() -> None:
    names = list(catalog.CATALOG)
    nextvit = [n for n in names if n.startswith("NextViT") and not n.endswith("_ssld")]
    ssld = [n for n in names if n.endswith("_ssld")]
    vit = [n for n in names if n.startswith("ViT")]
    assert (len(nextvit), len(ssld), len(vit)) == (6, 6, 7)
    assert sorted(n.removesuffix("_ssld") for n in ssld) == sorted(nextvit)
    assert len({catalog.get(n).triton_name for n in names}) == 19


@pytest.mark.parametrize("name", list(catalog.CATALOG))
def test_architecture_exists_in_paddleclas(name: str) -> None:
    entry = catalog.get(name)
    module = importlib.import_module(f"paddleclas.ppcls.arch.backbone.model_zoo.{entry.module}")
    assert callable(getattr(module, entry.arch))
    assert str(entry.input_size) in entry.arch
    assert entry.preprocessing.crop == entry.input_size
    assert entry.weights_url.endswith(f"/{name}_pretrained.pdparams")
    assert entry.inference_url.endswith(f"/inference/{name}_infer.tar")


def test_lookup_accepts_triton_names_and_rejects_unknown_ones_with_suggestions() -> None:
    assert catalog.get("vit_base_patch16_224").name == "ViT_base_patch16_224"
    with pytest.raises(catalog.UnknownModelError, match="did you mean NextViT_small_224"):
        catalog.get("NextVit_smal_224")


def test_labels_are_paddleclas_imagenet_list_keyed_by_id() -> None:
    labels = imagenet_labels()
    assert len(labels) == NUM_CLASSES
    assert labels[0] == "tench, Tinca tinca"
    assert labels[134] == labels[517] == "crane"  # names repeat: everything keys by id


def test_sample_photos_are_real_files() -> None:
    for path in sample_photo_paths():
        assert path.stat().st_size > 50_000, path


@pytest.mark.parametrize("name", list(catalog.CATALOG))
def test_the_resolved_preprocessor_is_the_one_the_server_builds(name: str) -> None:
    """The preprocess step's config, as Triton reads it back, gives exactly the resolver's Preprocessor."""
    from catalog import resolve
    from model_repository import configs
    from preprocess import Preprocessor

    entry = catalog.get(name)
    config = configs.parse_pbtxt(configs.to_pbtxt(configs.preprocess_config(entry)))
    served = Preprocessor.from_parameters({key: value.string_value for key, value in config.parameters.items()})
    assert served == resolve.preprocessor(entry) == resolve.preprocessor(entry.triton_name)
    prep = entry.preprocessing
    assert (served.resize_short, served.crop, served.resize, served.mean) == (
        prep.resize_short,
        prep.crop,
        prep.resize,
        None,
    ), "the served step crops only: the network normalizes"
    normalizing = resolve.preprocessor(entry, normalize=True)
    assert (normalizing.mean, normalizing.std) == (prep.mean, prep.std)
    with pytest.raises(catalog.UnknownModelError, match="did you mean"):
        resolve.preprocessor(name + "x")
