"""The peer `make perf` divides Triton by: PaddleClas's own deploy path on the exported model's Paddle program."""

from __future__ import annotations

import io
from pathlib import Path

import catalog
from export.reference import reference_program, reference_records
from perf import peer

MODEL = "NextViT_small_224"


def test_the_paddleclas_deploy_path_classifies_the_photographs_as_the_reference_does(
    exported_repository: Path, sample_photos: list[Path], tmp_path: Path
) -> None:
    """Its predictions are the reference's (PaddleClas's operators, Paddle Inference): it ran the real network."""
    entry = catalog.get(MODEL)
    measured = peer.measure(entry, exported_repository, sample_photos, seconds=0.5, quiet_percent=None)
    assert measured["images"] >= 2 * peer.BATCH and measured["images"] % peer.BATCH == 0
    assert measured["images_per_s"] > 0 and measured["batch"] == peer.BATCH
    program = reference_program(entry, None, exported_repository, tmp_path, io.StringIO())
    records = reference_records(entry, program, sample_photos, log=io.StringIO())
    # the last batch of 8 cycles through the photographs: it ends where the images counted end
    expected = [
        records[i % len(sample_photos)]["class_ids"][0]
        for i in range(measured["images"], measured["images"] + peer.BATCH)
    ]
    assert measured["top1"] == expected
