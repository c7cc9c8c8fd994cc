"""JSON errors in the OpenAI shape: ``{"error": {"message": …, "type": …, "code": …}}``."""

from __future__ import annotations

import json
from typing import Any

from clinrl.errors import one_line

__all__ = ["ApiError", "error_body", "error_bytes"]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    499: "client_closed_request",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class ApiError(Exception):
    """An error answer: HTTP ``status``, a short machine ``code`` and a message without request text."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """The error JSON; the message on one line and capped (:func:`clinrl.errors.one_line`)."""
    return {"error": {"message": one_line(message), "type": ERROR_TYPES.get(status, "server_error"), "code": code}}


def error_bytes(status: int, code: str, message: str) -> bytes:
    return json.dumps(error_body(status, code, message)).encode("utf-8")
