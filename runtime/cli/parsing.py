"""What every command's flags share: one-line refusals and help that keeps its line breaks."""

from __future__ import annotations

import argparse
from typing import NoReturn

PROG = "python -m runtime"


class OneLineParser(argparse.ArgumentParser):
    """Refuses a bad flag in one line (argparse would print the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks; each flag's help says its default itself."""
