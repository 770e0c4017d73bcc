"""How the import command ends badly (``ImportFailed``: one line, exit 2; ``Interrupted``: Ctrl-C) and
where it lists failed items."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SHOWN_WITHOUT_A_FILE = 10


class ImportFailed(Exception):
    """The import could not run at all (a bad flag, no such library, the API refused it or is not there)."""


class Interrupted(Exception):
    """Ctrl-C: the batches in flight finished; ``message`` says how to go on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def write_failures(failures: list[dict[str, Any]], given: str | None, *, default: Path | None) -> str:
    """Writes the failed items (JSONL) to ``given``, else to ``default``; where they are. With neither
    (an import through --api with no --results), the first few go to stderr and nothing is written."""
    path = Path(given) if given else default
    if path is None:
        for failure in failures[:SHOWN_WITHOUT_A_FILE]:
            print(f"  {failure.get('item')}: {failure.get('message')}", file=sys.stderr)
        more = len(failures) - SHOWN_WITHOUT_A_FILE
        return "the lines above" + (f" ({more} more: add --results FILE to keep them all)" if more > 0 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for failure in failures:
            out.write(json.dumps(failure, ensure_ascii=False) + "\n")
    return str(path)
