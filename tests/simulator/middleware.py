"""What wraps every API request: faults, the request log, authentication, the error shape.

Faults act first, as an ingress in front of the service would, so a faulted
request is logged with `user` null. Authentication comes before routing, so any
path under the API base without a valid token is a 401.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.simulator.api import IDENTITY
from tests.simulator.app_keys import SIMULATOR
from tests.simulator.auth import TokenError, bearer_token
from tests.simulator.config import API_BASE
from tests.simulator.errors import ApiError, error_response
from tests.simulator.records import MalformedBody, RequestLogEntry

log = logging.getLogger(__name__)

_REASONS = {
    500: "internal server error (injected)",
    502: "bad gateway (injected)",
    503: "service unavailable (injected)",
    504: "gateway timeout (injected)",
    429: "too many requests (injected)",
}


def _template(request: web.Request) -> str | None:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else None


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply faults, authenticate, run the handler, render errors and log the request."""
    if not request.path.startswith(API_BASE):
        return await handler(request)
    simulator = request.app[SIMULATOR]
    if request.can_read_body:
        # A request is logged once it has fully arrived (aiohttp keeps the body for the
        # handler): a test that sees it in the log may freeze the client, and the
        # request still completes.
        await request.read()
    request_id = uuid.uuid4().hex
    entry: RequestLogEntry = {
        "time": datetime.now(tz=UTC).isoformat(timespec="milliseconds"),
        "method": request.method,
        "path": request.path,
        "template": _template(request),
        # Only the query: the Authorization header and its token are never logged.
        "query": dict(request.query),
        "user": None,
        "agent": request.headers.get("User-Agent"),
        "status": None,
        "fault": None,
    }
    simulator.log_request(entry)
    decision = simulator.faults.decide(request.method, request.path)
    if decision.latency_ms:
        entry["fault"] = "latency"
        await asyncio.sleep(decision.latency_ms / 1000)
    failure = decision.failure
    if failure is not None:
        entry["fault"] = failure.kind
        if failure.kind == "drop":
            # Closing the transport before any byte is written is what the
            # client sees as "connection reset / remote end closed".
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=499)
        if failure.kind == "malformed":
            entry["status"] = 200
            return _malformed(failure.body)
        status = decision.status or 503
        entry["status"] = status
        headers = (
            {"Retry-After": str(failure.retry_after_seconds)}
            if failure.retry_after_seconds is not None
            else None
        )
        message = _REASONS.get(status, f"injected error {status}")
        return error_response(status, message, request_id, headers)
    response = await _authenticated(request, handler, request_id, entry)
    entry["status"] = response.status
    response.headers["X-Request-Id"] = request_id
    return response


_HUGE_BYTES = 20 * 1024 * 1024


def _malformed(body: MalformedBody) -> web.Response:
    """A 200 answer that breaks the API's promises in the way ``body`` names."""
    if body == "not-json":
        return web.Response(
            text="<html><body>upstream hiccup</body></html>", content_type="text/html"
        )
    if body == "wrong-content-type":
        return web.Response(text='{"metadata": {}}', content_type="text/plain")
    if body == "huge":
        return web.Response(
            body=b'{"padding": "' + b"x" * _HUGE_BYTES + b'"}', content_type="application/json"
        )
    return web.json_response({"unexpected": True})


async def _authenticated(
    request: web.Request, handler: Handler, request_id: str, entry: RequestLogEntry
) -> web.StreamResponse:
    simulator = request.app[SIMULATOR]
    try:
        token = bearer_token(request.headers.get("Authorization"))
        identity = await simulator.verifier.verify(token)
    except TokenError as exc:
        log.info("401 %s %s: %s", request.method, request.path, exc)
        return error_response(
            401, f"unauthorized: {exc}", request_id, {"WWW-Authenticate": "Bearer"}
        )
    entry["user"] = identity.user
    request[IDENTITY] = identity
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, request_id, exc.headers)
    except web.HTTPException as exc:
        # Unknown paths (404) and wrong methods (405) still answer in the one error shape.
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, exc.reason, request_id, headers)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal error in the simulator", request_id)
