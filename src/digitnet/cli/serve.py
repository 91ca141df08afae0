"""``digitnet serve``: the draw-a-digit web page and its JSON API, on uvicorn."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import click

from ..errors import DigitnetError
from .common import model_or_reader


def open_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` (port 0: any free port), or raise :class:`click.ClickException`.

    Binding here, before uvicorn starts, lets us print the real URL (also for ``--port 0``) and turn
    "address already in use" into one clear sentence instead of a server log.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as error:
        raise click.ClickException(
            f"Cannot listen on host {host!r} ({error}); use an address such "
            "as 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)."
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise click.ClickException(
            f"Cannot listen on {host}:{port} ({error.strerror or error}); pick "
            "another port with --port, or --port 0 for any free one."
        ) from None
    return sock


def page_url(host: str, port: int) -> str:
    """The URL to open in a browser for a server bound to ``host:port``."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def run_server(app, sock: socket.socket, limits=None) -> None:
    """Run ``app`` on uvicorn (one process, one event loop) on an already listening socket.

    ``limits`` is a :class:`digitnet.web.server.ServerLimits` (timeouts, connection limit); None
    uses its defaults.
    """
    from ..web.server import ServerLimits, run

    run(app, sock, limits if limits is not None else ServerLimits())


@click.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The default serves this machine only; 0.0.0.0 lets other "
    "devices (a phone on the same network) connect.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests addressed to NAME (a host name such as mypc.local, or "
    "*.example.com); repeatable. Other names get 421, which stops DNS-rebinding "
    "pages from reading the API. localhost and 127.0.0.1 always work; on 0.0.0.0, "
    "so do the machine's IP addresses.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.1, 3600),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a request's headers; slower ones are closed.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds a client has to send a request's body after its headers.",
)
@click.option(
    "--keep-alive-timeout",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="Seconds an idle connection is kept open after an answer.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Most connections open at once (lowered to fit the open-file limit); at the "
    "limit, the connection idle longest is closed to make room.",
)
def serve(
    model: Path | None,
    host: str,
    port: int,
    allow_hosts: tuple[str, ...],
    header_timeout: float,
    body_timeout: float,
    keep_alive_timeout: float,
    max_connections: int,
) -> None:
    """Open a page where you draw a digit and watch MODEL read it as you draw.

    It shows the predicted digit, the ten probabilities and the 28x28 image the network sees
    after the same MNIST-style preprocessing as `digitnet predict`. Without MODEL it serves the
    reader model that ships with digitnet. The JSON API behind the page is described at
    /openapi.json.
    """
    from ..web import create_app
    from ..web.server import ServerLimits, connection_budget, host_policy

    limits = ServerLimits(
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        keep_alive_timeout=keep_alive_timeout,
        max_connections=max_connections,
    )
    try:
        names, allow_ip_literals = host_policy(host, allow_hosts)
        connection_budget(max_connections)  # fails early, in one sentence, on a tiny open-file limit
        network, name = model_or_reader(model)
        app = create_app(network, allowed_hosts=names, allow_ip_literals=allow_ip_literals)
    except DigitnetError as error:  # also when called outside the `digitnet` group
        raise click.ClickException(str(error)) from None

    sock = open_socket(host, port)
    bound_port = sock.getsockname()[1]
    click.echo(f"Serving {name} at {page_url(host, bound_port)}  (open it in a browser; Ctrl+C stops)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"Listening on {host}: other machines on your network can reach this page too"
            + (" at this machine's IP address (add --allow-host NAME to use a name)." if allow_ip_literals else ".")
        )
    sys.stdout.flush()  # the URL must show at once, even when stdout is a pipe
    try:
        run_server(app, sock, limits)
    except KeyboardInterrupt:  # uvicorn shuts down cleanly on Ctrl+C, then re-raises the signal
        click.echo("Stopped.")
    finally:
        sock.close()
