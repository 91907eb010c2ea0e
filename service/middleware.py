"""ServiceMiddleware: what crosses every route (request ids, API keys, limits, timeout, headers, metrics, logs)."""

from __future__ import annotations

import hmac
import itertools
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import ClientDisconnect

from service import errors, lanes, metrics
from service.deadlines import Deadlines
from service.logs import CLIENT_LEFT
from service.responses import render_error, service_error_response
from service.runtime import Runtime

log = logging.getLogger("service")
access_log = logging.getLogger("service.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths that stay open when API keys are configured: probes, the page, and the docs.
OPEN_PATHS = ("/health/", "/v2/health/", "/static/", "/docs", "/redoc", "/openapi.json", "/favicon.ico")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Probes are never throttled: an orchestrator must not restart or drain an instance because the
#: clients behind the same address (a proxy, a NAT) are busy.
PROBE_PATHS = ("/health/", "/v2/health/")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
PAGE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
]
# Swagger UI and ReDoc start themselves with an inline script and inline styles.
DOCS_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        b"script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
]


#: The most bytes of request headers (names and values) a request may carry: nginx's default
#: (4 buffers of 8 KB); browsers and HTTP libraries send under 2 KB. uvicorn's httptools parser has
#: already buffered them by then, so this bounds what is accepted, not what is read (docs/reliability.md).
MAX_HEADER_BYTES = 32 * 1024


def conformance_error(scope: Scope, headers: dict[bytes, bytes]) -> errors.ServiceError | None:
    """What RFC 9112 says to refuse that uvicorn lets through: no Host, oversized headers, unknown codings."""
    if scope["http_version"] == "1.1" and b"host" not in headers:
        return errors.BadRequest(errors.MISSING_HOST)
    coding = headers.get(b"transfer-encoding")
    if coding is not None and coding.strip().lower() != b"chunked":
        return errors.NotImplementedFeature(
            errors.UNSUPPORTED_TRANSFER_ENCODING.format(coding=coding[: errors.ECHO_CHARS].decode("latin-1"))
        )
    # Summed in C: a generator over the pairs cost 4 µs a request.
    if sum(map(len, itertools.chain.from_iterable(scope["headers"]))) > MAX_HEADER_BYTES:
        return errors.HeadersTooLarge(errors.HEADERS_TOO_LARGE.format(limit=MAX_HEADER_BYTES))
    return None


#: What nginx logs for "client closed request": the client left before its exchange was complete.
CLIENT_CLOSED = 499
#: uvloop's error for a write on a transport whose connection is gone (``UVHandle._ensure_alive``).
#: uvicorn's httptools protocol marks only the connection's newest request as disconnected, so a
#: pipelined request that is still being answered when the client leaves writes to a closed
#: transport, and uvloop raises RuntimeError (the asyncio loop drops the write without raising).
UVLOOP_CLOSED = "the handler is closed"


def client_left(exc: Exception) -> bool:
    """Whether the server's ``send`` failed because the client's connection is gone, not a bug of ours."""
    return isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and UVLOOP_CLOSED in str(exc))


_REQUEST_IDS = itertools.count(1)
_ID_PREFIX = f"{random.getrandbits(48):012x}"


def next_request_id() -> str:
    """A unique id: a random per-process prefix and a counter (uuid4 cost 7% of a request's CPU)."""
    return f"{_ID_PREFIX}{next(_REQUEST_IDS):020x}"


class ServiceMiddleware:
    """One pure-ASGI layer for what every request needs, cheaper than a stack of middlewares.

    Request ids, API keys, the per-client concurrency limit, the request timeout, security
    headers, metrics and the access log.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        settings = runtime.settings
        self.keys = [key.encode() for key in settings.api_keys]
        self.per_client = settings.max_concurrent_per_client
        self.timeout = settings.request_timeout_s
        self.deadlines = Deadlines(self.timeout)
        self.access = runtime.access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")
        if not REQUEST_ID.match(request_id):
            request_id = next_request_id()
        status = 500
        response_started = False
        extra_headers = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
        if path == "/" or path.startswith("/static/"):
            extra_headers += PAGE_HEADERS
        elif path.startswith(("/docs", "/redoc")):
            extra_headers += DOCS_HEADERS

        method: str = scope["method"]
        head = method == "HEAD"
        if head:
            # HEAD is GET without the body (RFC 9110), on every GET route: the routes declare GET only.
            # A copy: uvicorn reads the original's method to leave the body out.
            scope = {**scope, "method": "GET"}

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), *extra_headers]
            elif head and message["type"] == "http.response.body":
                message = {"type": "http.response.body", "body": b"", "more_body": message.get("more_body", False)}
            try:
                await send(message)
            except Exception as exc:
                if not client_left(exc):
                    raise
                # Raised through the app as Starlette does for an OSError on send, so that its work
                # stops and the handler below logs the request as the client's leaving.
                raise ClientDisconnect() from exc

        client = (scope.get("client") or ("unknown", 0))[0]
        counted = False
        try:
            # Nested: the client may be gone by the time an error answer is written, too.
            try:
                if refusal := conformance_error(scope, headers):
                    raise refusal
                if self.keys and not path.startswith(OPEN_PATHS) and path != "/" and not self._authorised(headers):
                    raise errors.Unauthorized(errors.MISSING_API_KEY)
                if self.per_client and not path.startswith(PROBE_PATHS):
                    self.runtime.admit(client, self.per_client)
                    counted = True
                lanes.RECEIVE.set(receive)  # so that a costly decode stops when the client leaves
                # The request timeout, as asyncio.timeout would do it, at a fifth of its cost.
                await self.deadlines.within(self.app(scope, receive, send_wrapper))
            except errors.ServiceError as exc:
                if not response_started:
                    await service_error_response(path, exc)(scope, receive, send_wrapper)
            except TimeoutError:
                if not response_started:
                    message = errors.REQUEST_TIMEOUT.format(seconds=self.timeout)
                    await render_error(path, 504, message)(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client left before sending its whole body, or before receiving the whole answer:
            # nobody to answer, and not an error of ours.
            status = CLIENT_CLOSED
            CLIENT_LEFT.set(True)
            log.debug("client left before the end of %s %s", method, path, extra={"request_id": request_id})
        except Exception:
            # A bug. Answered here rather than by Starlette's outermost handler, so that the 500 carries
            # the request id and the security headers, and the logged traceback carries the request id.
            log.exception("unhandled error on %s", path, extra={"request_id": request_id})
            if response_started:
                raise
            await render_error(path, 500, errors.INTERNAL_ERROR)(scope, receive, send_wrapper)
        finally:
            if counted:
                self.runtime.release(client)
            route_path = getattr(scope.get("route"), "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            metrics.observe_request(route_path, method, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                self.access.record(
                    request_id=request_id,
                    method=method,
                    path=path,
                    route=route_path,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                    client=client,
                )

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"x-api-key")
        if given is None:
            auth = headers.get(b"authorization", b"")
            if auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
        if not given:
            return False
        # Compare against every key, in constant time, without stopping at the first match.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(given, key)
        return matched
