"""The body checks of runtime/api/json_limits.py (middleware.py applies them), on the bytes alone
(the served answers are in test_error_contract.py and tests/hardening)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.api.json_limits import MAX_INT_DIGITS, json_refusal, json_shape, value_starts


@pytest.mark.parametrize(
    ("document", "values"),
    [({"img": "abc"}, 2), ({"inputs": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}, 7), ([[[]]], 3), ("x,[{", 3)],
)
def test_the_values_bound_is_never_below_the_real_count(document, values):
    assert json_shape(json.dumps(document).encode()).values_bound >= values


def test_the_value_starts_are_every_comma_and_opening_bracket_of_any_bytes():
    body = bytes(range(256)) * 3 + b"[{,]}" + bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8))
    loosened = body.count(b"\x0c")  # a form feed is counted as a comma (it is not JSON outside a string)
    assert value_starts(body) == body.count(b",") + body.count(b"[") + body.count(b"{") + loosened


def test_only_a_digit_run_longer_than_python_parses_is_found():
    at_limit = b'{"n": ' + b"9" * MAX_INT_DIGITS + b"}"
    over = b'{"n": ' + b"9" * (MAX_INT_DIGITS + 1) + b"}"
    assert not json_shape(at_limit).long_digit_run
    assert json_shape(over).long_digit_run
    assert not json_shape(("\u0661" * 5000).encode()).long_digit_run  # Arabic-Indic digits: JSON numbers never are


def test_a_long_run_inside_a_string_is_no_refusal_and_one_in_a_number_names_its_field():
    assert json_refusal(json.dumps({"text": "7" * 5000}).encode(), max_values=0) is None
    refusal = json_refusal(b'{"metadata": {"sku": ' + b"7" * 5000 + b"}}", max_values=0)
    assert refusal is not None and refusal.code == "invalid_value" and "metadata.sku" in str(refusal)


def test_too_many_values_are_refused_before_anything_parses():
    refusal = json_refusal(json.dumps({"inputs": [0] * 100}).encode(), max_values=50)
    assert refusal is not None and refusal.code == "json_too_large"
    assert json_refusal(json.dumps({"inputs": [0] * 10}).encode(), max_values=50) is None


@pytest.mark.parametrize("length", [MAX_INT_DIGITS - 1, MAX_INT_DIGITS, MAX_INT_DIGITS + 1, 3 * MAX_INT_DIGITS])
@pytest.mark.parametrize("offset", [0, 1, 777, MAX_INT_DIGITS // 2 - 1, MAX_INT_DIGITS // 2, 5000])
def test_the_sampled_search_finds_a_run_wherever_it_starts(length, offset):
    body = b"a" * offset + b"5" * length + b"z" * 3000
    assert json_shape(body).long_digit_run == (length > MAX_INT_DIGITS)
