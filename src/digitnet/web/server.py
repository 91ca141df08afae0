"""Serving the app on uvicorn with timeouts and a connection limit that hold up against abuse.

A reliability audit of plain ``uvicorn.run(app)`` found: connections that never send a byte, send
their headers a byte at a time (slowloris) or stop halfway through the body all stayed open
indefinitely; with 1,024 file descriptors, 1,100 idle sockets made ``/healthz`` time out and filled
the log with "Too many open files" tracebacks; a request with both Content-Length and
Transfer-Encoding was never answered. uvicorn's settings cover part of this:

* ``timeout_keep_alive`` closes a connection idle *after* a response, but its timer starts only
  then, and any byte cancels it: nothing bounds a new connection, or a request that arrives slowly.
* ``limit_concurrency`` answers 503 once too many connections are open, but only when a request
  arrives; idle connections keep their file descriptors.
* ``h11_max_incomplete_event_size`` bounds the size of a request head, not its duration.
* ``backlog`` is both the kernel's accept queue and how many connections asyncio accepts in one
  go; asyncio keeps accepting after ``EMFILE`` and logs a traceback for each failure
  (CPython issue 151615), which is where the log flood came from.

uvicorn has no request-head or body timeout (its protocols reset their only timer on every byte),
and ASGI middleware runs only once the head is complete. So :class:`GuardedH11Protocol` extends
uvicorn's h11 protocol with per-connection deadlines, the pattern other uvicorn users adopted for
slowloris (a deadline to receive the request, disarmed once it is in):

* the request head must be complete ``header_timeout`` seconds after the server starts waiting for
  it (a new connection, or the end of the previous response); the body must be complete
  ``body_timeout`` seconds after its head. A request cut short is answered 408, a silent
  connection just closed.
* the number of open connections stays below ``limit_concurrency`` and well below the file
  descriptor limit: a new connection at the limit closes the connection that has waited longest
  for a request head (an idle, slow or abandoned one); if every connection has a request in
  progress, the new one is answered 503 and closed. The accept batch (``backlog``) is sized so that
  connections accepted before this check runs still fit under the descriptor limit.
* a request with both Content-Length and Transfer-Encoding is answered 400 and the connection
  closed (RFC 9112, section 6.1); protocol errors are answered in the API's JSON error shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import DigitnetError

__all__ = [
    "ConnectionBudget",
    "GuardedH11Protocol",
    "ServerLimits",
    "connection_budget",
    "host_policy",
    "protocol_for",
    "run",
]

#: Host names every server answers to; IPv6 literals in brackets, as in a Host header.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: File descriptors kept for the process itself: standard streams, the listening socket, the event
#: loop's epoll and self-pipe, files opened while loading. About 15 are in use once serving.
RESERVED_FDS = 64

_log = logging.getLogger("digitnet.web.server")


@dataclass(frozen=True)
class ServerLimits:
    """How long a client may take, and how many may be connected at once.

    Attributes
    ----------
    header_timeout : float
        Seconds for a complete request line and headers, from when the server starts waiting for
        them. Real clients send a head (under 1 kB here) in milliseconds.
    body_timeout : float
        Seconds for a complete body, from the end of its head. The page sends about 20 kB; the
        largest body allowed (8 MB) needs about 2.2 Mbit/s in 30 s.
    keep_alive_timeout : float
        Seconds an idle connection is kept after a response (uvicorn's ``timeout_keep_alive``).
    max_connections : int
        Most connections open at once; lowered to fit the file descriptor limit.
    max_header_bytes : int
        Largest request head (uvicorn's ``h11_max_incomplete_event_size``); larger gets 431.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 1000
    max_header_bytes: int = 16 * 1024


@dataclass(frozen=True)
class ConnectionBudget:
    """The connection limit and accept batch that fit the process's file descriptor limit.

    Attributes
    ----------
    max_connections : int
        Most connections open at once.
    backlog : int
        The kernel's accept queue, which is also how many connections asyncio accepts in one go.
    fd_limit : int or None
        The soft ``RLIMIT_NOFILE`` it was computed from (None where there is none).
    """

    max_connections: int
    backlog: int
    fd_limit: int | None


def connection_budget(requested: int) -> ConnectionBudget:
    """Fit ``requested`` connections under the soft ``RLIMIT_NOFILE``.

    Parameters
    ----------
    requested : int
        The connection limit asked for.

    Returns
    -------
    ConnectionBudget
        At most ``requested`` connections, leaving :data:`RESERVED_FDS` descriptors (a quarter of a
        small limit) to the process and three accept batches of headroom: asyncio accepts a
        batch, creates its protocols a loop iteration later, and a closed connection frees its
        descriptor a loop iteration after that.

    Raises
    ------
    DigitnetError
        If the descriptor limit is too small to serve anything.
    """
    limit = _fd_limit()
    if limit is None:
        return ConnectionBudget(requested, max(16, min(2048, requested // 8)), None)
    spare = limit - min(RESERVED_FDS, limit // 4)
    backlog = max(8, min(2048, spare // 8))
    fits = spare - 3 * backlog
    if fits < 8:
        raise DigitnetError(
            f"The open-file limit ({limit}) is too small to serve; raise it with "
            "`ulimit -n 1024` (or more) and try again."
        )
    return ConnectionBudget(max(1, min(requested, fits)), backlog, limit)


def _fd_limit() -> int | None:
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_NOFILE
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def host_policy(bind_host: str, allow_hosts: Sequence[str] = ()) -> tuple[list[str], bool]:
    """Which Host headers a server bound to ``bind_host`` answers (a DNS-rebinding guard).

    Parameters
    ----------
    bind_host : str
        The address the server listens on (``--host``).
    allow_hosts : sequence of str
        Extra names (``--allow-host``); ``"*"`` allows any.

    Returns
    -------
    names : list of str
        The loopback names, the bind address itself when it is a specific one, and ``allow_hosts``.
    allow_ip_literals : bool
        True for a wildcard address (0.0.0.0, ::), where clients on the network reach the server
        by whichever of the machine's IP addresses they know.
    """
    for name in allow_hosts:
        _check_host_name(name)
    names = [*LOOPBACK_NAMES, *allow_hosts]
    wildcard = bind_host in ("", "0.0.0.0", "::")
    if not wildcard and bind_host.lower() not in ("localhost", "127.0.0.1", "::1"):
        names.append(f"[{bind_host}]" if ":" in bind_host else bind_host)
    return names, wildcard


def _check_host_name(name: str) -> None:
    """Refuse an ``--allow-host`` value that could never match a Host header."""
    bare = name.removeprefix("*.")
    if name != "*" and (not bare or "*" in bare or "/" in bare or (":" in bare and not bare.startswith("["))):
        raise DigitnetError(
            f"--allow-host {name!r} is not a host name; give a name without scheme or port, "
            "such as mypc.local, *.example.com (any subdomain) or * (any host)."
        )


def _json_response(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 answer ``{"detail": detail}`` that closes the connection."""
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _StrictH11Connection(h11.Connection):
    """h11's server connection, which also refuses a request with both Content-Length and Transfer-Encoding.

    h11 follows Transfer-Encoding and ignores Content-Length, so a Content-Length body that is not
    valid chunked data leaves it waiting forever. The refusal is raised as h11's own
    :class:`h11.RemoteProtocolError`, which uvicorn already answers (see ``send_400_response``).
    """

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as error:
            self.last_error = error
            raise
        if isinstance(event, h11.Request):
            names = {name for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                self.last_error = h11.RemoteProtocolError(
                    "both Content-Length and Transfer-Encoding", error_status_hint=400
                )
                raise self.last_error
        return event


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with request deadlines and a connection limit; see the module docstring.

    Use :func:`protocol_for` to get a subclass bound to one server's limits. A connection is in one
    of three phases: waiting for a request head (``"head"``), for a body (``"body"``), or neither
    (``None``: the server is answering, or the connection is closing).
    """

    limits: ClassVar[ServerLimits] = ServerLimits()
    max_connections: ClassVar[int] = ServerLimits.max_connections
    #: Connections in the "head" phase, longest waiting first: the ones to close at the limit.
    waiting: ClassVar[dict[GuardedH11Protocol, None]] = {}
    #: Set in ``__init__``; the strict connection also keeps the last protocol error for the 400 answer.
    conn: _StrictH11Connection

    def __init__(
        self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _StrictH11Connection(
            h11.SERVER, config.h11_max_incomplete_event_size or self.limits.max_header_bytes
        )
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol and uvicorn hooks ---------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        crowded = len(self.connections) >= self.max_connections
        super().connection_made(transport)
        if crowded and not self._close_longest_waiting():
            transport.write(
                _json_response(503, "The server has too many connections open; try again in a few seconds.")
            )
            self._close()
            return
        self._update_phase()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._update_phase()

    def on_response_complete(self) -> None:
        """A response was sent: the connection's timeout phase changes (to keep-alive)."""
        super().on_response_complete()
        self._update_phase()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_phase(None)
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """Answer a request h11 could not parse with a JSON error, then close.

        Replaces uvicorn's text/plain answer; written as raw bytes because h11 may no longer be
        in a state to send a response (e.g. after a pipelined request).
        """
        error = self.conn.last_error
        status = error.error_status_hint if error is not None and 400 <= error.error_status_hint < 600 else 400
        if not self._answer_begun():
            self.transport.write(_json_response(status, _protocol_error_detail(error, self.limits)))
        self._close()

    # -- deadlines ----------------------------------------------------------------------------

    def _update_phase(self) -> None:
        """Follow h11's view of the client: waiting for a head, for a body, or neither."""
        if self.transport.is_closing():
            phase = None
        else:
            phase = {h11.IDLE: "head", h11.SEND_BODY: "body"}.get(self.conn.their_state)
        if phase != self._phase:
            self._set_phase(phase)

    def _set_phase(self, phase: str | None) -> None:
        """Enter ``phase``, with a fresh deadline for it (none for ``None``)."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.waiting.pop(self, None)
        self._phase = phase
        if phase is None:
            return
        if phase == "head":
            self.waiting[self] = None  # at the end: the most recent to start waiting
        timeout = self.limits.header_timeout if phase == "head" else self.limits.body_timeout
        self._deadline = self.loop.call_later(timeout, self._deadline_passed)

    def _deadline_passed(self) -> None:
        """Close a connection whose request did not arrive in time; answer 408 if one had begun."""
        phase, self._deadline = self._phase, None
        if self.transport.is_closing():
            return
        if phase == "body":
            detail = (
                f"The request body did not arrive within {self.limits.body_timeout:g} seconds "
                "of its headers; the connection is closed."
            )
        else:
            detail = (
                f"The request headers did not arrive within {self.limits.header_timeout:g} "
                "seconds; the connection is closed."
            )
        begun = phase == "body" or bool(self.conn.trailing_data[0])  # a silent connection gets no answer
        if begun and not self._answer_begun():
            self.transport.write(_json_response(408, detail))
        self._close()

    # -- the connection limit -----------------------------------------------------------------

    def _close_longest_waiting(self) -> bool:
        """Close the connection that has waited longest for a request head; False if there is none."""
        for victim in self.waiting:
            if victim is not self:
                victim._close()
                return True
        return False

    def _answer_begun(self) -> bool:
        """Whether the request now being received already has (part of) an answer.

        An app may answer before reading the body (413, 415): until the body has arrived, that
        request is still the current one, and a second answer must not follow its first.
        """
        cycle = self.cycle
        current = cycle is not None and (self._phase == "body" or not cycle.response_complete)
        return current and cycle.response_started

    def _close(self) -> None:
        """Close now; a request still running sees a disconnect and its answer is dropped."""
        self._set_phase(None)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


def _protocol_error_detail(error: h11.RemoteProtocolError | None, limits: ServerLimits) -> str:
    if error is not None and error.error_status_hint == 431:
        return f"The request headers are larger than {limits.max_header_bytes} bytes; send fewer or shorter headers."
    if error is not None and str(error) == "both Content-Length and Transfer-Encoding":
        return "The request has both Content-Length and Transfer-Encoding headers; send only one of them."
    reason = f" ({str(error)[:200]})" if error is not None else ""
    return f"The request is not valid HTTP/1.1{reason}; the connection is closed."


def protocol_for(limits: ServerLimits, max_connections: int) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass for one server: its limits and its own waiting list.

    Parameters
    ----------
    limits : ServerLimits
        The timeouts.
    max_connections : int
        Most connections open at once (from :func:`connection_budget`).

    Returns
    -------
    type
        A protocol class to pass to ``uvicorn.Config(http=...)``.
    """
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"limits": limits, "max_connections": max_connections, "waiting": {}},
    )


class _RateLimitedRecords(logging.Filter):
    """Let a record that starts with one of ``prefixes`` through once a minute, without traceback.

    For messages an attacker can trigger at will. asyncio logs a traceback for every accept that
    fails for lack of file descriptors, thousands a second (the connection limit keeps the server
    clear of that; this is the backstop when something else uses the descriptors up); uvicorn logs
    one warning per malformed request. One line a minute, with a count of the rest, says the same.
    """

    def __init__(self, prefixes: Sequence[str], interval: float = 60.0) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)
        self.interval = interval
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        prefix = next((p for p in self.prefixes if message.startswith(p)), None)
        if prefix is None:
            return True
        now = time.monotonic()
        if now - self._last.get(prefix, -math.inf) < self.interval:
            self._dropped[prefix] = self._dropped.get(prefix, 0) + 1
            return False
        dropped = self._dropped.get(prefix, 0)
        record.msg = (
            "%s (%d more like it since the last report)"
            if dropped
            else "%s (more like it are logged at most once a minute)"
        )
        record.args = (prefix, dropped) if dropped else (prefix,)
        record.exc_info = record.exc_text = None
        self._last[prefix], self._dropped[prefix] = now, 0
        return True


#: Logger name -> messages that clients can cause at will, logged at most once a minute.
_FLOODABLE = {
    "asyncio": ["socket.accept() out of system resource"],
    "uvicorn.error": [
        "Invalid HTTP request received.",
        "Exceeded concurrency limit.",
        "Unsupported upgrade request.",
        "No supported WebSocket library detected.",
    ],
}


@contextmanager
def _rate_limited_logs() -> Iterator[None]:
    filters = {name: _RateLimitedRecords(prefixes) for name, prefixes in _FLOODABLE.items()}
    for name, log_filter in filters.items():
        logging.getLogger(name).addFilter(log_filter)
    try:
        yield
    finally:
        for name, log_filter in filters.items():
            logging.getLogger(name).removeFilter(log_filter)


def uvicorn_config(app: Any, limits: ServerLimits = ServerLimits()) -> Any:
    """The ``uvicorn.Config`` that :func:`run` uses: the guarded h11 protocol on asyncio.

    Parameters
    ----------
    app : ASGI application
        What to serve.
    limits : ServerLimits, optional
        Timeouts and the connection limit.

    Returns
    -------
    uvicorn.Config
    """
    import uvicorn

    budget = connection_budget(limits.max_connections)
    return uvicorn.Config(
        app,
        # The guard extends h11's protocol and is reasoned against asyncio's accept loop, so both
        # are pinned: uvicorn would pick httptools and uvloop where they are installed.
        http=protocol_for(limits, budget.max_connections),
        loop="asyncio",
        ws="none",
        # uvicorn's 503 counts the asking connection and running tasks; the guard keeps
        # connections under max_connections, so this is only a backstop for runaway tasks.
        limit_concurrency=budget.max_connections + 1,
        backlog=budget.backlog,
        timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]  # a float works
        h11_max_incomplete_event_size=limits.max_header_bytes,
        # No per-request access log: the page sends about ten requests a second while drawing.
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )


def run(app: Any, sock: Any, limits: ServerLimits = ServerLimits()) -> None:
    """Serve ``app`` on an already listening socket until Ctrl+C (one process, one event loop).

    Parameters
    ----------
    app : ASGI application
        What to serve, e.g. from :func:`digitnet.web.create_app`.
    sock : socket.socket
        A bound, listening TCP socket.
    limits : ServerLimits, optional
        Timeouts and the connection limit.
    """
    import uvicorn

    config = uvicorn_config(app, limits)
    _log.info("At most %d connections (backlog %d).", config.limit_concurrency - 1, config.backlog)
    with _rate_limited_logs():
        uvicorn.Server(config).run(sockets=[sock])
