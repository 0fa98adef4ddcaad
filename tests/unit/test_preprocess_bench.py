"""The JPEGs that every preprocessing figure (bench-preprocess, bench-capacity) and the drills send are made of."""

from __future__ import annotations

from catalog.reference import sample_photo_paths
from perf import preprocess_bench
from preprocess import decode


def test_benchmark_jpegs_are_every_sample_photo_at_the_size_and_the_same_in_every_run() -> None:
    jpegs = preprocess_bench.photo_jpegs((500, 375))
    assert len(jpegs) == len(sample_photo_paths())
    assert all(data.startswith(b"\xff\xd8\xff") for data in jpegs)  # JPEG start-of-image marker
    assert {decode(data).shape for data in jpegs} == {(375, 500, 3)}
    assert preprocess_bench.photo_jpegs((500, 375)) == jpegs  # seeded noise: runs compare on the same files


def test_noise_makes_the_files_larger_as_a_camera_sensor_does() -> None:
    """The entropy-coded size sets the decode time; a smooth upscale would make camera-sized files too cheap."""
    noisy, smooth = (preprocess_bench.photo_jpegs((1920, 1080), sigma) for sigma in (preprocess_bench.NOISE_SIGMA, 0))
    assert all(len(a) > len(b) for a, b in zip(noisy, smooth, strict=True))
