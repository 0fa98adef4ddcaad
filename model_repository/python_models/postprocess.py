"""Triton Python model: PROBABILITIES -> the top-k LABELS, SCORES and CLASS_IDS, best first.

One instance set serves every catalog model: all of them classify the same 1000 ImageNet classes.
Tensor names and types come from the model's config (model_repository/configs.py): the outputs are
told apart by their type, one string (labels), one float (scores), one integer (class ids).
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

# Output data types in the order execute computes the values: labels, scores, class ids.
OUTPUT_ROLES = ("TYPE_STRING", "TYPE_FP32", "TYPE_INT64")


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        (self.input_name,) = (tensor["name"] for tensor in config["input"])
        outputs = {tensor["data_type"]: tensor["name"] for tensor in config["output"]}
        if len(outputs) != len(config["output"]) or set(outputs) != set(OUTPUT_ROLES):
            raise ValueError(f"{args['model_name']}: outputs must be one each of {sorted(OUTPUT_ROLES)}: {outputs}")
        # (name, numpy type) of each output, in the order execute computes them: labels, scores, class ids.
        self.outputs = [(outputs[kind], pb_utils.triton_string_to_numpy(kind)) for kind in OUTPUT_ROLES]
        self.top_k = int(params["top_k"])
        labels_path = Path(args["model_repository"]) / args["model_version"] / params["labels_file"]
        # One name per line, line number = class id (names repeat, so never key by name).
        self.labels = np.array(labels_path.read_text("utf-8").splitlines(), dtype=object)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            probabilities = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            # Stable sort: equal scores keep ascending class ids, so answers are reproducible.
            class_ids = np.argsort(-probabilities, axis=1, kind="stable")[:, : self.top_k]
            scores = np.take_along_axis(probabilities, class_ids, axis=1)
            labels = np.vectorize(lambda i: self.labels[i].encode("utf-8"), otypes=[object])(class_ids)
            tensors = [
                pb_utils.Tensor(name, values.astype(dtype))
                for (name, dtype), values in zip(self.outputs, (labels, scores, class_ids), strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(tensors))
        return responses
