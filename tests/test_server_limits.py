"""``digitnet serve`` against abusive and malformed clients: a real server process, raw sockets.

Each test starts (or shares) ``python -m digitnet serve MODEL --port 0`` on 127.0.0.1 and talks
to it over plain sockets, so nothing between the test and the server smooths over what a hostile
or broken client does: connections that never speak, headers sent a byte at a time, bodies cut
short, conflicting framing headers, foreign Host headers, and more idle connections than the
server has file descriptors. All traffic stays on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install 'digitnet[web]'")

from digitnet.nn import build_mlp
from digitnet.web import server as web_server

SRC = Path(__file__).resolve().parents[1] / "src"
#: Short timeouts for the shared server, so each timeout test takes about a second.
TIMEOUT_S = 1.0


class ServeProcess:
    """``python -m digitnet serve MODEL --port 0 ...`` on 127.0.0.1, its output collected.

    Parameters
    ----------
    model : Path
        The model file.
    *options : str
        More command-line options.
    fd_limit : int, optional
        ``RLIMIT_NOFILE`` (soft and hard) set in the server process before it starts.
    """

    def __init__(self, model: Path, *options: str, fd_limit: int | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
        command = ["-m", "digitnet", "serve", str(model), "--port", "0", *options]
        if fd_limit:  # set inside the server process (not with preexec_fn, unsafe with threads)
            limited = (
                "import resource, runpy, sys; "
                f"resource.setrlimit(resource.RLIMIT_NOFILE, ({fd_limit}, {fd_limit})); "
                f"sys.argv = ['digitnet', *{command[2:]!r}]; "
                "runpy.run_module('digitnet', run_name='__main__')"
            )
            command = ["-c", limited]
        self.process = subprocess.Popen(
            [sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self.output = bytearray()
        first_line = threading.Event()
        threading.Thread(target=self._drain, args=(first_line,), daemon=True).start()
        if not first_line.wait(60) or b" at http://127.0.0.1:" not in self.output:
            self.stop()
            raise AssertionError(f"digitnet serve did not start: {self.output.decode(errors='replace')}")
        self.port = int(self.output.split(b"http://127.0.0.1:")[1].split(b"/")[0])
        deadline = time.monotonic() + 30
        while exchange(self.port, request("GET", "/healthz"), wait=2)[1][:12] != b"HTTP/1.1 200":
            assert time.monotonic() < deadline and self.process.poll() is None, "no answer on /healthz"
            time.sleep(0.05)

    def _drain(self, first_line: threading.Event) -> None:
        for line in self.process.stdout:
            self.output += line
            first_line.set()
        first_line.set()

    def open_fds(self) -> int | None:
        """How many file descriptors the server has open (None where /proc is missing)."""
        try:
            return len(os.listdir(f"/proc/{self.process.pid}/fd"))
        except OSError:
            return None

    def stop(self) -> str:
        """Stop it as Ctrl+C does; return everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        time.sleep(0.1)  # let the drain thread take the last lines
        return self.output.decode(errors="replace")


