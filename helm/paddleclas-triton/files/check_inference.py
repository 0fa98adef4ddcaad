"""``helm test`` check: the release answers a real classification over gRPC.

Runs in the Triton SDK image (tritonclient, numpy, Python 3.10) against the release's Service. It
waits for strict readiness, then sends every served ensemble (or the ones named) one PNG made here
with the standard library, and checks the answer's shape and order: TOP_K labels, scores falling.
Exits non-zero with one line per failure, which is what ``helm test`` reports.

Listing the repository index is a restricted API (model-repository): that one call carries the admin
key, read from the environment variable named by --admin-key-env (the chart fills it from the
release's Secret), as the gRPC metadata ``triton-grpc-protocol-admin-key``. Everything else it calls
(readiness, model config, inference) stays open and is sent without the key.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
import zlib

import numpy as np
import tritonclient.grpc as grpcclient

# tritonserver's gRPC restriction header: "triton-grpc-protocol-" + the key name of the flag.
ADMIN_HEADER = "triton-grpc-protocol-admin-key"


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    """A colour-gradient RGB PNG; no image library needed, and any decoder reads it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes(value for x in range(width) for value in (x * 4 % 256, y * 5 % 256, 128)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def wait_ready(client: grpcclient.InferenceServerClient, timeout_s: float) -> None:
    """Poll strict readiness (every model loaded) until the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.is_server_ready():
                return
        except Exception as error:
            last = error
        else:
            last = "server not ready"
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL server not ready after {timeout_s:.0f} s: {last}")
        time.sleep(2)


def ensembles(client: grpcclient.InferenceServerClient, admin_key: str = "") -> list[str]:
    """Served ensembles that take encoded images (IMAGE), read from the server's own configs.

    Selected by their input, not their name: each model also has a `<name>_pixels` ensemble for
    decoded frames, which takes PIXELS instead.
    """
    headers = {ADMIN_HEADER: admin_key} if admin_key else None
    try:
        index = client.get_model_repository_index(headers=headers, as_json=True)
    except Exception as error:
        hint = "" if admin_key else " (no admin key was given: set --admin-key-env to the variable holding it)"
        raise SystemExit(f"FAIL listing the repository index: {error}{hint}") from error
    names = []
    for entry in index.get("models", []):
        name = entry["name"]
        config = client.get_model_config(name, as_json=True)["config"]
        inputs = [tensor["name"] for tensor in config.get("input", [])]
        if config.get("platform") == "ensemble" and inputs == ["IMAGE"]:
            names.append(name)
    return sorted(names)


def classify(client: grpcclient.InferenceServerClient, model: str, image: bytes, top_k: int) -> list[str]:
    """One inference; returns the problems found (empty when the answer is right)."""
    config = client.get_model_config(model, as_json=True)["config"]
    batched = int(config.get("max_batch_size", 0)) > 0
    shape = [1, 1] if batched else [1]
    tensor = grpcclient.InferInput("IMAGE", shape, "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=np.object_).reshape(shape))
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("LABELS", "SCORES", "CLASS_IDS")]
    result = client.infer(model, [tensor], outputs=outputs)
    labels = result.as_numpy("LABELS").reshape(-1)
    scores = result.as_numpy("SCORES").reshape(-1).astype(np.float64)
    class_ids = result.as_numpy("CLASS_IDS").reshape(-1)
    problems = []
    if not len(labels) == len(scores) == len(class_ids) == top_k:
        problems.append(
            f"{model}: {len(labels)} labels, {len(scores)} scores, {len(class_ids)} ids; expected {top_k} of each"
        )
    if np.any(np.diff(scores) > 1e-6):
        problems.append(f"{model}: scores not in falling order: {scores.tolist()}")
    if any(not (label.decode() if isinstance(label, bytes) else str(label)) for label in labels):
        problems.append(f"{model}: an empty label")
    if not problems:
        top = labels[0].decode() if isinstance(labels[0], bytes) else str(labels[0])
        print(f"ok {model}: top-1 {top!r} ({scores[0]:.4f})", flush=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    """Wait, discover, classify; print one line per model and exit 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="HOST:PORT of the gRPC endpoint")
    parser.add_argument("--model", action="append", default=[], help="ensemble (repeatable)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument(
        "--admin-key-env",
        default="",
        help="environment variable holding the admin key of the restricted APIs (sent with the repository index call)",
    )
    args = parser.parse_args(argv)
    admin_key = os.environ.get(args.admin_key_env, "") if args.admin_key_env else ""
    client = grpcclient.InferenceServerClient(url=args.url)
    wait_ready(client, args.ready_timeout)
    models = args.model or ensembles(client, admin_key)
    if not models:
        print("FAIL the server lists no ensemble", flush=True)
        return 1
    image = png_bytes()
    problems = [p for model in models for p in classify(client, model, image, args.top_k)]
    for problem in problems:
        print("FAIL", problem, flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
