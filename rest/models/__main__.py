"""`python -m rest.models build NAME...`: prebuild built-in models into the cache (e.g. in a Docker image or
before starting Ray, so actors do not all wait on the first build). `python -m rest.models list` names them."""

from __future__ import annotations

import argparse
import time

from rest.models.cache import BUILTIN_MODELS, model_cache_dir, resolve_model_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rest.models", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build (or find) models in the cache and print their directories")
    build.add_argument("names", nargs="+", metavar="NAME", help=f"one of {BUILTIN_MODELS.names()} or a path/hub id")
    commands.add_parser("list", help="list built-in model names and the cache directory")
    args = parser.parse_args(argv)

    if args.command == "list":
        print(f"cache: {model_cache_dir()}")
        for name in BUILTIN_MODELS.names():
            print(name)
        return
    for name in args.names:
        start = time.perf_counter()
        try:
            path = resolve_model_path(name)
        except (ValueError, FileNotFoundError, RuntimeError) as error:
            parser.exit(1, f"error: {error}\n")
        print(f"{name}\t{path}\t({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
