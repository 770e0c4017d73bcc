"""``python -m runtime serve | import | duplicates | export | restore``: the commands and their dispatch.
(Baking a model folder: ``python -m runtime.bake``.) Each command's module imports nothing heavy until its
flags are checked."""

from __future__ import annotations

import argparse

from runtime.cli import duplicates, export, imports, serve
from runtime.cli.parsing import PROG, OneLineParser


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Image Similarity API, locally.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    serve.add_parser(commands)
    imports.add_parser(commands)
    duplicates.add_parser(commands)
    export.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve.run(args)
    if args.command == "duplicates":
        return duplicates.run(args)
    if args.command in ("export", "restore"):
        return export.run(args)
    return imports.run(args)