def request(method: str, path: str, host: str | None = "127.0.0.1", headers: str = "", body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 request; ``host`` None sends none."""
    host_line = f"Host: {host}\r\n" if host is not None else ""
    return f"{method} {path} HTTP/1.1\r\n{host_line}{headers}\r\n".encode() + body


def exchange(
    port: int, data: bytes, wait: float = 5.0, dripped: bytes = b"", drip: float = 0.05
) -> tuple[float, bytes]:
    """Send ``data``, then ``dripped`` a byte every ``drip`` seconds; read until the server closes.

    Returns
    -------
    seconds : float
        From connecting to the server closing the connection (``wait`` if it never did).
    answer : bytes
        What the server sent.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        start = time.monotonic()
        sock.sendall(data)
        _drip(sock, dripped, drip, start + wait)
        answer = b""
        sock.settimeout(max(0.01, start + wait - time.monotonic()))
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            return wait, answer
        except ConnectionResetError:
            pass
        return time.monotonic() - start, answer


def _drip(sock: socket.socket, data: bytes, interval: float, until: float) -> None:
    for byte in data:
        if time.monotonic() > until:
            return
        try:
            sock.send(bytes([byte]))
        except OSError:  # the server closed the connection: what the test is waiting for
            return
        time.sleep(interval)


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one raw HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def assert_json_error(answer: bytes, status: int, *words: str) -> dict[str, str]:
    """The answer is ``status`` with a JSON ``{"detail": "<sentence>"}`` naming ``words``."""
    code, headers, body = parse(answer)
    assert code == status, answer
    assert headers["content-type"].startswith("application/json"), headers
    detail = json.loads(body)["detail"]
    assert detail.endswith(".") and all(word.lower() in detail.lower() for word in words), detail
    return headers


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "tiny.npz"
    build_mlp((8,), rng=np.random.default_rng(0)).save(path)
    return path


@pytest.fixture(scope="module")
def server(model_path):
    """One server with one-second timeouts, shared by the tests of single connections."""
    process = ServeProcess(
        model_path,
        "--header-timeout",
        str(TIMEOUT_S),
        "--body-timeout",
        str(TIMEOUT_S),
        "--keep-alive-timeout",
        str(TIMEOUT_S),
        "--allow-host",
        "digits.example",
    )
    yield process
    log = process.stop()
    assert "Traceback" not in log, log


# -- idle and slow clients ------------------------------------------------------------------------


def test_a_connection_that_never_sends_anything_is_closed_after_the_header_timeout(server):
    seconds, answer = exchange(server.port, b"", wait=TIMEOUT_S + 4)
    assert answer == b""  # closed without an answer: there was no request to answer
    assert TIMEOUT_S * 0.8 <= seconds < TIMEOUT_S + 2


def test_a_connection_idle_after_an_answer_is_closed_after_the_keep_alive_timeout(server):
    seconds, answer = exchange(server.port, request("GET", "/healthz"), wait=TIMEOUT_S + 4)
    assert parse(answer)[0] == 200 and answer.count(b"HTTP/1.1") == 1
    assert TIMEOUT_S * 0.8 <= seconds < TIMEOUT_S + 2


def test_headers_sent_a_byte_at_a_time_are_cut_off_with_408(server):
    # Slowloris: every byte arrives well within any idle timeout, but the head never ends.
    head = request("GET", "/healthz", headers="X-Padding: " + "a" * 200 + "\r\n")
    seconds, answer = exchange(server.port, b"", wait=TIMEOUT_S + 4, dripped=head, drip=0.05)
    assert_json_error(answer, 408, "headers", "did not arrive")
    assert seconds < TIMEOUT_S + 2


def test_a_body_cut_short_is_answered_408_after_the_body_timeout(server):
    truncated = request(
        "POST",
        "/api/predict",
        headers="Content-Type: application/json\r\nContent-Length: 1000\r\n",
        body=b'{"pixels": [[0, 1',
    )
    seconds, answer = exchange(server.port, truncated, wait=TIMEOUT_S + 4)
    headers = assert_json_error(answer, 408, "body", "did not arrive")
    assert headers["connection"] == "close"
    assert TIMEOUT_S * 0.8 <= seconds < TIMEOUT_S + 2


def test_a_body_sent_a_byte_at_a_time_is_cut_off_too(server):
    body = json.dumps({"pixels": [[0.0, 1.0, 0.0]] * 20}).encode()
    head = request("POST", "/api/predict", headers=f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
    seconds, answer = exchange(server.port, head, wait=TIMEOUT_S + 6, dripped=body, drip=0.01)
    assert_json_error(answer, 408, "body")
    assert seconds < TIMEOUT_S + 3


def test_a_request_answered_before_its_body_gets_no_second_answer_when_the_body_stalls(server):
    # 415 needs no body, so the app answers at once; the body timeout then only closes.
    stalled = request(
        "POST", "/api/predict", headers="Content-Type: text/plain\r\nContent-Length: 1000\r\n", body=b"some"
    )
    seconds, answer = exchange(server.port, stalled, wait=TIMEOUT_S + 4)
    assert_json_error(answer, 415, "Content-Type")
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert TIMEOUT_S * 0.8 <= seconds < TIMEOUT_S + 2


# -- malformed requests ---------------------------------------------------------------------------


def test_content_length_with_transfer_encoding_is_answered_400_at_once(server):
    # h11 alone follows the chunked framing, finds no chunk in "hello" and waits for ever.
    smuggled = request(
        "POST",
        "/api/predict",
        headers="Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        body=b"hello",
    )
    seconds, answer = exchange(server.port, smuggled)
    headers = assert_json_error(answer, 400, "Content-Length", "Transfer-Encoding")
    assert headers["connection"] == "close" and seconds < 1.0


@pytest.mark.parametrize(
    "data, words",
    [
        (b"GARBAGE\r\n\r\n", ["not valid HTTP"]),
        (b"GET /healthz HTTP/1.1\r\n\r\n", ["Host"]),  # HTTP/1.1 requires a Host header
        (request("POST", "/api/predict", headers="Content-Length: -1\r\n"), ["Content-Length"]),
    ],
    ids=["not-http", "no-host", "negative-length"],
)
def test_malformed_requests_get_a_json_400_and_the_connection_closes(server, data, words):
    seconds, answer = exchange(server.port, data)
    assert_json_error(answer, 400, *words)
    assert seconds < 1.0


# -- Host check and HEAD --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "localhost:{port}",
        "127.0.0.1:{port}",
        "[::1]:{port}",
        "LOCALHOST:{port}",
        "digits.example:{port}",
    ],
)
def test_the_loopback_names_and_allowed_hosts_are_answered(server, host):
    _, answer = exchange(
        server.port, request("GET", "/healthz", host=host.format(port=server.port), headers="Connection: close\r\n")
    )
    assert parse(answer)[0] == 200, answer


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:{port}",
        "127.0.0.1.attacker.example",
        "localhost.attacker.example:{port}",
        "10.0.0.8:{port}",
    ],
)
def test_a_dns_rebinding_host_is_refused_with_421(server, host):
    _, answer = exchange(
        server.port, request("GET", "/api/model", host=host.format(port=server.port), headers="Connection: close\r\n")
    )
    assert_json_error(answer, 421, "--allow-host")
    _, page = exchange(
        server.port, request("GET", "/", host=host.format(port=server.port), headers="Connection: close\r\n")
    )
    assert parse(page)[0] == 421  # the page too: a rebinding page could read it like the API


