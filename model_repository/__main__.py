"""python -m model_repository list|remove NAME...|upgrade [--repository DIR]

list: the installed models and the shared steps each calls. remove: a model's own directories, and
the shared steps no remaining model calls (model_repository/install.py); nothing else changes.
upgrade: every installed model rewritten with this checkout's configs and step code, from its own
exported network (no conversion), all at once; after a `git pull` that changed them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import catalog
from model_repository import install

DEFAULT_REPOSITORY = Path("build/model_repository/portable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_repository", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("list", "remove", "upgrade"))
    parser.add_argument("names", nargs="*", metavar="NAME", help="catalog names (remove)")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in install.installed_models(args.repository):
            steps = install.referenced_models(args.repository, [name])
            print(f"{name}: {', '.join(steps)}")
        return 0
    if args.command == "upgrade":
        try:
            print(f"upgraded {', '.join(install.upgrade(args.repository))} in {args.repository}")
        except (FileNotFoundError, FileExistsError, ValueError, OSError) as err:
            print(f"error: {err}; {args.repository} was left as it was", file=sys.stderr)
            return 1
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
