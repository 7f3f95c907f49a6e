"""Text the database cannot store is found wherever it hides in a string or in nested JSON."""

from __future__ import annotations

import pytest
from rest_framework.exceptions import ValidationError

from paygo.api.text import contains_nul, validate_storable_text


@pytest.mark.parametrize(
    "value",
    ["\x00", "a\x00b", ["ok", "\x00"], {"k\x00": 1}, {"k": {"deeper": [{"x": "\x00"}]}}, ("t", "\x00")],
)
def test_nul_is_found_in_strings_keys_and_nested_values(value):
    assert contains_nul(value)
    with pytest.raises(ValidationError) as refused:
        validate_storable_text(value)
    assert refused.value.detail == ["Must not contain the NUL character."]


@pytest.mark.parametrize("value", [None, 0, 1.5, True, "", "plain", "😀 ünïcode", {"a": [1, None, {"b": "c"}]}, [], {}])
def test_storable_values_pass(value):
    assert not contains_nul(value)
    validate_storable_text(value)


def test_json_nested_past_the_recursion_limit_is_walked():
    value: list = ["\x00"]
    for _ in range(100_000):
        value = [value]

    assert contains_nul(value)
