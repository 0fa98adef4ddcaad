"""python -m model_repository serve|render|list|remove|health: the package's one command line.

serve: tritonserver on an installed repository, in the foreground (what `make serve` runs;
model_repository/serve.py). render: a serving copy with every config rendered from configs.py for a
node (model_repository/layout.py), for object storage and the chart's init container. list: the
installed models and the shared steps each calls. remove: a model's own directories, and the shared
steps no remaining model calls (model_repository/install.py); nothing else changes. health: the
chart's liveness check (model_repository/health.py).

Each subcommand's module is imported only when it runs: `health` is the kubelet's probe, every few
seconds, and stays on the standard library.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from model_repository.paths import DEFAULT_REPOSITORY

# Subcommands whose module parses its own flags: name -> (module with main(argv), one line of help).
DELEGATED = {
    "serve": ("model_repository.serve", "start tritonserver on an installed repository (make serve)"),
    "render": ("model_repository.layout", "write a serving copy with every config rendered for a node"),
    "health": ("model_repository.health", "liveness: tritonserver and every Python step process it needs running"),
}
REPOSITORY_COMMANDS = ("list", "remove")


def repository_command(command: str, argv: list[str]) -> int:
    """list and remove of an installed repository."""
    import catalog
    from model_repository import install

    parser = argparse.ArgumentParser(prog=f"python -m model_repository {command}")
    if command == "remove":
        parser.add_argument("names", nargs="+", metavar="NAME", help="catalog names")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args(argv)
    if command == "list":
        for name in install.installed_models(args.repository):
            print(f"{name}: {', '.join(install.referenced_models([name]))}")
        return 0
    try:
        for name in args.names:
            removed = install.remove(catalog.get(name), args.repository)
            print(f"removed {', '.join(removed)}")
    except (catalog.UnknownModelError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = [*DELEGATED, *REPOSITORY_COMMANDS]
    if not argv or argv[0] not in commands:
        parser = argparse.ArgumentParser(prog="python -m model_repository", description=__doc__.split("\n\n")[0])
        parser.add_argument("command", choices=commands, help=", ".join(f"{k}: {v[1]}" for k, v in DELEGATED.items()))
        parser.parse_args(argv[:1])  # prints the usage, or the choices for an unknown command
        return 2
    command, rest = argv[0], argv[1:]
    if command in DELEGATED:
        return importlib.import_module(DELEGATED[command][0]).main(rest)
    return repository_command(command, rest)


if __name__ == "__main__":
    sys.exit(main())
