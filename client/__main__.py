"""python -m client classify PATH... --model NAME [--url HOST:PORT] [--protocol grpc|http] [--top-k K] [--json]
    [--deadline SECONDS] [--retries N] [--preprocess server|local]
python -m client evaluate LIST [--root DIR] --model NAME [--url HOST:PORT] [--json FILE] [--resume FILE]
    [--against HOST:PORT/MODEL] (see client/evaluate.py)
python -m client smoke --url HOST:PORT [--model NAME ...] (a real photograph through each ensemble, answers
    checked; the Helm chart's test pod runs it; see client/smoke.py)

Files and folders (searched recursively for image files); images travel in batches of up to 8 per
request, several requests in flight at once. If a batch is refused (one bad file), its images are
retried one by one so that only the bad file fails. Each request has a deadline (default 10 s) and
is tried again, after a jittered pause, only when the server shed it as overloaded or could not be
reached (default 2 more tries); a batch that still fails is reported, never split. --preprocess local
decodes, resizes and crops here (the server's own code and parameters) and sends the crops to
`<model>_crop`: the same answers, with the CPU work on this machine. Exit status: 0
when every image was classified, 1 when any failed, 2 when the server or model is unavailable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from client.cli import add_transport_arguments, classify_command
from client.evaluate import add_evaluate_parser, evaluate_command
from client.smoke import add_smoke_parser, smoke_command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__.split("\n\n")[1])
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", help="classify image files or folders")
    classify.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    classify.add_argument("--model", required=True, help="ensemble name, e.g. nextvit_small_224")
    classify.add_argument("--url", help="server address (default 127.0.0.1:8001 for grpc, :8000 for http)")
    classify.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    classify.add_argument("--top-k", type=int, default=5, choices=range(1, 6), metavar="{1..5}")
    classify.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_transport_arguments(classify)
    add_evaluate_parser(commands)
    add_smoke_parser(commands)
    return parser.parse_args(argv)


COMMANDS = {"classify": classify_command, "evaluate": evaluate_command, "smoke": smoke_command}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
