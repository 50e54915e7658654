"""ClickHouse connections: one code path (clickhouse-connect's HTTP client) for both the
embedded chDB (served by ``pipeline.chserver``) and a ClickHouse server."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client

from pipeline.errors import SinkError
from pipeline.settings import Settings

START_TIMEOUT_S = 60.0


def addr_file(settings: Settings) -> Path:
    """Where the embedded server publishes its URL."""
    return settings.data_dir / "run" / "clickhouse.addr"


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def embedded_url(settings: Settings) -> str | None:
    """URL of the running embedded server of ``settings``, None when none answers."""
    f = addr_file(settings)
    if not f.exists():
        return None
    url = f.read_text().strip()
    return url if _alive(url) else None


class EmbeddedClickHouse:
    """The embedded ClickHouse server as a child process (context manager)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        """Process id of the server (for fault tests)."""
        return self.proc.pid if self.proc else 0

    def start(self) -> EmbeddedClickHouse:
        """Spawn the server and wait until /ping answers."""
        s = self.settings
        log_dir = s.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "clickhouse.log"
        af = addr_file(s)
        if af.exists():
            af.unlink()
        with open(log_path, "ab") as fh:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline.chserver",
                    "--path",
                    str(s.chdb_path),
                    "--addr-file",
                    str(af),
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-1500:]
                raise SinkError(f"the embedded ClickHouse exited at start:\n{tail}")
            url = embedded_url(s)
            if url:
                self.url = url
                return self
            time.sleep(0.1)
        self.stop()
        raise SinkError(f"the embedded ClickHouse did not answer within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """SIGTERM (clean close of chDB), SIGKILL after 10 s."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedClickHouse:
        return self if self.proc else self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def ensure_embedded_server(settings: Settings) -> EmbeddedClickHouse | None:
    """Start the embedded server unless one already serves this directory.

    Returns the started server (the caller stops it) or None when one was running.
    """
    if embedded_url(settings):
        return None
    return EmbeddedClickHouse(settings).start()


def get_client(settings: Settings) -> Client:
    """A clickhouse-connect HTTP client for the configured ClickHouse.

    Creates the database if it is missing. Raises SinkError when ClickHouse is unreachable.
    """
    try:
        if settings.embedded_clickhouse:
            url = embedded_url(settings)
            if url is None:
                raise SinkError(
                    f"the embedded ClickHouse for {settings.chdb_path} is not running; "
                    "`teilhabe worker`, `demo` and `backfill` start it"
                )
            admin = clickhouse_connect.get_client(dsn=url, compress=False)
        else:
            admin = clickhouse_connect.get_client(
                dsn=settings.clickhouse_dsn, password=settings.read_clickhouse_password()
            )
        db = settings.clickhouse_database
        admin.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        return admin
    except SinkError:
        raise
    except Exception as exc:  # noqa: BLE001 - any connect failure is reported the same way
        raise SinkError(f"cannot reach ClickHouse ({_redact(settings)}): {exc}") from exc


def _redact(settings: Settings) -> str:
    dsn = settings.clickhouse_dsn
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return dsn


def run_query(client: Client, sql: str) -> tuple[list[str], list[Sequence[Any]]]:
    """Run a query; (column names, rows)."""
    result = client.query(sql)
    return list(result.column_names), list(result.result_rows)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def format_rows(
    columns: list[str], rows: list[Sequence[Any]], fmt: Literal["table", "json", "csv"]
) -> str:
    """Render a result as an aligned table, a JSON list of objects, or CSV with a header."""
    if fmt == "json":
        docs = [{c: _cell(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        return orjson.dumps(docs, option=orjson.OPT_INDENT_2).decode()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in rows])
        return buf.getvalue().rstrip("\n")
    cells = [[str(_cell(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)
