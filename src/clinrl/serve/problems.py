"""HTTP error answers in the OpenAI shape, ``{"error": {"message": …, "type": …, "code": …}}``, and the
app's exception handlers that turn every failure into one (a message names where and what, never the
request's text)."""

from __future__ import annotations

import json
import logging
from typing import Any

from clinrl.errors import ClinrlError, one_line

__all__ = ["ApiError", "error_body", "error_bytes", "install_error_handlers"]

log = logging.getLogger("clinrl.serve")

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

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 param: str | None = None):  # fmt: skip
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.param = status, code, message, headers or {}, param


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """The error JSON; the message on one line and capped (:func:`clinrl.errors.one_line`). ``param``: the
    request field at fault, when one is (a field name of the API, never client text)."""
    body = {"message": one_line(message), "type": ERROR_TYPES.get(status, "server_error"), "code": code}
    return {"error": {**body, "param": param} if param else body}


def error_bytes(status: int, code: str, message: str) -> bytes:
    return json.dumps(error_body(status, code, message)).encode("utf-8")


def _validation_message(errors: list[dict[str, Any]]) -> str:
    """Where and what, never the offending input value: pydantic's ``msg`` does not quote the input, and each
    part of the location (a dict key may be any client text) is shown only when it is a short identifier."""
    parts = [f"{'.'.join(_loc_part(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg', 'invalid')}"
             for e in errors[:5]]  # fmt: skip
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def _loc_part(part: Any) -> str:
    text = str(part)
    return text if len(text) <= 40 and text.isprintable() else "<key>"


def install_error_handlers(api: Any) -> None:
    """ApiError → its status; schema errors → 422 (400 for bad JSON); ClinrlError → 400; anything else → 500
    with the exception's type in the log only."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @api.exception_handler(ApiError)
    async def _api_error(request: Any, err: ApiError) -> JSONResponse:
        return JSONResponse(error_body(err.status, err.code, err.message, err.param), err.status, headers=err.headers)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Any, err: RequestValidationError) -> JSONResponse:
        errors = list(err.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(error_body(400, "invalid_json", "the request body is not valid JSON"), 400)
        return JSONResponse(error_body(422, "invalid_request", _validation_message(errors)), 422)

    @api.exception_handler(HTTPException)
    async def _http(request: Any, err: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(err.status_code, "http_error", str(err.detail)), err.status_code)

    @api.exception_handler(ClinrlError)
    async def _user(request: Any, err: ClinrlError) -> JSONResponse:
        return JSONResponse(error_body(400, "invalid_request", str(err)), 400)

    @api.exception_handler(Exception)
    async def _bug(request: Any, err: Exception) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.url.path, type(err).__name__)
        return JSONResponse(error_body(500, "internal_error", "internal error (see the server log)"), 500)
