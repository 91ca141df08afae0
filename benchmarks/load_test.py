"""Load test for ``digitnet serve``: how many drawings a second can the web API read?

Starts ``digitnet serve`` (uvicorn, one process) on a free port on 127.0.0.1, then drives
``POST /api/predict`` with concurrent clients (httpx.AsyncClient on one event loop) for a bounded
time, and reports requests per second, latency percentiles and errors: Markdown on stdout, JSON with
``--out``. The load generator runs on the same machine, so it shares the cores with the server.

With ``--slow-connections`` it replays a reliability audit instead: a server limited to
``--fd-limit`` file descriptors (1,024) gets ``--idle`` connections that never send a byte (1,100),
plus optional slowloris clients (a header byte every two seconds) and clients that stop halfway
through a body; for ``--observe`` seconds it probes ``GET /healthz`` once a second and records how
many of each kind the server still holds open, its descriptor count and how much it has logged.

Usage::

    python benchmarks/load_test.py                      # 16 clients for 10 s, the page's 56x56 drawing
    python benchmarks/load_test.py --model model.npz --concurrency 32 --duration 30 --out load.json
    python benchmarks/load_test.py --payload upload     # PNG uploads instead of JSON drawings
    python benchmarks/load_test.py --slow-connections   # 1,100 idle sockets vs 1,024 descriptors, 20 s
    python benchmarks/load_test.py --slow-connections --idle 300 --slowloris 200 --partial-body 200 --observe 40
    python benchmarks/load_test.py --slow-connections --src ../other-checkout/src   # compare a version

Without ``--model`` it uses ./model.npz if there is one, else an untrained seed network (784-128-10):
the cost of a prediction does not depend on the weights. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import io
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]


def page_drawing(size: int = 56) -> list[list[float]]:
    """A 7 as the page sends it: drawn on a 280x280 pad, averaged to ``size``, two decimals."""
    pad = Image.new("L", (280, 280))
    ImageDraw.Draw(pad).line([(78, 56), (202, 56), (118, 238)], fill=255, width=18, joint="curve")
    factor = 280 // size
    ink = np.asarray(pad, dtype=np.float64).reshape(size, factor, size, factor).mean(axis=(1, 3)) / 255
    # JSON.stringify writes 0 and 1 without a decimal point; match its size on the wire.
    return [[int(v) if v in (0.0, 1.0) else v for v in row] for row in np.round(ink, 2).tolist()]


PAYLOADS = {
    "drawing": "POST /api/predict, the page's 56x56 JSON ink array (a 7)",
    "mnist28": "POST /api/predict, a 28x28 JSON ink array",
    "upload": "POST /api/predict, a 280x280 PNG as multipart field 'image'",
    "healthz": "GET /healthz, no work: the HTTP stack's ceiling on this machine at this moment",
}


def request_for(payload: str) -> dict:
    """The keyword arguments of ``httpx.AsyncClient.request`` for one request of the chosen payload."""
    predict = {"method": "POST", "url": "/api/predict"}
    if payload == "drawing":
        return {
            **predict,
            "content": json.dumps({"pixels": page_drawing()}, separators=(",", ":")).encode(),
            "headers": {"Content-Type": "application/json"},
        }
    if payload == "mnist28":
        return {
            **predict,
            "content": json.dumps({"pixels": page_drawing(28)}, separators=(",", ":")).encode(),
            "headers": {"Content-Type": "application/json"},
        }
    if payload == "upload":
        pad = Image.new("L", (280, 280), 255)
        ImageDraw.Draw(pad).line([(78, 56), (202, 56), (118, 238)], fill=0, width=18, joint="curve")
        buffer = io.BytesIO()
        pad.save(buffer, format="PNG")
        return {**predict, "files": {"image": ("seven.png", buffer.getvalue(), "image/png")}}
    if payload == "healthz":  # a yardstick: what HTTP alone costs on this machine, right now
        return {"method": "GET", "url": "/healthz"}
    raise ValueError(payload)


def default_model(workdir: Path) -> tuple[Path, str]:
    """``./model.npz`` if present, else an untrained seed network saved in ``workdir``."""
    if Path("model.npz").is_file():
        return Path("model.npz"), "model.npz"
    sys.path.insert(0, str(REPO / "src"))
    from digitnet.nn import build_mlp

    path = workdir / "untrained.npz"
    build_mlp((128,), rng=np.random.default_rng(0), mean=0.1307, std=0.3081).save(path)
    return path, "untrained 784-128-10 (same cost as a trained one)"


class Server:
    """``digitnet serve MODEL --port 0`` in a subprocess; the URL is read from what it prints.

    ``fd_limit`` sets ``RLIMIT_NOFILE`` inside the server process before it starts; ``src`` runs the
    digitnet found there (another checkout's ``src``) instead of this one's. Everything the server
    prints is drained (a chatty server never blocks on a full pipe) and measured.
    """

    def __init__(self, model: Path, fd_limit: int | None = None, src: Path = REPO / "src") -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
        arguments = ["serve", str(model), "--host", "127.0.0.1", "--port", "0"]
        self.command = [sys.executable, "-m", "digitnet", *arguments]
        if fd_limit:
            self.command = [
                sys.executable,
                "-c",
                (
                    "import resource, runpy, sys; "
                    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({fd_limit}, {fd_limit})); "
                    f"sys.argv = ['digitnet', *{arguments!r}]; runpy.run_module('digitnet', run_name='__main__')"
                ),
            ]
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.log_bytes, self.log_lines, self.log_head, self.emfile_lines = 0, 0, [], 0
        first_line: list[str] = []
        reader = threading.Thread(target=lambda: first_line.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        if not first_line or " at http://" not in first_line[0]:
            self.stop()
            raise SystemExit(f"digitnet serve did not start: {first_line[0] if first_line else 'no output'}")
        self.url = first_line[0].split(" at ")[1].split()[0].rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("digitnet serve did not answer /healthz within 30 s")
            time.sleep(0.05)

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.log_bytes += len(line.encode())
            self.log_lines += 1
            self.emfile_lines += "Too many open files" in line or "out of system resource" in line
            if len(self.log_head) < 12:
                self.log_head.append(line.rstrip())

    def open_fds(self) -> int | None:
        """How many file descriptors the server has open (None where /proc is missing)."""
        try:
            return len(os.listdir(f"/proc/{self.process.pid}/fd"))
        except OSError:
            return None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process has used so far; None where /proc is missing."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # what Ctrl+C does: uvicorn shuts down cleanly
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def drive(
    server: Server, request: dict, concurrency: int, duration: float, warmup: float, rate: float = 0.0
) -> dict:
    """``concurrency`` clients posting; only requests that start after the warm-up count.

    ``rate`` 0: each client posts back to back (a closed loop: the machine is saturated). Otherwise
    the clients together offer ``rate`` requests a second on a fixed schedule, and each latency is
    measured from the request's scheduled start, so a slow answer that delays the next request is
    counted against the server (no coordinated omission).
    """
    url = server.url
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        first = await client.request(**request)
        first.raise_for_status()
        sample = first.json()
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + duration
        server_cpu: list[float | None] = []

        client_cpu: list[float] = []

        async def sample_cpu_after_warmup() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            server_cpu.append(server.cpu_seconds())
            client_cpu.append(time.process_time())

        async def client_loop(number: int) -> None:
            interval = concurrency / rate if rate else 0.0
            scheduled = start + number * interval / concurrency
            while (began := time.perf_counter()) < stop_at:
                if rate:
                    if scheduled > began:
                        await asyncio.sleep(scheduled - began)
                    began = scheduled
                    scheduled += interval
                try:
                    response = await client.request(**request)
                    ok = response.status_code == 200
                    kind = None if ok else f"HTTP {response.status_code}"
                except httpx.HTTPError as error:
                    kind = type(error).__name__
                if began >= measure_from:
                    if kind is None:
                        latencies.append(time.perf_counter() - began)
                    else:
                        errors[kind] = errors.get(kind, 0) + 1

        await asyncio.gather(sample_cpu_after_warmup(), *(client_loop(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - measure_from
        server_cpu.append(server.cpu_seconds())
        client_cpu.append(time.process_time())
    ms = np.asarray(latencies) * 1000
    total = len(latencies) + sum(errors.values())
    # Server CPU per request: a cost that does not depend on how busy the machine is otherwise.
    cpu_ms = None if None in server_cpu or not latencies else round((server_cpu[1] - server_cpu[0]) * 1000 / total, 3)
    return {
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {
            name: round(float(np.percentile(ms, q)), 2) if len(ms) else None
            for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        },
        "server_cpu_ms_per_request": cpu_ms,
        "client_cpu_ms_per_request": round((client_cpu[1] - client_cpu[0]) * 1000 / total, 3) if total else None,
        "sample_answer": (
            {"digit": sample["digit"], "confidence": max(sample["probabilities"])} if "digit" in sample else sample
        ),
    }


def markdown(result: dict) -> str:
    lat = result["latency_ms"]
    errors = sum(result["errors"].values())
    return "\n".join(
        [
            f"### digitnet serve under load ({result['payload']}, {result['concurrency']} concurrent clients, "
            + (f"{result['offered_rate']:g} requests/s offered)" if result.get("offered_rate") else "back to back)"),
            "",
            f"Payload `{result['payload']}`: {PAYLOADS[result['payload']]}.",
            "",
            "| requests/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors | CPU ms/request: server, client |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            (
                f"| {result['requests_per_second']:.0f} | {lat['p50']} | {lat['p90']} | {lat['p99']} | {lat['max']} "
                f"| {result['requests']} | {errors} | {result['server_cpu_ms_per_request']}, "
                f"{result['client_cpu_ms_per_request']} |"
            ),
            "",
            (
                f"{result['seconds']:.1f} s measured after {result['warmup']:.0f} s of warm-up; body "
                f"{result['body_bytes']} bytes; model: {result['model']}; {result['cpus']} CPUs shared by server "
                f"and load generator; Python {result['python']}; server: `{' '.join(result['server_command'][1:])}`."
            ),
        ]
    )


# -- --slow-connections: clients that hold connections without finishing a request ------------

SLOW_KINDS = ("idle", "slowloris", "partial-body")
#: A slowloris client repeats this header line, one byte every DRIP_SECONDS: the head never ends.
SLOWLORIS_LINE = b"X-Wait: a\r\n"
DRIP_SECONDS = 2.0


class SlowClients:
    """Connections to ``port`` that never finish a request: idle, slowloris and partial-body ones.

    The slow and partial ones connect first (blocking, so their first bytes reach the server), then
    the idle flood opens with non-blocking connects, as fast as the kernel takes them.
    """

    def __init__(self, port: int, idle: int, slowloris: int, partial_body: int) -> None:
        self.port = port
        self.sockets: dict[str, list[socket.socket]] = {kind: [] for kind in SLOW_KINDS}
        self.answers: dict[str, dict[str, int]] = {kind: {} for kind in SLOW_KINDS}
        self._drip_at = 0
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        partial = (
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"pixels": [[0, 1'
        )
        for kind, count, first_bytes in (("slowloris", slowloris, head), ("partial-body", partial_body, partial)):
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(first_bytes)
                sock.setblocking(False)
                self.sockets[kind].append(sock)
        for _ in range(idle):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            self.sockets["idle"].append(sock)

    def still_open(self) -> dict[str, int]:
        """Forget the connections the server has closed; how many of each kind remain."""
        for kind, sockets in self.sockets.items():
            remaining = []
            for sock in sockets:
                if self._server_closed(sock, kind):
                    sock.close()
                else:
                    remaining.append(sock)
            self.sockets[kind] = remaining
        return {kind: len(sockets) for kind, sockets in self.sockets.items()}

    def _server_closed(self, sock: socket.socket, kind: str) -> bool:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as error:  # reset, or (not yet connected) still in the kernel's queue
            return error.errno != errno.ENOTCONN
        if data:  # an answer (408, 503...): note its status; the close follows
            status = data.split(b" ", 2)[1].decode(errors="replace") if data.startswith(b"HTTP/") else "?"
            self.answers[kind][status] = self.answers[kind].get(status, 0) + 1
            return False
        return True

    def drip(self) -> None:
        """Send every slowloris connection its next header byte."""
        byte = SLOWLORIS_LINE[self._drip_at % len(SLOWLORIS_LINE) :][:1]
        self._drip_at += 1
        for sock in self.sockets["slowloris"]:
            try:
                sock.send(byte)
            except OSError:  # closed by the server; still_open() will notice
                pass

    def close(self) -> None:
        for sockets in self.sockets.values():
            for sock in sockets:
                sock.close()


def probe_healthz(url: str) -> tuple[str, float]:
    """``GET /healthz`` on a fresh connection: its status (or the error's name) and seconds taken."""
    start = time.perf_counter()
    try:
        outcome = str(httpx.get(f"{url}/healthz", timeout=5, headers={"Connection": "close"}).status_code)
    except httpx.HTTPError as error:
        outcome = type(error).__name__
    return outcome, time.perf_counter() - start


def slow_connections(args: argparse.Namespace, model: Path) -> dict:
    """Run the ``--slow-connections`` scenario; one row a second of what the server still holds."""
    wanted = args.idle + args.slowloris + args.partial_body + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:  # this process holds every client socket
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    server = Server(model, fd_limit=args.fd_limit, src=args.src)
    rows, peak_fds = [], 0
    clients = SlowClients(server.port, args.idle, args.slowloris, args.partial_body)
    start = next_drip = time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < args.observe:
            healthz, seconds = probe_healthz(server.url)
            fds = server.open_fds()
            peak_fds = max(peak_fds, fds or 0)
            rows.append(
                {
                    "t": round(elapsed, 1),
                    "healthz": healthz,
                    "healthz_ms": round(seconds * 1000, 1),
                    "server_fds": fds,
                    "established": established_on(server.port),
                    "open": clients.still_open(),
                    "log_bytes": server.log_bytes,
                }
            )
            while time.monotonic() >= next_drip:
                clients.drip()
                next_drip += DRIP_SECONDS
            time.sleep(max(0.0, start + len(rows) - time.monotonic()))  # one row a second
    finally:
        clients.close()
        server.stop()
        time.sleep(0.2)  # the last of its output
    return {
        "rows": rows,
        "peak_server_fds": peak_fds,
        "answers": clients.answers,
        "log_bytes": server.log_bytes,
        "log_lines": server.log_lines,
        "emfile_lines": server.emfile_lines,
        "log_head": server.log_head,
        "server_command": server.command,
    }


def established_on(port: int) -> int | None:
    """TCP connections to ``port`` the server's kernel holds open (accepted or queued); Linux only.

    The server's own view, unlike the client's: a connection whose handshake the kernel dropped
    while its accept queue was full looks open to the client but costs the server nothing.
    """
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            fields = line.split()
            count += int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01"  # ESTABLISHED
    return count


def slow_markdown(result: dict) -> str:
    """The ``--slow-connections`` result as a Markdown table and a summary."""
    title = (
        f"### digitnet serve with {result['idle']} idle, {result['slowloris']} slowloris and "
        f"{result['partial_body']} partial-body connections, {result['fd_limit']} file descriptors"
    )
    legend = (
        "Open (server side): connections the server's kernel still holds (accepted or queued); the "
        "idle, slowloris and partial-body columns count client sockets the server has not visibly closed."
    )
    lines = [
        title,
        "",
        legend,
        "",
        "| s | /healthz | ms | server fds | open (server side) | idle | slowloris | partial-body | log bytes |",
        "| ---: | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        open_ = row["open"]
        lines.append(
            f"| {row['t']:.1f} | {row['healthz']} | {row['healthz_ms']} | {row['server_fds']} | "
            f"{row['established']} | {open_['idle']} | {open_['slowloris']} | {open_['partial-body']} "
            f"| {row['log_bytes']} |"
        )
    summary = (
        f"Peak server descriptors: {result['peak_server_fds']} of {result['fd_limit']}. Answers "
        f"before closing: {result['answers']}. Server log: {result['log_bytes']} bytes in "
        f"{result['log_lines']} lines, {result['emfile_lines']} about running out of descriptors. "
        f"{result['cpus']} CPUs; Python {result['python']}; server: `{' '.join(result['server_command'][1:])}`."
    )
    lines += ["", summary]
    if result["log_head"]:
        lines += ["", "First lines of the server's log:", "", "```", *result["log_head"], "```"]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="model file [default: ./model.npz, else an untrained one]")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients [16]")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured [10]")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring [1]")
    parser.add_argument(
        "--payload",
        choices=["drawing", "mnist28", "upload", "healthz"],
        default="drawing",
        help="drawing: the page's 56x56 JSON; mnist28: a 28x28 JSON array; upload: a "
        "280x280 PNG as multipart; healthz: GET /healthz, the HTTP stack alone, a "
        "yardstick for how busy the machine is [drawing]",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered requests per second, all clients together, on a fixed schedule "
        "[0: back to back, as fast as the machine goes]",
    )
    slow = parser.add_argument_group("--slow-connections: clients that never finish a request")
    slow.add_argument(
        "--slow-connections", action="store_true", help="replay the reliability audit instead of measuring throughput"
    )
    slow.add_argument("--fd-limit", type=int, default=1024, help="the server's RLIMIT_NOFILE [1024]")
    slow.add_argument("--idle", type=int, default=1100, help="connections that never send a byte [1100]")
    slow.add_argument(
        "--slowloris", type=int, default=0, help=f"connections sending a header byte every {DRIP_SECONDS:g} s [0]"
    )
    slow.add_argument(
        "--partial-body",
        type=int,
        default=0,
        help="connections that send a head and part of a 1,000-byte body, then wait [0]",
    )
    slow.add_argument("--observe", type=float, default=20.0, help="seconds to watch, probing once a second [20]")
    slow.add_argument(
        "--src",
        type=Path,
        default=REPO / "src",
        help="the digitnet source to serve, to compare versions [this checkout's src]",
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    return parser.parse_args()


def run_load(args: argparse.Namespace, model: Path) -> dict:
    """The throughput measurement: ``--concurrency`` clients posting ``--payload`` requests."""
    request = request_for(args.payload)
    server = Server(model)
    try:
        result = asyncio.run(drive(server, request, args.concurrency, args.duration, args.warmup, args.rate))
    finally:
        server.stop()
    result.update(
        {
            "payload": args.payload,
            "concurrency": args.concurrency,
            "offered_rate": args.rate or None,
            "warmup": args.warmup,
            "server_command": server.command,
            "body_bytes": (
                len(request["content"])
                if "content" in request
                else len(request["files"]["image"][1])
                if "files" in request
                else 0
            ),
        }
    )
    return result


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        model, model_name = (args.model, str(args.model)) if args.model else default_model(Path(workdir))
        result = slow_connections(args, model) if args.slow_connections else run_load(args, model)
    result.update(
        {
            "model": model_name,
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        }
    )
    if args.slow_connections:
        result.update(
            {
                "fd_limit": args.fd_limit,
                "idle": args.idle,
                "slowloris": args.slowloris,
                "partial_body": args.partial_body,
                "observe": args.observe,
            }
        )
    print(slow_markdown(result) if args.slow_connections else markdown(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
