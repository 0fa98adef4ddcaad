"""`python -m client smoke` against the real server: every served ensemble answers the bundled photograph.

The same command is the Helm chart's test (tests/chart/test_chart_server.py runs the rendered pod
command); here its exit codes and its checks, each shown able to fail: a wrong network (the right
one's colour channels reversed, tests/support/wrong_network.py) served under the right one's
reference fails, the right one passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import catalog
from client.__main__ import main
from client.classify import Prediction
from client.smoke import PHOTO, answer_problems, reference_from_parameters
from model_repository import configs, install, layout
from model_repository.server import TritonServer, free_port
from tests.support.deployment import SERVED_MODELS, serve
from tests.support.wrong_network import reverse_colour_channels

SMOKED = [catalog.get(name).triton_name for name in SERVED_MODELS]


def test_the_bundled_photo_is_the_servers_warmup_photograph() -> None:
    """client/data/chelsea.jpg is scikit-image's chelsea exactly as the server warms up with it."""
    assert PHOTO.read_bytes() == install.warmup_jpeg()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_every_served_ensemble_passes(triton_server, protocol: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_url
    assert main(["smoke", "--url", url, "--protocol", protocol, "--ready-timeout", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    paths = [f"ok {model}{path}" for model in SMOKED for path in ("", configs.INTERACTIVE_SUFFIX)]
    assert sorted(line.split(":")[0] for line in lines) == sorted(paths)


def test_a_wrong_answer_shape_fails_with_exit_code_1(triton_server, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["smoke", "--url", triton_server.grpc_url, "--model", SMOKED[0], "--top-k", "4"]
    assert main(args) == 1
    assert f"FAIL {SMOKED[0]}: 5 labels, 5 scores, 5 ids; expected 4 of each" in capsys.readouterr().out


def test_an_unserved_model_or_no_server_exits_2(triton_server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["smoke", "--url", triton_server.grpc_url, "--model", "vit_large_patch16_384"]) == 2
    assert "vit_large_patch16_384" in capsys.readouterr().out
    assert main(["smoke", "--url", f"127.0.0.1:{free_port()}", "--ready-timeout", "0"]) == 2
    assert "no Triton server answers" in capsys.readouterr().out


def test_each_check_can_fail(triton_server) -> None:
    """The real answer passes; the same answer with one thing broken fails on exactly that."""
    from client import Classifier

    with Classifier(triton_server.grpc_url, SMOKED[0]) as classifier:
        (real,) = classifier.classify([PHOTO.read_bytes()])
    assert answer_problems(real) == []
    broken = {
        "descending": Prediction(real.labels, real.scores[::-1], real.class_ids),
        "distinct": Prediction(real.labels, real.scores, [real.class_ids[0]] * 5),
        "0..999": Prediction(real.labels, real.scores, [*real.class_ids[:4], 1000]),
        "empty label": Prediction([*real.labels[:4], " "], real.scores, real.class_ids),
    }
    for words, prediction in broken.items():
        (problem,) = answer_problems(prediction)
        assert words in problem, (words, problem)


WRONG = catalog.get(SERVED_MODELS[0])  # the cheaper network of the two


def test_every_ensemble_publishes_the_reference_the_export_recorded(exported_repository: Path) -> None:
    """The export's answer for the bundled photograph travels in the three ensembles' configs."""
    for name in SERVED_MODELS:
        entry = catalog.get(name)
        record = json.loads((exported_repository / configs.network_name(entry) / install.EXPORT_RECORD).read_text())
        assert record["reference"]["photo_sha256"] == hashlib.sha256(PHOTO.read_bytes()).hexdigest()
        assert record["reference"]["engine"] == "Paddle Inference"
        served = layout.model_configs(exported_repository, entry, configs.Layout())  # what a server start renders
        for ensemble in (entry.triton_name, configs.pixels_ensemble_name(entry), configs.crop_ensemble_name(entry)):
            config = configs.parse_pbtxt(configs.to_pbtxt(served[ensemble]))
            published = reference_from_parameters({k: v.string_value for k, v in config.parameters.items()})
            assert published is not None, ensemble
            assert published.class_ids == record["reference"]["class_ids"]
            assert published.scores == record["reference"]["scores"]


@pytest.fixture(scope="module")
def wrong_network_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """The session repository with WRONG's network reversing colour channels, its ensembles unchanged."""
    repository = tmp_path_factory.mktemp("wrong-network") / "model_repository"
    shutil.copytree(exported_repository, repository, copy_function=os.link)  # links: the networks are 0.1-0.4 GB
    reverse_colour_channels(repository / configs.network_name(WRONG) / "1" / "model.onnx")
    with serve(repository, tmp_path_factory.mktemp("triton-wrong"), models=[WRONG.name]) as server:
        yield server


def test_a_wrong_network_fails_and_the_right_one_passes(
    wrong_network_server: TritonServer, triton_server: TritonServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same ensembles, same reference, same photograph: only the network differs."""
    assert main(["smoke", "--url", wrong_network_server.grpc_url, "--model", WRONG.triton_name]) == 1
    wrong = capsys.readouterr().out
    print(wrong)
    assert f"FAIL {WRONG.triton_name}: rank 1: class " in wrong
    assert "(reference rank 1, " in wrong  # the reference's top class is gone from the served top-5
    assert main(["smoke", "--url", triton_server.grpc_url, "--model", WRONG.triton_name]) == 0
    right = capsys.readouterr().out
    assert f"ok {WRONG.triton_name}: " in right and "the reference's answer within 0.001 (fp32)" in right
