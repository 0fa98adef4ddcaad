"""Many Triton requests in, one stack of crops for all of them, one result per request out.

Triton hands a Python model every request its dynamic batcher gathered. Images come in different
sizes, so decode, resize and crop run image by image; after the crop every image has the model's
shape, so they are stacked once and split back. A request
with a bad image gets that image's error and costs the others nothing: the contract is one outcome
per request, in order, and nothing a single image does may fail the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from preprocess.formats import ImageDecodeError

Item = TypeVar("Item")


def _crops(items: Sequence[Item], crop: Callable[[Item], np.ndarray]) -> list[np.ndarray]:
    crops = []
    for index, item in enumerate(items):
        where = f"image {index + 1} of {len(items)}: " if len(items) > 1 else ""
        try:
            crops.append(crop(item))
        except ImageDecodeError as err:
            raise ImageDecodeError(f"{where}{err}") from None
        except Exception as err:  # an unforeseen failure is still this request's failure, never the batch's
            raise ImageDecodeError(f"{where}could not preprocess ({type(err).__name__}: {err})") from None
    return crops


def preprocess_requests(
    requests: Sequence[Sequence[Item]],
    crop: Callable[[Item], np.ndarray],
    admit: Callable[[Sequence[Item]], None] | None = None,
) -> list[np.ndarray | ImageDecodeError]:
    """For each request (a sequence of images), its N x C x C x 3 uint8 crops or the error of its first bad image.

    `crop` turns one image (encoded bytes or a decoded frame) into the uint8 crop (the network
    normalizes it in its own graph). A request stops at its first bad image:
    the rest of it would be thrown away anyway. `admit`, if given, sees a request's images before any
    is cropped and refuses the whole request by raising ImageDecodeError (the per-request limits).
    """
    outcomes: list[list[np.ndarray] | ImageDecodeError] = []
    for items in requests:
        try:
            if len(items) == 0:
                raise ImageDecodeError("the request holds no image")
            if admit is not None:
                admit(items)
            outcomes.append(_crops(items, crop))
        except ImageDecodeError as err:
            outcomes.append(err)
    good = [c for outcome in outcomes if not isinstance(outcome, ImageDecodeError) for c in outcome]
    tensors = np.stack(good) if good else None
    results: list[np.ndarray | ImageDecodeError] = []
    start = 0
    for outcome in outcomes:
        if isinstance(outcome, ImageDecodeError):
            results.append(outcome)
        else:
            assert tensors is not None
            results.append(tensors[start : start + len(outcome)])
            start += len(outcome)
    return results
