"""Resize tiers of the Pillow-resized (NextViT) models: which Pillow build this process resizes with.

"exact" (the default) is stock Pillow, whose antialiased BICUBIC is PaddleClas's operator bit for bit.
"near-exact" is pillow-simd, the same filter (same kernel, support and fixed-point rounding design)
computed with AVX2: several times cheaper, and 0.2-0.6 % of the crop values differ by one level, two
at most (the price: docs/preprocessing.md, "Near-exact resize"). Both builds install as the module
`PIL`, so one process holds only one of them: the near-exact tier is a separate directory
(`pip install --target`), put first on sys.path by the process that serves that tier, before anything
imports PIL (model_repository/python_models/preprocess.py reads RESIZE_TIER_PARAMETER and
PILLOW_SIMD_DIR_PARAMETER from its config). A Preprocessor refuses a tier the loaded PIL does not
provide, so an exact step can never resize with pillow-simd by accident, nor a near-exact one with
stock Pillow.
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path

RESIZE_TIERS = ("exact", "near-exact")
# The preprocess model parameters choosing the tier, and where pillow-simd is installed for it.
RESIZE_TIER_PARAMETER = "resize_tier"
PILLOW_SIMD_DIR_PARAMETER = "pillow_simd_dir"
# The Pillow build each tier resizes with (distribution names, as importlib.metadata reports them).
TIER_DISTRIBUTIONS = {"exact": "pillow", "near-exact": "pillow-simd"}
# The priced tolerance: the largest difference from the exact crop, in levels (0-255), measured over
# every image of the price (docs/preprocessing.md, "Near-exact resize"); tests hold the tier to it.
NEAR_EXACT_MAX_LEVELS = 2
# The resize backend the near-exact tier replaces; OpenCV's bilinear (ViT) is exact and cheap already.
NEAR_EXACT_BACKEND = "pillow-bicubic"


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-")


def distributions_in(directory: Path) -> set[str]:
    """Names of the distributions installed in `directory` (a site-packages or a pip --target folder)."""
    return {_normalized(d.metadata["Name"] or "") for d in importlib.metadata.distributions(path=[str(directory)])}


@functools.cache
def loaded_pillow() -> str:
    """The distribution the imported `PIL` belongs to: "pillow" or "pillow-simd" (read once per process)."""
    import PIL

    names = distributions_in(Path(PIL.__file__).resolve().parents[1])
    found = [name for name in TIER_DISTRIBUTIONS.values() if name in names]
    if len(found) != 1:
        raise RuntimeError(f"cannot tell which Pillow build {PIL.__file__} is (distributions there: {sorted(names)})")
    return found[0]


def check_tier(tier: str, backend: str) -> None:
    """Refuse a tier this process cannot give: an unknown one, near-exact for OpenCV, or the other Pillow loaded."""
    if tier not in RESIZE_TIERS:
        raise ValueError(f"unknown resize tier {tier!r}; expected one of {RESIZE_TIERS}")
    if tier == "near-exact" and backend != NEAR_EXACT_BACKEND:
        raise ValueError(f"the near-exact tier replaces {NEAR_EXACT_BACKEND} only, not {backend}")
    wanted, loaded = TIER_DISTRIBUTIONS[tier], loaded_pillow()
    if loaded != wanted:
        raise ValueError(
            f"resize tier {tier!r} needs {wanted}, but this process imported {loaded} as PIL "
            f"(the near-exact tier puts pillow-simd's directory first on sys.path before PIL is imported)"
        )


def check_pillow_simd_dir(directory: Path) -> Path:
    """`directory`, absolute, once it is known to hold pillow-simd's PIL (make setup installs it there)."""
    directory = directory.resolve()
    if not (directory / "PIL").is_dir() or TIER_DISTRIBUTIONS["near-exact"] not in distributions_in(directory):
        raise ValueError(
            f"{directory} holds no pillow-simd: the near-exact resize tier needs it (make setup builds it there; "
            "see preprocess/README.md)"
        )
    return directory
