"""Serve an embedded chDB over the part of ClickHouse's HTTP interface clickhouse-connect uses.

The process side: bind (loopback only), publish the URL, stop on SIGTERM/SIGINT or when the
parent is gone, and the command line. The protocol is described in the package docstring.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from pipeline.dev.chserver.engine import Engine
from pipeline.dev.chserver.handler import Handler

log = logging.getLogger("teilhabe.chserver")


def write_addr_file(addr_file: Path, url: str) -> None:
    """Atomically publish the server's URL (temp file + rename)."""
    addr_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = addr_file.with_name(f".{addr_file.name}.{os.getpid()}.tmp")
    tmp.write_text(url + "\n")
    os.replace(tmp, addr_file)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many workers may connect at once
    daemon_threads = True


def _check_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"no authentication here: bind to a loopback address, not {host!r}")


def create_server(path: Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Open chDB at ``path`` and bind the HTTP server (not yet serving); ``.engine`` on it.

    Only loopback addresses are accepted: the server has no authentication.
    """
    _check_loopback(host)
    engine = Engine(path)
    handler = type("BoundHandler", (Handler,), {"engine": engine})
    try:
        server = _Server((host, port), handler)
    except BaseException:
        engine.close()
        raise
    server.engine = engine  # type: ignore[attr-defined]
    return server


def serve(
    path: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    addr_file: Path | None = None,
    parent_pid: int | None = None,
) -> None:
    """Serve chDB at ``path`` on ``host:port`` (0 = any free port) until SIGTERM/SIGINT.

    The URL is published atomically in ``addr_file`` (default ``<path>/clickhouse.addr``) and
    removed on a clean stop. With ``parent_pid`` the server also stops when that process is gone.
    """
    addr_file = addr_file if addr_file is not None else path / "clickhouse.addr"
    server = create_server(path, host, port)
    engine: Engine = server.engine  # type: ignore[attr-defined]
    url = f"http://{host}:{server.server_address[1]}"
    stopping = threading.Event()

    def stop(*_: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    def handle_signal(signum: int, frame: FrameType | None) -> None:
        log.info("embedded clickhouse got signal %s", signum)
        stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handle_signal)
        signal.signal(signal.SIGINT, handle_signal)
    if parent_pid:

        def watch_parent() -> None:
            while not stopping.wait(1.0):
                if os.getppid() != parent_pid:
                    log.warning("parent process %s is gone; stopping", parent_pid)
                    stop()

        threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()

    write_addr_file(addr_file, url)
    log.info(
        "embedded clickhouse serving path=%s url=%s pid=%s chdb=%s",
        path,
        url,
        os.getpid(),
        engine.version,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        stopping.set()
        server.server_close()
        engine.close()
        try:
            if addr_file.read_text().strip() == url:
                addr_file.unlink()
        except FileNotFoundError:
            pass
        log.info("embedded clickhouse stopped path=%s", path)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m pipeline.dev.chserver --path DIR [--addr-file F]``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.dev.chserver", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--path", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (keep it loopback)")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--addr-file", type=Path, default=None, help="where to publish the URL")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when it is gone")
    parser.add_argument("--log-level", default=os.environ.get("TEILHABE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    serve(args.path, args.host, args.port, args.addr_file, args.parent_pid)
