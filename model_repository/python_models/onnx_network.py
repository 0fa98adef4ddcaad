"""Triton Python model: the exported ONNX network run by ONNX Runtime on CPU ("portable" variant).

The production variant serves the same model.onnx with Triton's onnxruntime backend; this model
exists because the Triton build available without containers has only the Python backend.
Tensor names come from the model's config, like the onnxruntime backend reads them.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from cores import usable_cores  # model_repository/cores.py, copied beside this file


def intra_op_threads(configured: int, instances: int, cores: int) -> int:
    """configured > 0 is taken as is; 0 shares the usable cores evenly between the instances."""
    return configured if configured > 0 else max(1, cores // max(1, instances))


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        instances = sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads(int(params["intra_op_threads"]), instances, usable_cores())
        options.inter_op_num_threads = 1
        # Idle intra-op threads busy-wait by default; with several instances sharing the cores,
        # that spinning takes the cores the other instances need (configs.py, PORTABLE_NETWORK_INSTANCES).
        spinning = params.get("intra_op_spinning", "1")
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        model_path = Path(args["model_repository"]) / args["model_version"] / params["onnx_file"]
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        ((self.input_name,), (self.output_name,)) = ([t["name"] for t in config[k]] for k in ("input", "output"))

    def execute(self, requests: list) -> list:
        # All queued requests run as one batch, then the result is split back per request.
        inputs = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        try:
            (probabilities,) = self.session.run([self.output_name], {self.input_name: np.concatenate(inputs)})
        except Exception as err:
            error = pb_utils.TritonError(f"ONNX Runtime failed: {err}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        splits = np.cumsum([len(x) for x in inputs])[:-1]
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, part)])
            for part in np.split(probabilities, splits)
        ]
