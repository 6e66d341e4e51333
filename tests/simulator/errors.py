"""The one error shape every failing API response has.

It is the SDK's `Error` model: `{"code": int, "message": str, "requestId": str}`.
"""

from __future__ import annotations

from aiohttp import web


class ApiError(Exception):
    """Raised anywhere below a handler; the error middleware turns it into a response."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, message: str, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Build a JSON error response in the SDK's `Error` shape."""
    body = {"code": status, "message": message, "requestId": request_id}
    return web.json_response(body, status=status, headers=headers)
