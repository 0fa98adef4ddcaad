"""`python -m client smoke` against the real server: every served ensemble answers the bundled photograph.

The same command is the Helm chart's test (tests/chart/test_chart_server.py runs the rendered pod
command); here its exit codes and its checks, each shown able to fail.
"""

from __future__ import annotations

import pytest

import catalog
from client.__main__ import main
from client.classify import Prediction
from client.smoke import PHOTO, answer_problems
from model_repository import install
from model_repository.server import free_port
from tests.support.deployment import SERVED_MODELS

SMOKED = [catalog.get(name).triton_name for name in SERVED_MODELS]


def test_the_bundled_photo_is_the_servers_warmup_photograph() -> None:
    """client/data/chelsea.jpg is scikit-image's chelsea exactly as the server warms up with it."""
    assert PHOTO.read_bytes() == install._warmup_jpeg()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_every_served_ensemble_passes(triton_server, protocol: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_url
    assert main(["smoke", "--url", url, "--protocol", protocol, "--ready-timeout", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split(":")[0] for line in lines) == sorted(f"ok {model}" for model in SMOKED)


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
