"""The embedded ClickHouse (chDB behind ``pipeline.dev.chserver``) as a child process.

Dev and single-host only: the worker, ``demo`` and ``backfill`` start it when
``TEILHABE_CLICKHOUSE_DSN`` is ``chdb://`` (``<data_dir>/clickhouse``) or ``chdb://DIR``; clients
find it through the address file (``pipeline.sinks.clickhouse.addr_file``).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from pipeline.errors import SinkError
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import addr_file, embedded_url, ping

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


class EmbeddedClickHouse:
    """The embedded ClickHouse server as a child process (context manager).

    The child runs ``python -m pipeline.dev.chserver`` in its own process group (a Ctrl-C meant for
    the parent does not cut the sink off mid-shutdown), logs to ``<data_dir>/logs/clickhouse.log``
    and stops by itself when its parent dies.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log_path = settings.data_dir / "logs" / "clickhouse.log"

    @property
    def pid(self) -> int:
        """Process id of the server (0 when not running)."""
        return self.proc.pid if self.proc else 0

    def _log_tail(self, offset: int, limit: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return text[-limit:].strip()

    def start(self, timeout_s: float = START_TIMEOUT_S) -> EmbeddedClickHouse:
        """Spawn the server and wait until /ping answers; SinkError with its log tail if not."""
        s = self.settings
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        af = addr_file(s)
        before = _file_id(af)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = [
            sys.executable,
            "-m",
            "pipeline.dev.chserver",
            "--path",
            str(s.chdb_path),
            "--addr-file",
            str(af),
            "--parent-pid",
            str(os.getpid()),
            "--log-level",
            s.log_level,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise SinkError(
                    f"the embedded ClickHouse ({s.chdb_path}) exited at start with code {code}; "
                    f"is another process using the directory? Log {self.log_path}:\n"
                    + self._log_tail(offset)
                )
            url = ""
            if _file_id(af) != before:  # (re)written by our child, not a stale or foreign one
                try:
                    url = af.read_text().strip()
                except FileNotFoundError:
                    pass
            if url and ping(url, timeout=1.0):
                self.url = url
                return self
            time.sleep(0.05)
        tail = self._log_tail(offset)
        self.stop()
        raise SinkError(
            f"the embedded ClickHouse ({s.chdb_path}) did not answer within {timeout_s:.0f} s; "
            f"log {self.log_path}:\n{tail}"
        )

    def stop(self) -> None:
        """SIGTERM (chDB closes cleanly), SIGKILL to the process group after a timeout."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        self.url = ""

    def __enter__(self) -> EmbeddedClickHouse:
        return self if self.proc else self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_embedded_server(settings: Settings) -> EmbeddedClickHouse:
    """Start a new embedded server for ``settings`` (running; the caller stops it: ``with``)."""
    return EmbeddedClickHouse(settings).start()


@contextmanager
def _start_lock(settings: Settings) -> Iterator[None]:
    """Serialise check-and-start across processes sharing ``data_dir``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / ".clickhouse.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_embedded_server(settings: Settings) -> EmbeddedClickHouse | None:
    """Reuse the running embedded server or start one.

    Returns the started server (the caller stops it, e.g. ``stack.enter_context(server)``), or
    None when one was already running (owned by another process).
    """
    with _start_lock(settings):
        if embedded_url(settings):
            return None
        return start_embedded_server(settings)
