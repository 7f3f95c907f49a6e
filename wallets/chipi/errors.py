"""The errors every Chipi gateway raises, and what each tells the caller about the request's outcome."""

from __future__ import annotations


class ChipiError(Exception):
    """Base of every gateway error: `code` is Chipi's (or ours), `status` the HTTP status if any."""

    default_code = "chipi_error"

    def __init__(self, message: str = "", *, code: str | None = None, status: int | None = None):
        self.message = message or self.default_message()
        self.code = code or self.default_code
        self.status = status
        super().__init__(self.message)

    @classmethod
    def default_message(cls) -> str:
        return (cls.__doc__ or cls.__name__).strip().splitlines()[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class ChipiTimeout(ChipiError):
    """The outcome is unknown: the request may or may not have acted."""

    default_code = "timeout"


class ChipiRateLimited(ChipiError):
    """Chipi's rate limit (or ours) refused the request; nothing happened. Try again after retry_after."""

    default_code = "rate_limited"

    def __init__(
        self, message: str = "", *, retry_after: float = 1.0, code: str | None = None, status: int | None = 429
    ):
        self.retry_after = max(0.0, float(retry_after))
        super().__init__(message, code=code, status=status)


class ChipiUnavailable(ChipiError):
    """Chipi could not be reached or failed (5xx) and nothing is known to have happened."""

    default_code = "unavailable"


class ChipiRejected(ChipiError):
    """Chipi refused the request for good (a 4xx): retrying the same request cannot succeed."""

    default_code = "rejected"
