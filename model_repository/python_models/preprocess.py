"""Triton Python model: encoded image bytes -> NORMALIZED_IMAGE, as PaddleClas preprocesses.

Installed as `<model>_preprocess/1/model.py`, with the project's `preprocess` package copied beside
it. Parameters (resize_short, crop, resize, mean, std) come from the catalog through config.pbtxt.
"""

import json

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from preprocess import DEFAULT_MAX_PIXELS, ImageDecodeError, Preprocessor


def _floats(text: str) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in text.split(","))
    return a, b, c


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        # One math thread per instance: Triton runs several instances side by side, and each
        # OpenCV thread pool would otherwise claim every core.
        cv2.setNumThreads(1)
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        self.preprocessor = Preprocessor(
            resize_short=int(params["resize_short"]),
            crop=int(params["crop"]),
            resize=params["resize"],
            mean=_floats(params["mean"]),
            std=_floats(params["std"]),
            max_pixels=int(params.get("max_pixels", DEFAULT_MAX_PIXELS)),
        )
        pb_utils.Logger.log_info(f"{args['model_name']}: {self.preprocessor}")

    def _tensors(self, images: np.ndarray) -> np.ndarray:
        tensors = []
        for index, data in enumerate(images):
            try:
                tensors.append(self.preprocessor(bytes(data)))
            except ImageDecodeError as err:
                where = f"image {index + 1} of {len(images)}: " if len(images) > 1 else ""
                raise ImageDecodeError(f"{where}{err}") from None
        return np.stack(tensors)

    def execute(self, requests: list) -> list:
        # One response per request, in order; a bad image fails only the request that carried it.
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            try:
                batch = self._tensors(images)
            except ImageDecodeError as err:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err))))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("NORMALIZED_IMAGE", batch)]))
        return responses
