"""A one-instance Python model that sleeps as long as asked: a busy step stand-in for queue tests.

Shared by server/test_overload.py (load shedding, a dead step) and server/test_interactive_priority.py
(the interactive priority level); `PlainServer` serves such a repository as it is.
"""

from __future__ import annotations

from model_repository import configs
from model_repository.server import TritonServer

QUEUE_SIZE, TIMEOUT_US = 2, configs.QUEUE_TIMEOUT_FLOOR_US
SLEEPER_PY = """
import time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            ms = pb_utils.get_input_tensor_by_name(request, "MS").as_numpy()
            time.sleep(float(ms.flat[0]) / 1000.0)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", ms.astype(np.int32))]))
        return responses
"""


def sleeper_config() -> configs.ConfigDict:
    policy = configs.queue_policy("preprocess", TIMEOUT_US) | {"max_queue_size": QUEUE_SIZE}
    return {
        "name": "sleeper",
        "backend": "python",
        "max_batch_size": 1,
        "input": [{"name": "MS", "data_type": "TYPE_INT32", "dims": [1]}],
        "output": [{"name": "OUT", "data_type": "TYPE_INT32", "dims": [1]}],
        "dynamic_batching": {"default_queue_policy": policy},
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
    }


class PlainServer(TritonServer):
    """TritonServer on a repository as it is (no catalog models to select or size)."""

    def _render(self) -> None:
        self._serving_dir = self.repository
        self.serving = {"models": ["sleeper"], "cores": 1, "layout": {}}

    def _remove_serving_copy(self) -> None:
        self._serving_dir = None
