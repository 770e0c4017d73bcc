"""The command line: ``python -m runtime serve`` (serve.py) and ``python -m runtime import`` (imports.py)."""

from runtime.cli.commands import main

__all__ = ["main"]
