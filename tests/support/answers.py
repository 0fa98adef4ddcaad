"""What a served ensemble answers, in a form two servers' answers can be compared by (tests of serving tiers)."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient


def encoded(datas: list[bytes] | tuple[bytes, ...]) -> np.ndarray:
    """Encoded images as an IMAGE tensor's array: one bytes element per image, N x 1."""
    return np.array([[data] for data in datas], dtype=object)


def top_k(client: grpcclient.InferenceServerClient, model: str, name: str, array: np.ndarray) -> tuple[list, list]:
    """The class ids and scores `model` answers for `array` sent as input `name` (IMAGE: encoded, else uint8)."""
    tensor = grpcclient.InferInput(name, list(array.shape), "BYTES" if name == "IMAGE" else "UINT8")
    tensor.set_data_from_numpy(array)
    result = client.infer(model, [tensor])
    return result.as_numpy("CLASS_IDS").tolist(), result.as_numpy("SCORES").tolist()
