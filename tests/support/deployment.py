"""Export these models, serve them: the one factory for every repository and server the tests start.

`export_models` runs the real export (PaddleClas network, paddle2onnx, parity check, atomic install)
with seeded random weights; `serve` starts the real tritonserver 2.51.0 on free ports through the
project's launcher (model_repository.server.TritonServer.on_free_ports, secured as `make serve` is) and always
stops it. tests/conftest.py builds the session fixtures from them (`exported_repository`,
`triton_server`, `fast_decode_server`); a test module that needs other models or other server
flags builds its own module-scoped fixture from the same two functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import catalog
from model_repository.configs import Variant
from model_repository.server import TritonServer

# The two models the vertical slice proves end to end: one per preprocessing family.
SERVED_MODELS = ("NextViT_small_224", "ViT_base_patch16_224")
SEED = 0


def export_models(repository: Path, names: Sequence[str], variant: Variant = "portable", seed: int = SEED) -> Path:
    """`repository` with `names` exported into it (seeded random weights); returns it."""
    from export.pipeline import Source, export_model

    for name in names:
        export_model(catalog.get(name), Source("random", seed=seed), repository, variant)
    return repository


@contextmanager
def serve(repository: Path, log_dir: Path, **options: object) -> Iterator[TritonServer]:
    """The real tritonserver on free ports serving `repository` (launcher `options`: fast_decode, ...)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with TritonServer.on_free_ports(repository, log_dir / "tritonserver.log", **options) as server:
        yield server
