"""The server's limits on what a client may send, and how slowly.

- **Body size** (`RequestLimits`, an ASGI middleware): a ``Content-Length`` over the limit gets 413 before a
  byte of the body is read; a chunked body is counted as it streams and gets 413 as soon as it passes the
  limit, so no request reads more than the limit. A malformed ``Content-Length`` (negative, not an integer)
  never reaches the app: the HTTP parser (h11) answers 400.
- **Slow bodies**: the whole body must arrive within ``body_timeout`` seconds, or the request gets 408.
- **Requests in flight**: past ``max_inflight`` requests with a body, the next gets 503 at once.
- **Headers**: at most ``max_header_bytes`` (h11 answers 400 past it), and within ``header_timeout`` seconds of
  the connection opening (or of the previous answer on a kept-alive connection), else the connection is
  closed (`slow_client_protocol`). uvicorn itself has no such timeout.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["RequestLimits", "slow_client_protocol", "LimitStats"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class _Reject(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class LimitStats:
    """Counters of the limits (``/health`` shows them): the largest body read, and each refusal.

    >>> s = LimitStats(); s.largest_body_read
    0
    """

    def __init__(self) -> None:
        self.largest_body_read = 0
        self.inflight = 0
        self.refused: dict[int, int] = {}

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON.

        >>> LimitStats().as_dict()
        {'largest_body_read': 0, 'inflight': 0, 'refused': {}}
        """
        return {"largest_body_read": self.largest_body_read, "inflight": self.inflight,
                "refused": {str(k): v for k, v in sorted(self.refused.items())}}


class RequestLimits:
    """ASGI middleware: body size (declared or streamed), body time and requests in flight.

    >>> from starlette.applications import Starlette
    >>> app = RequestLimits(Starlette(), max_body=2**20, body_timeout=30, max_inflight=64)
    >>> app.max_body
    1048576
    """

    def __init__(self, app: Callable, max_body: int, body_timeout: float = 30.0, max_inflight: int = 64,
                 stats: LimitStats | None = None):
        self.app, self.max_body, self.body_timeout, self.max_inflight = app, int(max_body), body_timeout, max_inflight
        self.stats = stats or LimitStats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        started = False

        async def send_tracking(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            self._check_declared(scope)
            if self.stats.inflight >= self.max_inflight:
                raise _Reject(503, f"the server is busy ({self.stats.inflight} requests in flight); retry shortly")
            self.stats.inflight += 1
            try:
                await self.app(scope, self._limited(receive), send_tracking)
            finally:
                self.stats.inflight -= 1
        except _Reject as e:
            self.stats.refused[e.status] = self.stats.refused.get(e.status, 0) + 1
            if started:  # too late for a status: drop the connection
                raise
            await _send_json(send, e.status, {"error": e.message}, close=True)

    def _check_declared(self, scope: Scope) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():  # h11 refuses these already; another server might not
                    raise _Reject(400, f"Content-Length must be a non-negative integer, got {value[:40]!r}")
                if int(value) > self.max_body:
                    raise _Reject(413, f"the upload is {int(value) / 2**20:.1f} MB; the limit is "
                                       f"{self.max_body / 2**20:g} MB")

    def _limited(self, receive: Receive) -> Receive:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        state = {"read": 0, "done": False}

        async def limited_receive() -> dict:
            if state["done"]:  # after the body: waiting for a disconnect, no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except (asyncio.TimeoutError, TimeoutError):
                raise _Reject(408, f"the upload did not arrive within {self.body_timeout:g} s") from None
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                self.stats.largest_body_read = max(self.stats.largest_body_read, min(state["read"], self.max_body))
                if state["read"] > self.max_body:
                    raise _Reject(413, f"the upload is over the limit of {self.max_body / 2**20:g} MB")
                state["done"] = not message.get("more_body", False)
            return message

        return limited_receive


async def _send_json(send: Send, status: int, obj: dict, close: bool = False) -> None:
    body = json.dumps(obj).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body is not read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def slow_client_protocol(header_timeout: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers do not arrive within
    ``header_timeout`` seconds (a slow-loris client); pass it as ``uvicorn.Config(http=...)``.

    >>> slow_client_protocol(10.0).header_timeout
    10.0
    """
    return type("SlowClientProtocol", (_SlowClientProtocol,), {"header_timeout": float(header_timeout)})


class _SlowClientProtocol(H11Protocol):
    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        scope = self.scope
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow, scope)

    def _headers_too_slow(self, scope_when_armed: Any) -> None:
        if self.scope is scope_when_armed and not self.transport.is_closing():  # no new request headers since
            self.transport.close()
