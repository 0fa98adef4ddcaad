"""`make demo`: export a model if needed, start a local tritonserver, classify the sample photos, stop.

python -m demo [--model NextViT_small_224] [--repository DIR] [--http-port ...]

The one place that uses every package at once (export, the server launcher, the client), so it lives
beside them rather than inside any: the client stays free of the server side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import catalog
from catalog.reference import sample_photo_paths
from client.classify import Classifier, ClientError
from client.cli import classify_files, print_outcomes
from model_repository.install import installed_models
from model_repository.server import ServerError, TritonServer


def ensure_exported(entry: catalog.ModelEntry, repository: Path) -> None:
    if entry.triton_name in installed_models(repository):
        print(f"{entry.name} is already in {repository} (make clean to re-export)")
        return
    from export.pipeline import Source, export_model

    source = Source("random", seed=0)
    print(f"WARNING: exporting {entry.name} with {source.describe()} (no pretrained weights offline)")
    export_model(entry, source, repository, "portable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="NextViT_small_224")
    parser.add_argument("--repository", type=Path, default=Path("build/model_repository/portable"))
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args(argv)
    entry = catalog.get(args.model)
    ensure_exported(entry, args.repository)
    log = args.repository.parent / "demo-tritonserver.log"
    server = TritonServer(args.repository, args.http_port, args.grpc_port, args.metrics_port, log_path=log)
    print(f"starting tritonserver on gRPC {server.grpc_url} (log: {log})")
    try:
        with server, Classifier(server.grpc_url, entry.triton_name, "grpc") as classifier:
            parameters = classifier.check_ready()
            print(f"{entry.triton_name} is ready; weights: {parameters.get('weights', 'unknown')}\n")
            outcomes = classify_files(classifier, sample_photo_paths(), batch_size=8, concurrency=2)
    except (ServerError, ClientError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print_outcomes(outcomes, top_k=5, as_json=False)
    print("\ntritonserver stopped.")
    return 0 if all(not isinstance(result, str) for _, result in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