@pytest.mark.parametrize(
    "path", ["/", "/static/app.js", "/static/pad.js", "/static/style.css", "/api/model", "/healthz"]
)
def test_head_answers_like_get_without_a_body(server, path):
    _, got = exchange(server.port, request("GET", path, headers="Connection: close\r\n"))
    _, head = exchange(server.port, request("HEAD", path, headers="Connection: close\r\n"))
    get_status, get_headers, get_body = parse(got)
    head_status, head_headers, head_body = parse(head)
    assert get_status == head_status == 200
    assert head_body == b"" and len(get_body) > 0
    for name in ("content-type", "content-length", "content-security-policy"):
        assert head_headers.get(name) == get_headers.get(name), name
    assert int(head_headers["content-length"]) == len(get_body)


def test_head_is_not_allowed_where_get_is_not(server):
    _, answer = exchange(server.port, request("HEAD", "/api/predict", headers="Connection: close\r\n"))
    assert parse(answer)[0] == 405


# -- the connection limit ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_connection_server(model_path):
    process = ServeProcess(model_path, "--max-connections", "2", "--body-timeout", "5")
    yield process
    process.stop()


def test_at_the_connection_limit_the_longest_idle_connection_makes_room(two_connection_server):
    port = two_connection_server.port
    with (
        socket.create_connection(("127.0.0.1", port)) as oldest,
        socket.create_connection(("127.0.0.1", port)) as newer,
    ):
        time.sleep(0.3)  # both accepted, both waiting for a request
        _, answer = exchange(port, request("GET", "/healthz", headers="Connection: close\r\n"))
        assert parse(answer)[0] == 200
        oldest.settimeout(2)
        assert oldest.recv(1) == b""  # closed to make room
        newer.setblocking(False)
        with pytest.raises(BlockingIOError):  # still open: only one was needed
            newer.recv(1)


def test_at_the_connection_limit_with_every_connection_busy_a_new_one_gets_503(two_connection_server):
    port = two_connection_server.port
    partial = request(
        "POST", "/api/predict", headers="Content-Type: application/json\r\nContent-Length: 100\r\n", body=b"{"
    )
    with (
        socket.create_connection(("127.0.0.1", port)) as first,
        socket.create_connection(("127.0.0.1", port)) as second,
    ):
        first.sendall(partial)
        second.sendall(partial)
        time.sleep(0.3)  # both mid-request: neither may be closed to make room
        seconds, answer = exchange(port, b"", wait=3)
        assert_json_error(answer, 503, "too many connections")
        assert seconds < 1.0
    # Once they are gone there is room again.
    time.sleep(0.3)
    assert parse(exchange(port, request("GET", "/healthz", headers="Connection: close\r\n"))[1])[0] == 200


# -- more connections than file descriptors -------------------------------------------------------


