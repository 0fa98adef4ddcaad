"""Triton Python model: images -> uint8 crops (CROPS), exactly as PaddleClas decodes, resizes and crops.

Installed three times per preprocessing key (model_repository/configs.py), with the project's `preprocess`
package copied beside it, and shared by every catalog model with that key: `preprocess_<key>` reads
IMAGE (encoded bytes, one element per image) and decodes, and so does `interactive_preprocess_<key>`, its
instance reserved for small interactive requests; `pixels_preprocess_<key>` reads PIXELS (RGB uint8
frames, N x H x W x 3) and skips decoding. The config's input type says which; everything
after the decode is the same code. Parameters (resize_short, crop, resize, max_pixels) come from the
catalog through config.pbtxt; `decode` (exact unless the serving copy says fast) and `resize_tier` (exact
unless it says near-exact) from the launcher or the chart. Normalization is the network's first operation,
not this step's.

The project's `preprocess` package, and with it PIL, is imported in `initialize`, after the config is read:
a near-exact step (preprocess/tiers.py) puts pillow-simd's folder (`pillow_simd_dir`) first on sys.path
before PIL is loaded. Each instance is a stub process of its own, so that choice holds for this step alone.
"""

import dataclasses
import json
import os
import sys

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils


def lower_priority(niceness: int) -> None:
    """Every thread of this stub process `niceness` below tritonserver's priority (configs.PREPROCESS_NICENESS: why).

    Relative to the server (this stub's parent), so the steps still yield to it when the whole server
    runs niced (a benchmark under `nice`, a container runtime's setting). Linux keeps a nice value per
    thread: the threads the stub started before this call keep theirs unless set one by one; threads
    started later inherit it.
    """
    target = min(19, os.getpriority(os.PRIO_PROCESS, os.getppid()) + niceness)
    for thread in map(int, os.listdir("/proc/self/task")):
        try:  # never below the current value: lowering niceness needs a privilege the stub lacks
            os.setpriority(os.PRIO_PROCESS, thread, max(target, os.getpriority(os.PRIO_PROCESS, thread)))
        except ProcessLookupError:  # a thread that ended meanwhile
            continue


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        # One math thread per instance: Triton runs several instances side by side, and each
        # OpenCV thread pool would otherwise claim every core.
        cv2.setNumThreads(1)
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        if params.get("resize_tier", "exact") != "exact":  # preprocess.RESIZE_TIER_PARAMETER, before it is importable
            sys.path.insert(0, params["pillow_simd_dir"])  # preprocess.PILLOW_SIMD_DIR_PARAMETER
        # Preprocessor checks that the PIL loaded now is the tier's build (preprocess/tiers.py).
        from preprocess import Preprocessor, preprocess_requests
        from preprocess.allocator import IdleRelease, keep_large_buffers
        from preprocess.slots import DecodeSlots, server_directory

        self.preprocess_requests = preprocess_requests
        # This stub process is ours alone: let malloc keep decode buffers while requests come, and
        # hand them back after a second without one (preprocess/allocator.py).
        allocator = keep_large_buffers()
        self.release = IdleRelease()
        lower_priority(int(params.get("niceness", 0)))
        # Images above a full-frame photo's size share the server's few large-decode slots (preprocess/slots.py).
        self.preprocessor = dataclasses.replace(
            Preprocessor.from_parameters(params), slots=DecodeSlots(server_directory())
        )
        ((self.input_name, input_type),) = ((tensor["name"], tensor["data_type"]) for tensor in config["input"])
        (self.output_name,) = (tensor["name"] for tensor in config["output"])
        # The input's type says which step this is: encoded bytes (TYPE_STRING) or RGB frames (TYPE_UINT8).
        self.encoded = input_type == "TYPE_STRING"
        if self.encoded:
            self.crop = self._crop_encoded
        elif input_type == "TYPE_UINT8":
            self.crop = self.preprocessor.pixels
        else:
            raise ValueError(f"{args['model_name']}: input {self.input_name} must be TYPE_STRING or TYPE_UINT8")
        pb_utils.Logger.log_info(f"{args['model_name']} ({self.input_name}): {self.preprocessor}, {allocator} malloc")

    def _crop_encoded(self, data: bytes) -> np.ndarray:
        return self.preprocessor.crop_encoded(bytes(data))  # exact, or fast decode when the config's `decode` says so

    def _images(self, request) -> np.ndarray:
        array = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
        # IMAGE arrives as N x 1 bytes objects; PIXELS as N x H x W x 3, iterated frame by frame.
        return array.reshape(-1) if self.encoded else array

    def execute(self, requests: list) -> list:
        # Decode and crop image by image, then one response per request, in order; a bad image fails
        # only the request carrying it.
        self.release.busy()
        try:
            # The per-request limits, checked before any decode or resize.
            admit = self.preprocessor.check_request if self.encoded else self.preprocessor.check_frames
            outcomes = self.preprocess_requests([self._images(r) for r in requests], self.crop, admit=admit)
        finally:
            self.release.idle()
        responses = []
        for outcome in outcomes:
            if isinstance(outcome, np.ndarray):
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, outcome)]))
            else:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(outcome))))
        return responses
