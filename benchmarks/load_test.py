"""Load test for ``digitnet serve``: how many drawings a second can the web API read?

Starts ``digitnet serve`` (uvicorn, one process) on a free port on 127.0.0.1, then drives
``POST /api/predict`` with concurrent clients (httpx.AsyncClient on one event loop) for a bounded
time, and reports requests per second, latency percentiles and errors: Markdown on stdout, JSON with
``--out``. The load generator runs on the same machine, so it shares the cores with the server.

Usage::

    python benchmarks/load_test.py                      # 16 clients for 10 s, the page's 56x56 drawing
    python benchmarks/load_test.py --model model.npz --concurrency 32 --duration 30 --out load.json
    python benchmarks/load_test.py --payload upload     # PNG uploads instead of JSON drawings

Without ``--model`` it uses ./model.npz if there is one, else an untrained seed network (784-128-10):
the cost of a prediction does not depend on the weights. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
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
        return {**predict, "content": json.dumps({"pixels": page_drawing()}, separators=(",", ":")).encode(),
                "headers": {"Content-Type": "application/json"}}
    if payload == "mnist28":
        return {**predict, "content": json.dumps({"pixels": page_drawing(28)}, separators=(",", ":")).encode(),
                "headers": {"Content-Type": "application/json"}}
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
    """``digitnet serve MODEL --port 0`` in a subprocess; the URL is read from what it prints."""

    def __init__(self, model: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                        os.environ.get("PYTHONPATH")]))}
        self.command = [sys.executable, "-m", "digitnet", "serve", str(model), "--host", "127.0.0.1",
                        "--port", "0"]
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, env=env)
        first_line: list[str] = []
        reader = threading.Thread(target=lambda: first_line.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        if not first_line or " at http://" not in first_line[0]:
            self.stop()
            raise SystemExit(f"digitnet serve did not start: {first_line[0] if first_line else 'no output'}")
        self.url = first_line[0].split(" at ")[1].split()[0].rstrip("/")
        # Keep draining its output so a chatty server can never block on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
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


async def drive(server: Server, request: dict, concurrency: int, duration: float, warmup: float,
                rate: float = 0.0) -> dict:
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
    cpu_ms = (None if None in server_cpu or not latencies
              else round((server_cpu[1] - server_cpu[0]) * 1000 / total, 3))
    return {
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {name: round(float(np.percentile(ms, q)), 2) if len(ms) else None
                       for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "server_cpu_ms_per_request": cpu_ms,
        "client_cpu_ms_per_request": round((client_cpu[1] - client_cpu[0]) * 1000 / total, 3) if total else None,
        "sample_answer": ({"digit": sample["digit"], "confidence": max(sample["probabilities"])}
                          if "digit" in sample else sample),
    }


def markdown(result: dict) -> str:
    lat = result["latency_ms"]
    errors = sum(result["errors"].values())
    return "\n".join([
        f"### digitnet serve under load ({result['payload']}, {result['concurrency']} concurrent clients, "
        + (f"{result['offered_rate']:g} requests/s offered)" if result.get("offered_rate") else "back to back)"),
        "",
        f"Payload `{result['payload']}`: {PAYLOADS[result['payload']]}.",
        "",
        "| requests/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors | CPU ms/request: server, client |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        (f"| {result['requests_per_second']:.0f} | {lat['p50']} | {lat['p90']} | {lat['p99']} | {lat['max']} "
         f"| {result['requests']} | {errors} | {result['server_cpu_ms_per_request']}, "
         f"{result['client_cpu_ms_per_request']} |"),
        "",
        (f"{result['seconds']:.1f} s measured after {result['warmup']:.0f} s of warm-up; body "
         f"{result['body_bytes']} bytes; model: {result['model']}; {result['cpus']} CPUs shared by server "
         f"and load generator; Python {result['python']}; server: `{' '.join(result['server_command'][1:])}`."),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model file [default: ./model.npz, else an untrained one]")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients [16]")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured [10]")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring [1]")
    parser.add_argument("--payload", choices=["drawing", "mnist28", "upload", "healthz"], default="drawing",
                        help="drawing: the page's 56x56 JSON; mnist28: a 28x28 JSON array; upload: a "
                             "280x280 PNG as multipart; healthz: GET /healthz, the HTTP stack alone, a "
                             "yardstick for how busy the machine is [drawing]")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offered requests per second, all clients together, on a fixed schedule "
                             "[0: back to back, as fast as the machine goes]")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        model, model_name = (args.model, str(args.model)) if args.model else default_model(Path(workdir))
        request = request_for(args.payload)
        server = Server(model)
        try:
            result = asyncio.run(drive(server, request, args.concurrency, args.duration, args.warmup, args.rate))
        finally:
            server.stop()
    result.update({
        "payload": args.payload, "concurrency": args.concurrency, "offered_rate": args.rate or None, "warmup": args.warmup, "model": model_name,
        "body_bytes": (len(request["content"]) if "content" in request
                       else len(request["files"]["image"][1]) if "files" in request else 0),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(), "server_command": server.command,
    })
    print(markdown(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
