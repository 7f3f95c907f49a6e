"""The tokens PayGo prices and pays in, and their decimals: the one list every app reads.

Amounts of a token are stored as integers of its minor unit (10**-decimals of a whole token).
"""

from __future__ import annotations

TOKENS: dict[str, int] = {"USDC": 6, "USDT": 6, "ETH": 18, "STRK": 18}
DEFAULT_TOKEN = "USDC"
TOKEN_CHOICES: list[tuple[str, str]] = [(symbol, symbol) for symbol in TOKENS]
MAX_DECIMALS = max(TOKENS.values())


def decimals_of(token: str) -> int:
    """The decimals of a supported token; KeyError for any other."""
    try:
        return TOKENS[token]
    except (KeyError, TypeError):
        raise KeyError(f"Unknown token {token!r}; supported: {', '.join(TOKENS)}.") from None
