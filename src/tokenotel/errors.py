"""Errors classified once, where they are raised: permanent (the data is wrong) or retryable."""

from __future__ import annotations


class TokenotelError(Exception):
    """Base of every error tokenotel raises on purpose; its message is meant for users."""


class PermanentError(TokenotelError):
    """Retrying the same input cannot succeed (malformed request, bad configuration)."""


class RetryableError(TokenotelError):
    """The same input may succeed later (the store is down or overloaded)."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTooLarge(PermanentError):
    """The request is over the size limit after decompression."""


class StoreUnavailable(RetryableError):
    """ClickHouse cannot be reached or refused the write."""
