"""``python -m runtime export | restore``: a library to a JSONL file, and a JSONL file into a library.

    python -m runtime export NAME [--out FILE]          the library's export (default: stdout)
    python -m runtime restore FILE [--library NAME]     the export into a library (default: its own name)

Both run directly on a data directory (default, ``--data-dir``; the server must not be running on
it) or against a running API (``--api URL``; ``--sigv4`` or ``--api-key`` for a deployed one), as
``import`` does. No model is loaded: a restore takes the vectors as they are
(``runtime.libraries.export``). Through the API a restore is sent in parts of ``PART_LINES`` lines
(the header line first in each), each one request within the server's body limit.

Exit codes: 0; 1 when lines failed or the export was cut off (its end line missing); 2 when it could
not run (a bad flag, no such library, another model's library, a server that does not answer).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from runtime.cli.failures import ImportFailed, write_failures

PART_LINES = 2000
"""Image lines per request of a restore through the API: a few MB of vectors (512 float32 each)."""


def add_parsers(commands: Any) -> None:
    export = commands.add_parser("export", help="write a library to a JSONL file", description=__doc__.split("\n\n")[0])
    export.add_argument("library", help="the library to export")
    export.add_argument("--out", metavar="FILE", help="where to write it (default: stdout)")
    connection_flags(export)
    restore = commands.add_parser(
        "restore", help="restore an export into a library", description=__doc__.split("\n\n")[0]
    )
    restore.add_argument("file", help="the export (a JSONL file written by export)")
    restore.add_argument("--library", help="the library to restore into (default: the export's own name)")
    restore.add_argument("--results", metavar="FILE", help="where to list the failed lines, if any")
    connection_flags(restore)


def connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", help="base URL of a running API (default: directly on --data-dir)")
    parser.add_argument("--sigv4", action="store_true", help="sign requests to --api with your AWS credentials")
    parser.add_argument("--region", help="AWS Region of the API, for --sigv4 (default: your AWS configuration's)")
    parser.add_argument("--api-key", help="the API key of a deployment with API_KEY authorization")
    parser.add_argument("--data-dir", help="the data directory (default ./data)")


def run(args: argparse.Namespace) -> int:
    try:
        check_flags(args)
        if args.command == "export":
            return export(args)
        return restore(args)
    except ImportFailed as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2


def check_flags(args: argparse.Namespace) -> None:
    from runtime.errors import ApiError
    from runtime.libraries.names import check_library_name

    if args.api and args.data_dir:
        raise ImportFailed("--data-dir: with --api the library is the server's")
    if not args.api and (args.sigv4 or args.api_key or args.region):
        raise ImportFailed("--sigv4, --api-key and --region go with --api")
    name = args.library
    try:
        if name is not None:
            args.library = check_library_name(name)
    except ApiError as exc:
        raise ImportFailed(
            exc.message.replace("name: ", "--library: " if args.command == "restore" else "", 1)
        ) from exc
    if args.command == "restore" and not Path(args.file).is_file():
        raise ImportFailed(f"{args.file}: no such file")


# --- export ------------------------------------------------------------------------------------


def export(args: argparse.Namespace) -> int:
    with output(args.out) as out:
        if args.api:
            count = export_through_api(args, out)
        else:
            count = export_directly(args, out)
    if args.out:
        print(f"exported {count} image(s) of {args.library!r} to {args.out}", file=sys.stderr)
    return 0


@contextmanager
def output(path: str | None) -> Iterator[IO[bytes]]:
    """The file (written in full, or removed: a half export is never left under its name), or stdout."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    try:
        with open(partial, "wb") as out:
            yield out
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def export_directly(args: argparse.Namespace, out: IO[bytes]) -> int:
    from runtime.errors import ApiError
    from runtime.libraries.export import export_lines

    store = local_store(args, dimension=0)  # an export adds nothing: the store's own dimension is unused
    try:
        return written(export_lines(store, args.library), out)
    except ApiError as exc:
        raise ImportFailed(exc.message) from exc
    finally:
        store.close()


