"""Session fixtures (a real export of two catalog models, real tritonservers serving them) and the layer markers.

The tests live in one folder per layer, and the folder says what a test may need:

    tests/unit/     neither a server nor an export (make test-unit)
    tests/export/   the real paddle2onnx export                   -> marker `export`
    tests/server/   the real tritonserver                         -> marker `server` (tests using a `*server` fixture)
    tests/chart/    the Helm chart; its few server tests carry `server` themselves

`pytest_collection_modifyitems` applies the markers from the folder, so no test file repeats them,
and refuses a unit test that asks for the export or a server (a test file outside the layer
folders gets a warning and the markers of what it uses). Helpers are in tests/support/.

The export (about a minute on 2 cores) and the server start happen once per session, and every
server is always stopped at the end; both come from tests/support/deployment.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from model_repository.server import TritonServer
from tests.support.deployment import SERVED_MODELS, export_models, serve

if TYPE_CHECKING:
    import tritonclient.grpc as grpcclient

TESTS = Path(__file__).resolve().parent
LAYERS = ("unit", "export", "server", "chart")
EXPORT_FIXTURE = "exported_repository"  # every session server depends on it


def layer_of(item: pytest.Item) -> str:
    """The layer folder a test's file sits in (tests/<layer>/...); "" for a file outside them."""
    parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
    return parts[0] if len(parts) > 1 and parts[0] in LAYERS else ""


def uses_a_server(item: pytest.Item) -> bool:
    """By convention every fixture that yields a running TritonServer is named `*server`."""
    return any(name.endswith("server") for name in item.fixturenames)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers by folder: tests/export/ all `export`; in tests/server/ `server` on tests using a server fixture.

    A test that starts a server itself (a launcher subprocess, a fixture chosen at run time) says so
    with its own `server` mark. A test in tests/server/ that needs no server (a config or unit check
    beside the feature it serves) gets `export` if it uses the export, nothing otherwise, so
    `make test-unit` runs it.
    """
    for item in items:
        layer = layer_of(item)
        uses_export = EXPORT_FIXTURE in item.fixturenames
        if not layer:  # a file not yet moved into its layer: marked from what it uses, and named
            warnings.warn(
                pytest.PytestWarning(f"{item.path.name} belongs in a layer folder tests/{{{','.join(LAYERS)}}}/"),
                stacklevel=2,
            )
            layer = "server" if uses_a_server(item) else "export" if uses_export else "unit"
        if layer == "unit" and (uses_export or uses_a_server(item)):
            raise pytest.UsageError(
                f"{item.nodeid} needs the export or a server: move it to tests/export/ or tests/server/"
            )
        serves = layer == "server" and (uses_a_server(item) or item.get_closest_marker("server") is not None)
        if layer == "export" or (layer == "server" and uses_export and not serves):
            item.add_marker(pytest.mark.export)
        elif serves and item.get_closest_marker("server") is None:
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def exported_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A portable repository holding SERVED_MODELS exported with seeded random weights."""
    return export_models(tmp_path_factory.mktemp("exported") / "model_repository", SERVED_MODELS)


@pytest.fixture(scope="session")
def triton_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """The real tritonserver 2.51.0 on free ports, serving `exported_repository`.

    Started by the project's launcher, so secured as `make serve` is: loopback only, and the
    restricted APIs need `triton_server.admin_headers("http" | "grpc")` (a random key per session).
    """
    with serve(exported_repository, tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.fixture(scope="session")
def fast_decode_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A second real tritonserver on the same repository, its preprocess steps in fast decode (--fast-decode).

    Started only by the tests that ask for it (tests/server/test_fast_decode.py, the hostile-input tests
    run again in fast mode), and shared by them.
    """
    with serve(exported_repository, tmp_path_factory.mktemp("triton-fast"), fast_decode=True) as server:
        yield server


@pytest.fixture(scope="session")
def exact_grpc(triton_server: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    """A gRPC client of the default (exact) server: what the serving tiers' tests compare answers against."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        yield client


@pytest.fixture(scope="session")
def sample_photos() -> list[Path]:
    from catalog.reference import sample_photo_paths

    return sample_photo_paths()
