"""``decode_base64``: one strict C pass for the usual unwrapped text, a second only for wrapped text, and
the same refusals as before (``invalid_base64`` / ``image_too_large`` naming the field)."""

from __future__ import annotations

import base64
import os

import pytest

from runtime.embedder import decode_base64
from runtime.errors import InvalidInput

DATA = os.urandom(30_000)


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(DATA).decode(),
        base64.encodebytes(DATA).decode(),  # MIME: a line break every 76 characters
        "data:image/jpeg;base64," + base64.b64encode(DATA).decode(),
        "  " + base64.b64encode(DATA).decode() + "\n",
        " ".join(base64.b64encode(DATA).decode()[i : i + 4] for i in range(0, 40_000, 4)),
    ],
    ids=["plain", "wrapped", "data-url", "padded-with-spaces", "spaced"],
)
def test_each_accepted_form_decodes_to_the_bytes(text):
    assert decode_base64(text, "img", 10**6) == DATA


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" \n ", "empty"),
        ("abc", "padding"),
        ("ab$d", "base64"),
        ("=abc", "padding"),
        ("abcd=abc", "padding"),
        ("abc===", "padding"),
        ("abcé", "non-ASCII"),
    ],
)
def test_bad_base64_is_refused_naming_the_field(text, reason):
    with pytest.raises(InvalidInput) as refused:
        decode_base64(text, "images[2].img", 10**6)
    assert refused.value.code == "invalid_base64"
    assert str(refused.value).startswith("images[2].img: ") and reason in str(refused.value)


def test_a_text_too_long_for_the_limit_is_refused_before_decoding():
    with pytest.raises(InvalidInput) as refused:
        decode_base64("$" * 4000, "img", 1000)  # not even base64: the length alone refuses it
    assert refused.value.code == "image_too_large"


def test_the_limit_is_on_the_image_not_on_the_whitespace_around_it():
    spaced = " ".join(base64.b64encode(DATA).decode()[i : i + 4] for i in range(0, 40_000, 4))
    assert len(spaced) * 3 // 4 > len(DATA)  # over the limit with its spaces, within it without
    assert decode_base64(spaced, "img", len(DATA)) == DATA
