"""A request body size limit for every route, enforced before the body is read.

Without it an unauthenticated client could send a multi-GB login body and the gateway would
read it all (FastAPI reads the body before any dependency, rate limiting included, runs). A
declared Content-Length over the limit is answered 413 at once; a body streamed without one
(chunked) is counted as it arrives and cut off at the limit.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tickmesh.gateway.problems import problem_response

PAYLOAD_TOO_LARGE = 413


class BodyTooLarge(HTTPException):
    """The body grew past the limit while being read (mapped to a 413 problem)."""

    def __init__(self, limit: int) -> None:
        super().__init__(PAYLOAD_TOO_LARGE, _detail(limit))


def _detail(limit: int) -> str:
    return f"request body larger than {limit} bytes"


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses malformed framing itself
    return None


class BodySizeLimit:
    """Plain ASGI middleware (no BaseHTTPMiddleware: it would buffer what it should refuse)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self._app = app
        self._limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)  # WebSocket frames have a limit of their own
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self._limit:
            await problem_response(PAYLOAD_TOO_LARGE, _detail(self._limit))(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._limit:
                    # Raised into whoever reads the body: FastAPI passes HTTPExceptions on to
                    # the problem handlers; anything else reaching us is answered below.
                    raise BodyTooLarge(self._limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if started:
                raise
            response = problem_response(PAYLOAD_TOO_LARGE, _detail(self._limit))
            await response(scope, receive, send)
