"""JSON limits, checked before the app parses a body: how many values it may hold, integers longer
than Python parses, and strings that are not text (a lone surrogate, ``"\\ud800"``: valid JSON that
no answer, log line or record could write back). ``runtime.api.middleware.BodySizeLimit`` applies
them to JSON bodies, ``runtime.api.bodies`` to the JSON text parts of an upload.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import BadRequest
from runtime.libraries.values import LONE_SURROGATE, unwritable_field


def json_refusal(body: bytes, max_values: int) -> BadRequest | None:
    """A 400 for a JSON body with more than ``max_values`` values (0: no bound), an integer longer
    than Python parses, or a lone surrogate in a string; None when none holds."""
    shape = json_shape(body)
    if max_values and shape.values_bound > max_values:
        return BadRequest(
            f"request body: more than {max_values} JSON values; no request to this API needs that many",
            code="json_too_large",
        )
    refusal = overlong_integer(body) if shape.long_digit_run else None
    return refusal or (lone_surrogate(body) if may_hold_surrogate(body) else None)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def may_hold_surrogate(body: bytes) -> bool:
    """Whether ``body`` holds the escape of a surrogate (a valid pair holds two); only such a body is
    parsed to look. Most bodies hold no backslash at all: a byte search (0.3 ms over a 7 MB image's
    JSON) spares them the pattern search (13 ms)."""
    return body.find(b"\\") != -1 and _SURROGATE_ESCAPE.search(body) is not None


def lone_surrogate(body: bytes) -> BadRequest | None:
    """A 400 naming the field whose string holds a lone surrogate, if any."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: the usual parsing answers
    return surrogate_refusal(document, "")


def surrogate_refusal(value: Any, where: str) -> BadRequest | None:
    field = unwritable_field(value, where)
    return BadRequest(f"{field}: {LONE_SURROGATE}", code="invalid_value") if field is not None else None


@dataclass(frozen=True)
class JsonShape:
    values_bound: int
    """An upper bound on the number of values: every value after the first in an array or object
    follows a comma, and every array or object opens with a bracket; commas and brackets inside
    strings only make the bound looser."""
    long_digit_run: bool
    """Holds a run of digits longer than Python turns into an int (json.loads then fails without
    saying where, so the body is parsed again to name the field)."""


# Python refuses to turn longer digit strings into ints (quadratic time).
MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300
_LONG_DIGIT_RUN = b"0" * (MAX_INT_DIGITS + 1)
_DIGITS_AS_ZEROS = bytes(ord("0") if chr(byte) in "0123456789" else ord(" ") for byte in range(256))


def json_shape(body: bytes) -> JsonShape:
    """Both checks in about 3 ms over a 12 MP photo's JSON (a regex and three counts took 140)."""
    return JsonShape(values_bound=value_starts(body) + 1, long_digit_run=has_long_digit_run(body))


def value_starts(body: bytes) -> int:
    """How many bytes are a comma or an opening bracket, in one pass of byte-wise OR: ``[`` (0x5B) and
    ``{`` (0x7B) become 0x7B, ``,`` (0x2C) stays 0x2C. A form feed (0x0C) is counted as a comma too; it
    is not JSON outside a string, nor allowed unescaped inside one, so it only loosens the bound."""
    folded = np.frombuffer(body, dtype=np.uint8) | 0x20
    return int(np.count_nonzero(folded == 0x7B)) + int(np.count_nonzero(folded == 0x2C))


def has_long_digit_run(body: bytes) -> bool:
    """Whether ``body`` holds more than MAX_INT_DIGITS digits in a row.

    Such a run covers two consecutive multiples of ``step`` (half the limit), so only the bytes at
    those positions are looked at first; a window around each pair of digits found there is then
    searched in full (it holds the whole run, or more than the limit of it).
    """
    step = MAX_INT_DIGITS // 2
    samples = body[::step].translate(_DIGITS_AS_ZEROS)
    pair = samples.find(b"00")
    while pair != -1:
        window = body[max(0, (pair - 2) * step) : (pair + 3) * step + 1]
        if _LONG_DIGIT_RUN in window.translate(_DIGITS_AS_ZEROS):
            return True
        pair = samples.find(b"00", pair + 1)
    return False


def json_values_bound(body: bytes) -> int:
    return json_shape(body).values_bound


class _Overlong:
    def __init__(self, digits: int):
        self.digits = digits


def overlong_integer(body: bytes) -> BadRequest | None:
    """A 400 naming the field that holds a JSON integer longer than Python parses, if any."""

    def parse_int(text: str) -> Any:
        digits = len(text.lstrip("-"))
        return _Overlong(digits) if digits > MAX_INT_DIGITS else int(text)

    try:
        document = json.loads(body, parse_int=parse_int)
    except (ValueError, RecursionError):
        return None  # not JSON (or the digits were elsewhere): the usual parsing answers
    found = _find_overlong(document)
    if found is None:
        return None
    field, number = found
    return BadRequest(
        f"{field or 'request body'}: a number of {number.digits} digits; numbers have at most {MAX_INT_DIGITS}",
        code="invalid_value",
    )


def _find_overlong(document: Any) -> tuple[str, _Overlong] | None:
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, _Overlong):
            return path, value
        if isinstance(value, dict):
            pending.extend((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None
