"""What a failed exchange with the EHR raises: the client's and the token source's common error."""

from __future__ import annotations


class DeliveryError(Exception):
    """The EHR could not be reached, refused, or answered otherwise than expected (``status``: its HTTP status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
