"""``python -m runtime duplicates LIBRARY --api URL``: print the groups of duplicates a library holds
(``GET /libraries/{name}/duplicates``, every page), one group a block: its tier, the keeper, the others.

Exit 0 when the library holds none, 1 when it holds some, 2 when the API refused or is not there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

PAGE = 100


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "duplicates", help="print the duplicates a library holds", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("library", help="the library to scan")
    parser.add_argument("--api", required=True, help="base URL of a running API")
    parser.add_argument("--threshold", type=float, help="also group similar images scoring at or above this, 0 to 1")
    parser.add_argument("--sigv4", action="store_true", help="sign requests with your AWS credentials")
    parser.add_argument("--region", help="AWS Region of the API, for --sigv4 (default: your AWS configuration's)")
    parser.add_argument("--api-key", help="the API key of a deployment with API_KEY authorization")


def run(args: argparse.Namespace) -> int:
    from runtime.client import Client, Unreachable

    try:
        api = Client(args.api, sigv4=args.sigv4, region=args.region, api_key=args.api_key)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        found = 0
        for group in groups_of(api, args.library, args.threshold):
            found += 1
            print(group_text(group))
        print(f"{found} group{'s' if found != 1 else ''} of duplicates in library {args.library!r}")
        return 1 if found else 0
    except (Unreachable, Refused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        api.close()


class Refused(Exception):
    """The API answered the scan with an error."""


def groups_of(api: Any, library: str, threshold: float | None) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        query: dict[str, Any] = {"limit": PAGE, **({"threshold": threshold} if threshold is not None else {})}
        if token:
            query["next_token"] = token
        answer = api.call("GET", f"/libraries/{quote(library, safe='')}/duplicates?{urlencode(query)}")
        body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
        if answer.status_code != 200:
            raise Refused(body.get("message") or f"HTTP {answer.status_code}")
        yield from body["groups"]
        token = body.get("next_token")
        if not token:
            return


def group_text(group: dict[str, Any]) -> str:
    lines = [f"{group['tier']}: keep {image_text(group['keeper'])}"]
    lines += [f"  duplicate {image_text(other)}" for other in group["others"]]
    return "\n".join(lines)


def image_text(image: dict[str, Any]) -> str:
    size = f" {image['width']}x{image['height']}" if image.get("width") else ""
    return f"{image['id']}{size}"