def export_through_api(args: argparse.Namespace, out: IO[bytes]) -> int:
    from runtime.cli.api_imports import answer_of, client_of
    from runtime.client import Unreachable

    api = client_of(args)
    try:
        with api.streamed(f"/libraries/{args.library}/export") as answer:
            if answer.status_code != 200:
                answer.read()
                raise ImportFailed(answer_of(answer).get("message", f"HTTP {answer.status_code}"))
            return written(lines_of(answer.iter_bytes()), out)
    except Unreachable as exc:
        raise ImportFailed(str(exc)) from exc
    finally:
        api.close()


def written(lines: Iterator[bytes], out: IO[bytes]) -> int:
    """Writes the export's lines; how many images it held (its end line says; none: it was cut off)."""
    end = None
    for line in lines:
        out.write(line)
        if line.startswith(b'{"format_end"'):
            end = json.loads(line)
    if end is None:
        raise ImportFailed("the export stopped before its end line (the server or the store failed); run it again")
    return int(end["images"])


def lines_of(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole lines (with their ``\\n``) out of a stream's chunks."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending


# --- restore -----------------------------------------------------------------------------------


def restore(args: argparse.Namespace) -> int:
    from runtime.errors import ApiError

    try:
        body = restore_through_api(args) if args.api else restore_directly(args)
    except ApiError as exc:
        raise ImportFailed(exc.message) from exc
    counts = body["counts"]
    made = " (created)" if body["created"] else ""
    print(
        f"restore into {body['library']!r}{made}: added {counts['added']}, already present "
        f"{counts['already_present']}, failed {counts['failed']}"
    )
    failures = body["failures"]
    if failures:
        where = write_failures([{"item": f"line {one['line']}", **one} for one in failures], args.results, default=None)
        print(f"{len(failures)} failed line(s) listed in {where}")
    if not body["complete"]:
        print(f"warning: {args.file} has no end line: it was cut off, so images may be missing", file=sys.stderr)
    return 1 if failures or not body["complete"] else 0


def restore_directly(args: argparse.Namespace) -> dict[str, Any]:
    from runtime.libraries.export import read_header, restore

    with open(args.file, "rb") as lines:
        header = read_header(first_line(lines))
    store = local_store(args, dimension=header.dimension)
    try:
        with open(args.file, "rb") as lines:
            return restore(store, lines, library=args.library).body()
    finally:
        store.close()


def first_line(lines: IO[bytes]) -> bytes:
    for line in lines:
        if line.strip():
            return line
    return b""


def restore_through_api(args: argparse.Namespace) -> dict[str, Any]:
    """The export in parts, each one request: the header line, then ``PART_LINES`` image lines."""
    from runtime.cli.api_imports import answer_of, client_of
    from runtime.client import Unreachable
    from runtime.libraries.export import read_header

    api = client_of(args)
    total: dict[str, Any] | None = None
    try:
        with open(args.file, "rb") as lines:
            header = first_line(lines)
            name = args.library or read_header(header).name
            for first, part in parts(lines):
                answer = api.post_lines(
                    f"/libraries/{name}/restore", header + b"".join(part), {"first_line": first - 1}
                )
                body = answer_of(answer)
                if answer.status_code != 200:
                    raise ImportFailed(body.get("message", f"HTTP {answer.status_code}"))
                total = body if total is None else merged(total, body)
    except Unreachable as exc:
        raise ImportFailed(str(exc)) from exc
    finally:
        api.close()
    assert total is not None
    return total


def parts(lines: IO[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """``PART_LINES`` lines at a time after the header, each with its first line's number (at least one
    part, so an export of no image still creates its library)."""
    number, part, first = 2, [], 2
    for line in lines:
        if not line.endswith(b"\n"):
            line += b"\n"
        part.append(line)
        number += 1
        if len(part) == PART_LINES:
            yield first, part
            part, first = [], number
    yield first, part


def merged(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    counts = {name: total["counts"][name] + part["counts"][name] for name in total["counts"]}
    return {
        **total,
        "complete": total["complete"] or part["complete"],
        "counts": counts,
        "failures": total["failures"] + part["failures"],
    }


def local_store(args: argparse.Namespace, *, dimension: int) -> Any:
    from runtime.errors import SettingsError
    from runtime.libraries.local import LocalStore
    from runtime.settings import Settings

    try:
        settings = Settings.from_env(labels={"data_dir": "--data-dir"}, data_dir=args.data_dir)
    except SettingsError as exc:
        raise ImportFailed(str(exc)) from exc
    return LocalStore(settings, dimension)
