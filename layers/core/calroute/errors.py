"""Domain errors. Handlers map them to 4xx responses with ``{"error": code, "message": ...}``."""

from __future__ import annotations


class CalrouteError(Exception):
    """Base class: ``status`` and ``code`` decide the HTTP answer."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def to_dict(self) -> dict:
        body = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


class InvalidInput(CalrouteError):
    status = 400
    code = "invalid_input"


class NotFound(CalrouteError):
    status = 404
    code = "not_found"


class Forbidden(CalrouteError):
    status = 403
    code = "forbidden"


class Conflict(CalrouteError):
    status = 409
    code = "conflict"


class PayloadTooLarge(CalrouteError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(CalrouteError):
    status = 415
    code = "unsupported_media_type"


class ServiceUnavailable(CalrouteError):
    """A dependency is throttling or down; the client may retry after ``retry_after`` seconds."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class GateFailed(CalrouteError):
    """Too little labelled data to train a model for this user (``message`` says what is missing)."""

    status = 409
    code = "not_enough_data"


class ModelIntegrityError(Exception):
    """A stored model is missing, truncated, tampered with (sha256) or of another feature spec."""
