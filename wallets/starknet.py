"""Starknet values as PayGo keeps and compares them: field elements (addresses, transaction hashes)
written "0x" + 64 lower-case hex digits.

A field element is a number: "0xABC", "0xabc" and "0x" + 61 zeros + "abc" are one address (or one
transaction), so every comparison goes through the one spelling below.
"""

from __future__ import annotations

import re

# Every Starknet value is a number below this prime (and an address or a hash is never zero).
STARKNET_PRIME = 2**251 + 17 * 2**192 + 1
_HEX = re.compile(r"0x[0-9a-f]{1,64}")


def felt_canonical(value: object) -> str | None:
    """`value` written "0x" + 64 lower-case hex digits, or None when it is not a Starknet value:
    not text, not "0x" and 1 to 64 hex digits (any case, spaces around allowed), zero, or past the
    field."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if not _HEX.fullmatch(text):
        return None
    number = int(text, 16)
    return f"0x{number:064x}" if 0 < number < STARKNET_PRIME else None


def address_normalize(address: object) -> str | None:
    """A wallet address as PayGo stores and compares it ("0x" + 64 lower-case hex digits), or None
    when `address` is not one."""
    return felt_canonical(address)


def tx_hash_canonical(tx_hash: object) -> str | None:
    """A transaction hash as Chipi and the chain write it, "0x" + 64 lower-case hex digits, or None
    when `tx_hash` is not one. It is a number: "0xABC" and "0x" + 61 zeros + "abc" are the same
    transaction; zero and numbers past the field are none."""
    return felt_canonical(tx_hash)
