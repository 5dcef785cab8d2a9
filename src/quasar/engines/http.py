"""A lean HTTP/1.1 client for upstream APIs: a keep-alive pool per origin, TLS, streamed bodies.

Each upstream call through aiohttp's client cost about 150 us of CPU on the event loop here, a quarter
of a gateway request; the same keep-alive POST written and parsed here (llhttp through httptools, the
parser uvicorn uses) costs about 55 us (benchmarks/http_client.py). This module does only what an
OpenAI-compatible upstream needs: POST a body, read the status and headers, then the body whole or
piece by piece as it arrives (chunked, Content-Length or close-delimited; gzip/deflate decoded).

Timeouts other than connect are the caller's: it wraps calls in asyncio.timeout. A call cancelled in
the middle closes its connection; only a connection whose response was read to the end goes back to
the pool, and one the server has closed meanwhile is never reused. A request is never re-sent here:
a POST the server may have acted on is the router's to retry, visibly, by its rules.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
import zlib
from urllib.parse import urlsplit

import httptools

_PAUSE_AT = 1 << 20  # buffered body bytes before reading from the socket pauses
_DEFAULT_PORTS = {"http": 80, "https": 443}
_tls: ssl.SSLContext | None = None


class HTTPError(Exception):
    """The exchange failed: no connection, a reset, or a response that is not HTTP/1.1."""


class ConnectError(HTTPError):
    """No connection could be made (refused, unresolvable, TLS handshake failed)."""


class ConnectTimeout(ConnectError, TimeoutError):
    """No connection within the connect timeout."""


def tls_context() -> ssl.SSLContext:
    """The system's CA store (SSL_CERT_FILE / SSL_CERT_DIR honoured), made once."""
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


class Response:
    """Status and headers (names lower-case), then the body via read() or chunk()."""

    def __init__(self, conn: _Connection, status: int, headers: dict[str, str]) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers

    async def chunk(self) -> bytes:
        """The body bytes that have arrived since the last call (waiting for some); b"" at the end."""
        return await self._conn.next_body()

    async def read(self, limit: int | None = None) -> bytes:
        """The rest of the body, or its first `limit` bytes (the connection is then not reusable)."""
        parts: list[bytes] = []
        size = 0
        while limit is None or size < limit:
            part = await self._conn.next_body()
            if not part:
                break
            parts.append(part)
            size += len(part)
        data = b"".join(parts)
        return data if limit is None else data[:limit]

    def release(self) -> None:
        """Back to the pool if the body was read to the end and the server keeps the connection open."""
        self._conn.release()

    def close(self) -> None:
        self._conn.close()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self._head: asyncio.Future[Response] | None = None
        self._headers: dict[str, str] = {}
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._error: HTTPError | None = None
        self._delimited = False  # the body ends when the connection closes
        self._keep_alive = False
        self._decoder: zlib._Decompress | None = None
        self._paused = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HTTPError(f"malformed HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self._head is not None and not self._head.done():
            error = f"connection reset: {exc}" if exc else "the server closed the connection"
            self._fail(HTTPError(error))
        elif not self._complete and self._error is None:
            if self._delimited and exc is None:
                self.on_message_complete()
            else:
                self._fail(HTTPError("the connection closed in the middle of the response"))

    # -- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:  # httptools passes each header whole
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        headers = self._headers
        self._keep_alive = self._parser.should_keep_alive()  # llhttp forgets it once the message ends
        self._delimited = "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "")
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "deflate"):
            self._decoder = zlib.decompressobj(wbits=47)  # gzip or zlib, by the header it finds
        head = self._head
        if head is not None and not head.done():
            head.set_result(Response(self, self._parser.get_status_code(), headers))

    def on_body(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                raise httptools.HttpParserCallbackError(f"bad compressed body: {exc}") from None
        if data:
            self._push(data)

    def on_message_complete(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._push(tail)
        self._complete = True
        self._wake()

    # -- the request ---------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[Response]:
        self._reset()
        self._head = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None or self.transport.is_closing():
            self._head.set_exception(HTTPError("the server closed the connection"))
        else:
            self.transport.write(data)
        return self._head

    async def next_body(self) -> bytes:
        while not self._body:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._body.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered < _PAUSE_AT // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def release(self) -> None:
        if self._complete and not self._body and not self.closed and self._keep_alive:
            self.pool.put_back(self)
        else:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True
        self.pool.forget(self)

    def _push(self, data: bytes) -> None:
        self._body.append(data)
        self._buffered += len(data)
        if self._buffered > _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def _fail(self, error: HTTPError) -> None:
        self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Pool:
    """Keep-alive connections to one origin (scheme, host, port), at most `limit` at once."""

    def __init__(
        self,
        url: str,
        *,
        limit: int = 100,
        connect_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        address: str | None = None,
        tls: ssl.SSLContext | None = None,
    ):
        """`address`: connect there, never resolving the URL's host (the SSRF guard's checked address, so
        that DNS rebinding cannot change it); Host, TLS SNI and certificate checks stay the URL's host.
        `tls`: the context to verify servers with (default: the system's, tls_context())."""
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or _DEFAULT_PORTS[parts.scheme]
        self.tls = parts.scheme == "https"
        self.address = address
        self._tls_context = tls
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if parts.port in (None, _DEFAULT_PORTS[parts.scheme]) else f"{host}:{self.port}"
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def prefix(self, target: str, headers: dict[str, str], method: str = "POST") -> bytes:
        """The request line and fixed headers of requests to `target` (path and query) on this origin."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    async def post(self, prefix: bytes, body: bytes) -> Response:
        """Send `body` with a prefix() as its head (a GET's body is empty); the response once its headers
        have arrived."""
        conn = await self._acquire()
        try:
            return await conn.send(b"%sContent-Length: %d\r\n\r\n%s" % (prefix, len(body), body))
        except BaseException:
            conn.close()
            raise

    async def close(self) -> None:
        for conn in list(self._open):
            conn.close()

    # -- connections ---------------------------------------------------------------------------

    async def _acquire(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_timeout:
                return conn
            conn.close()
        while len(self._open) >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if self._idle:
                return await self._acquire()
        return await self._connect()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        self._open.add(conn)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(
                    lambda: conn,
                    self.address or self.host,
                    self.port,
                    ssl=(self._tls_context or tls_context()) if self.tls else None,
                    server_hostname=self.host if self.tls else None,
                )
        except TimeoutError:
            self.forget(conn)
            raise ConnectTimeout(f"no connection to {self.host_header} within {self.connect_timeout:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            self.forget(conn)
            raise ConnectError(_connect_failure(self.host_header, exc)) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def put_back(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        self._wake_one()

    def forget(self, conn: _Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _connect_failure(host: str, exc: OSError) -> str:
    """Why no connection to `host` could be made, in words: refused, unresolvable, TLS, or the OS's error."""
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {host}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host}: {exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {host} failed: {type(exc).__name__}: {exc}"
    return f"cannot connect to {host}: {type(exc).__name__}: {exc}"
