"""Running the app with uvicorn: in the foreground (`latentcomp serve`) or in a background thread (tests,
benchmarks, screenshots)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass

from ..extras import require

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]", "::1"]


def is_loopback(host: str) -> bool:
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def is_all_interfaces(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def url_for(host: str, port: int) -> str:
    h = host.strip("[]")
    if is_all_interfaces(h):
        h = "127.0.0.1"
    return f"http://[{h}]:{port}/" if ":" in h else f"http://{h}:{port}/"


def _config(app, host: str, port: int, log_level: str):
    uvicorn = require("uvicorn", "the web editor")

    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on",
        timeout_graceful_shutdown=3, server_header=False,
    )  # fmt: skip


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound now so that a port in use is reported before anything is printed."""
    from ..errors import LatentcompError

    h = host.strip("[]")
    family = socket.AF_INET6 if ":" in h else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((h, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise LatentcompError(
            f"cannot listen on {host}:{port}: {e.strerror or e}; pick another --port or --host"
        ) from None
    return sock


def run(app, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve on a socket from `bind` in the foreground until Ctrl+C."""
    uvicorn = require("uvicorn", "the web editor")

    host, port = sock.getsockname()[:2]
    uvicorn.Server(_config(app, host, port, log_level)).run(sockets=[sock])


@dataclass
class BackgroundServer:
    server: object
    thread: threading.Thread
    url: str

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_in_thread(app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                    timeout: float = 30.0) -> BackgroundServer:  # fmt: skip
    """Start uvicorn in a daemon thread (port 0 = a free port) and wait until it accepts connections."""
    uvicorn = require("uvicorn", "the web editor")

    server = uvicorn.Server(_config(app, host, port, log_level))
    server.install_signal_handlers = lambda: None  # not the main thread (older uvicorn versions)
    thread = threading.Thread(target=server.run, name="latentcomp-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the web server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = port
    for s in getattr(server, "servers", []):
        for sock in s.sockets:
            bound = sock.getsockname()[1]
            break
    return BackgroundServer(server, thread, url_for(host, bound))
