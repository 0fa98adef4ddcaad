"""python -m model_repository list|remove NAME...|render [--repository DIR]

list: the installed models and the shared steps each calls. remove: a model's own directories, and
the shared steps no remaining model calls (model_repository/install.py); nothing else changes.
render: a serving copy with every config rendered for a node (model_repository/layout.py; --help).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import catalog
from model_repository import install, layout

DEFAULT_REPOSITORY = Path("build/model_repository/portable")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["render"]:
        return layout.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m model_repository", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("list", "remove", "render"))
    parser.add_argument("names", nargs="*", metavar="NAME", help="catalog names (remove)")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in install.installed_models(args.repository):
            steps = install.referenced_models([name])
            print(f"{name}: {', '.join(steps)}")
        return 0
    if not args.names:
        parser.error("remove needs at least one NAME")
    try:
        for name in args.names:
            removed = install.remove(catalog.get(name), args.repository)
            print(f"removed {', '.join(removed)}")
    except (catalog.UnknownModelError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
