"""Triton Python model: PROBABILITIES -> the top-k LABELS, SCORES and CLASS_IDS, best first.

One instance set serves every catalog model: all of them classify the same 1000 ImageNet classes.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        (self.input_name,) = (tensor["name"] for tensor in config["input"])
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
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("LABELS", labels),
                        pb_utils.Tensor("SCORES", scores.astype(np.float32)),
                        pb_utils.Tensor("CLASS_IDS", class_ids.astype(np.int64)),
                    ]
                )
            )
        return responses
