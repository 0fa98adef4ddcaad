"""Shared fixtures: a real export of two catalog models and a real tritonserver serving them.

Both are session-scoped: the export (about a minute on 2 cores) and the server start happen once
per test run, and the server is always stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import catalog
from model_repository.server import TritonServer, free_port

# The two models the vertical slice proves end to end: one per preprocessing family.
SERVED_MODELS = ("NextViT_small_224", "ViT_base_patch16_224")
SEED = 0


@pytest.fixture(scope="session")
def exported_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A portable repository holding SERVED_MODELS exported with seeded random weights."""
    from export.pipeline import Source, export_model

    repository = tmp_path_factory.mktemp("exported") / "model_repository"
    for name in SERVED_MODELS:
        export_model(catalog.get(name), Source("random", seed=SEED), repository, "portable")
    return repository


@pytest.fixture(scope="session")
def triton_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """The real tritonserver 2.51.0 on free ports, serving `exported_repository`.

    Started by the project's launcher, so secured as `make serve` is: loopback only, and the
    restricted APIs need `triton_server.admin_headers("http" | "grpc")` (a random key per session).
    """
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = TritonServer(exported_repository, free_port(), free_port(), free_port(), log_path=log)
    with server:
        yield server


@pytest.fixture(scope="session")
def fast_decode_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A second real tritonserver on the same repository, its preprocess steps in fast decode (--fast-decode).

    Started only by the tests that ask for it (tests/test_fast_decode.py, the hostile-input tests run
    again in fast mode), and shared by them.
    """
    log = tmp_path_factory.mktemp("triton-fast") / "tritonserver.log"
    server = TritonServer(exported_repository, free_port(), free_port(), free_port(), log_path=log, fast_decode=True)
    with server:
        yield server


@pytest.fixture(scope="session")
def sample_photos() -> list[Path]:
    from catalog.reference import sample_photo_paths

    return sample_photo_paths()