def open_idle_connections(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that never send a byte (non-blocking connects, so none waits)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


#: A TCP connection attempt dropped by a full accept queue is retried after 1 s, then 2 s more.
SYN_RETRIES_SECONDS = 3.5


def timed_healthz(port: int) -> tuple[float, int]:
    start = time.monotonic()
    _, answer = exchange(port, request("GET", "/healthz", headers="Connection: close\r\n"), wait=5)
    return time.monotonic() - start, parse(answer)[0] if answer else 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc (Linux)")
def test_more_idle_connections_than_file_descriptors_leave_healthz_answering_and_the_log_quiet(model_path):
    # The audit's scenario scaled down (1,024 descriptors, 1,100 sockets: benchmarks/load_test.py
    # --slow-connections): a 256-descriptor server, 300 idle connections, default timeouts.
    limit, count = 256, 300
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    server = ServeProcess(model_path, fd_limit=limit)
    peak = [0]
    done = threading.Event()

    def watch_descriptors() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.open_fds() or 0)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_descriptors, daemon=True)
    watcher.start()
    sockets = open_idle_connections(server.port, count)
    try:
        time.sleep(1)
        during = timed_healthz(server.port)  # at the connection limit: an idle one makes room
        time.sleep(15 - 1 - during[0])
        after = timed_healthz(server.port)  # every idle connection has timed out by now
        fds_after = server.open_fds()
    finally:
        done.set()
        watcher.join(5)
        for sock in sockets:
            sock.close()
        log = server.stop()
    # Answered, not starved (before the guard: no answer in 5 s). Within 3.5 s, not 1: CI once
    # measured 1.02 s (2 ms usually), most likely a connection attempt dropped while the flood still
    # filled the kernel's accept queue and retried 1 s later, as TCP does (then 2 s more).
    assert during[1] == 200 and during[0] < SYN_RETRIES_SECONDS, during
    assert after[1] == 200 and after[0] < SYN_RETRIES_SECONDS, after
    assert peak[0] < limit, f"the server used {peak[0]} of its {limit} descriptors"
    assert fds_after < 64, f"{fds_after} descriptors still open: idle connections were not closed"
    assert "Too many open files" not in log and "out of system resource" not in log, log[:2000]
    assert len(log) < 1000, log[:2000]


# -- the pieces, in process -----------------------------------------------------------------------


@pytest.mark.parametrize("fd_limit", [256, 1024, 4096, 65536])
def test_the_connection_budget_leaves_room_for_the_process_and_three_accept_batches(monkeypatch, fd_limit):
    monkeypatch.setattr(web_server, "_fd_limit", lambda: fd_limit)
    budget = web_server.connection_budget(100_000)
    assert budget.fd_limit == fd_limit
    assert budget.max_connections + 3 * budget.backlog + min(web_server.RESERVED_FDS, fd_limit // 4) <= fd_limit
    assert budget.max_connections >= fd_limit // 3  # and it still serves a useful number
    assert web_server.connection_budget(50).max_connections == 50  # a lower request is kept


def test_a_tiny_descriptor_limit_is_refused_in_one_sentence(monkeypatch):
    from digitnet.errors import DigitnetError

    monkeypatch.setattr(web_server, "_fd_limit", lambda: 24)
    with pytest.raises(DigitnetError, match="ulimit -n"):
        web_server.connection_budget(1000)


def test_floods_of_accept_errors_and_bad_requests_are_logged_once_a_minute():
    records = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test_server_limits.flood")
    logger.addHandler(Collect())
    logger.propagate = False
    logger.addFilter(web_server._RateLimitedRecords(["socket.accept() out of system resource"]))
    error = OSError(24, "Too many open files")
    for _ in range(1000):  # as asyncio logs each failed accept
        logger.error("socket.accept() out of system resource\nsocket: <fd=3>", exc_info=error)
    logger.warning("something else")
    assert len(records) == 2
    assert records[0].exc_info is None and "more like it" in records[0].getMessage()
    assert records[1].getMessage() == "something else"


@pytest.mark.parametrize(
    "bind, allowed, refused, ip_literals",
    [
        ("127.0.0.1", ["localhost", "127.0.0.1", "[::1]"], [], False),
        ("::1", ["[::1]", "localhost"], [], False),
        ("0.0.0.0", ["localhost", "mypc.local"], [], True),
        ("192.168.1.5", ["192.168.1.5", "localhost"], [], False),
        ("fe80::1", ["[fe80::1]"], ["fe80::1"], False),
    ],
)
def test_the_host_policy_follows_the_bind_address(bind, allowed, refused, ip_literals):
    names, allow_ip_literals = web_server.host_policy(bind, ["mypc.local"])
    assert set(allowed) <= set(names) and not set(refused) & set(names)
    assert allow_ip_literals is ip_literals


@pytest.mark.parametrize("name", ["http://mypc.local", "mypc.local:8000", "*mypc.local", "a.*.example", ""])
def test_an_allow_host_that_could_never_match_is_refused_in_one_sentence(name):
    from digitnet.errors import DigitnetError

    with pytest.raises(DigitnetError, match="--allow-host"):
        web_server.host_policy("127.0.0.1", [name])
