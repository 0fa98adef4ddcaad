"""Triton Python model: the exported ONNX network run by ONNX Runtime on CPU ("portable" variant).

The production variant serves the same model.onnx with Triton's onnxruntime backend; this model
exists because the Triton build available without containers has only the Python backend.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params["intra_op_threads"])
        options.inter_op_num_threads = 1
        # Idle intra-op threads busy-wait by default; with several instances sharing the cores,
        # that spinning takes the cores the other instances need (configs.py, perf-tune evidence).
        spinning = params.get("intra_op_spinning", "1")
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        model_path = Path(args["model_repository"]) / args["model_version"] / params["onnx_file"]
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list) -> list:
        # All queued requests run as one batch, then the result is split back per request.
        inputs = [pb_utils.get_input_tensor_by_name(r, "NORMALIZED_IMAGE").as_numpy() for r in requests]
        try:
            (probabilities,) = self.session.run(["PROBABILITIES"], {"NORMALIZED_IMAGE": np.concatenate(inputs)})
        except Exception as err:
            error = pb_utils.TritonError(f"ONNX Runtime failed: {err}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        splits = np.cumsum([len(x) for x in inputs])[:-1]
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("PROBABILITIES", part)])
            for part in np.split(probabilities, splits)
        ]
