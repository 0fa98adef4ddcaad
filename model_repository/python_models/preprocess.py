"""Triton Python model: images -> uint8 crops (CROPS), exactly as PaddleClas decodes, resizes and crops.

Installed twice per preprocessing key (model_repository/configs.py), with the project's `preprocess`
package copied beside it, and shared by every catalog model with that key: `preprocess_<key>` reads
IMAGE (encoded bytes, one element per image) and decodes; `pixels_preprocess_<key>` reads PIXELS
(RGB uint8 frames, N x H x W x 3) and skips decoding. The config's input name says which; everything
after the decode is the same code. Parameters (resize_short, crop, resize, max_pixels) come from the
catalog through config.pbtxt. Normalization is the network's first operation, not this step's.
"""

import json

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from preprocess import Preprocessor, preprocess_requests
from preprocess.allocator import keep_large_buffers


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        # One math thread per instance: Triton runs several instances side by side, and each
        # OpenCV thread pool would otherwise claim every core.
        cv2.setNumThreads(1)
        # This stub process is ours alone: let malloc keep decode buffers of camera-sized photos.
        keep_large_buffers()
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.preprocessor = Preprocessor.from_parameters(params)
        (self.input_name,) = (tensor["name"] for tensor in config["input"])
        (self.output_name,) = (tensor["name"] for tensor in config["output"])
        if self.input_name == "IMAGE":
            self.crop = self._crop_encoded
        elif self.input_name == "PIXELS":
            self.crop = self.preprocessor.pixels
        else:
            raise ValueError(f"{args['model_name']}: input must be IMAGE or PIXELS, not {self.input_name!r}")
        pb_utils.Logger.log_info(f"{args['model_name']} ({self.input_name}): {self.preprocessor}")

    def _crop_encoded(self, data: bytes) -> np.ndarray:
        return self.preprocessor.pixels(self.preprocessor.decode(bytes(data)))

    def _images(self, request) -> np.ndarray:
        array = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
        # IMAGE arrives as N x 1 bytes objects; PIXELS as N x H x W x 3, iterated frame by frame.
        return array.reshape(-1) if self.input_name == "IMAGE" else array

    def execute(self, requests: list) -> list:
        # Decode and crop image by image, then one response per request, in order; a bad image fails
        # only the request carrying it.
        outcomes = preprocess_requests([self._images(r) for r in requests], self.crop)
        responses = []
        for outcome in outcomes:
            if isinstance(outcome, np.ndarray):
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, outcome)]))
            else:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(outcome))))
        return responses
