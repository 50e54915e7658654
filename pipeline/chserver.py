"""Serve an embedded chDB over the part of ClickHouse's HTTP interface clickhouse-connect uses.

chDB admits one process per data directory. This process owns it; every worker and the CLI
talk to it with clickhouse-connect's ordinary HTTP client, exactly as to a ClickHouse server
(queries in Native format, inserts as ``INSERT ... FORMAT Native`` + Native blocks, commands,
query parameters, per-request settings, error codes). Killing it is a real sink outage.
Loopback only; one chDB session serialised by a lock.

Run: ``python -m pipeline.chserver --path DIR --addr-file FILE [--port N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import tempfile
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("teilhabe.chserver")

#: URL parameters that steer the HTTP transport, not the query engine.
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "wait_end_of_query",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "client_protocol_version",
        "enable_http_compression",
        "compress",
        "decompress",
        "default_format",
        "user",
        "password",
        "buffer_size",
        "http_wait_end_of_query",
    }
)
_FORMAT_RE = re.compile(rb"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_INSERT_DATA_RE = re.compile(
    rb"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+FORMAT\s+(?P<fmt>[A-Za-z0-9_]+)[ \t]*(\r?\n|$)",
    re.IGNORECASE | re.DOTALL,
)
_CODE_RE = re.compile(r"Code:\s*(\d+)")


class Engine:
    """One chDB session with a lock: the only thing that touches the data directory."""

    def __init__(self, path: Path) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.session = session.Session(str(path))
        self.lock = threading.Lock()

    def run(self, sql: bytes, fmt: str, params: dict[str, str], database: str | None) -> Any:
        """Run one statement; ``fmt`` is the output format unless the SQL names its own."""
        with self.lock:
            if database:
                self.session.query(f"USE `{database.replace('`', '')}`", "TabSeparated")
            return self.session.query(sql.decode("utf-8"), fmt, params=params)

    def close(self) -> None:
        """Close the session (flushes and releases the directory lock)."""
        with self.lock:
            self.session.close()


def _settings_clause(settings: dict[str, str]) -> str:
    parts = []
    for key, value in settings.items():
        if not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise ValueError(f"bad setting name {key!r}")
        if re.fullmatch(r"-?\d+(\.\d+)?", value):
            parts.append(f"{key}={value}")
        else:
            parts.append(
                f"{key}='{value.replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}'"
            )
    return ", ".join(parts)


def _decompress(body: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding == "identity":
        return body
    if encoding in ("gzip", "deflate"):
        return zlib.decompress(body, 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    if encoding == "lz4":
        import lz4.frame

        return bytes(lz4.frame.decompress(body))
    if encoding == "zstd":
        from backports import zstd  # type: ignore[import-not-found,unused-ignore]

        return bytes(zstd.decompress(body))
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class Handler(BaseHTTPRequestHandler):
    """Maps one HTTP request to one chDB call."""

    engine: Engine
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if urlsplit(self.path).path in ("/ping", "/replicas_status"):
            self._reply(200, b"Ok.\n", {})
            return
        self._handle(b"")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(length) if length else b""
        self._handle(body)

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _handle(self, body: bytes) -> None:
        query_id = str(uuid.uuid4())
        try:
            params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            query_id = params.get("query_id", query_id)
            body = _decompress(body, self.headers.get("Content-Encoding"))
            if os.environ.get("CHSERVER_TRACE"):
                print("REQ", self.path[:200], dict(self.headers), body[:120], flush=True)
            status, payload, headers = self._execute(params, body)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a ClickHouse error reply
            message = str(exc).strip() or type(exc).__name__
            match = _CODE_RE.search(message)
            code = match.group(1) if match else "1000"
            if not message.startswith("Code:"):
                message = f"Code: {code}. DB::Exception: {message}"
            log.debug("query failed code=%s", code)
            self._reply(
                500,
                (message + "\n").encode(),
                {"X-ClickHouse-Exception-Code": code, "X-ClickHouse-Query-Id": query_id},
            )
            return
        headers["X-ClickHouse-Query-Id"] = query_id
        self._reply(status, payload, headers)

    def _execute(self, params: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        database = params.get("database") or None
        bind = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        settings = {
            k: v
            for k, v in params.items()
            if k not in TRANSPORT_PARAMS and not k.startswith("param_")
        }
        query = params.get("query", "").encode()
        sql = query + (b"\n" + body if query and body else body) if query else body
        insert = _INSERT_DATA_RE.match(sql)
        if insert and sql[insert.end() :].strip():
            return self._insert(insert, sql[insert.end() :], settings, database)
        if not sql.strip():
            raise ValueError("Code: 62. DB::Exception: Empty query")
        summary: dict[str, str] = {}
        fmt_match = _FORMAT_RE.search(sql)
        with_settings = self._with_settings(sql, settings, fmt_match)
        if fmt_match:
            result = self.engine.run(with_settings, "TabSeparated", bind, database)
            fmt = fmt_match.group(1).decode()
            payload = result.bytes() or b""
        else:
            result = self.engine.run(with_settings, "TabSeparatedWithNames", bind, database)
            payload = result.bytes() or b""
            fmt = ""
            if payload:
                newline = payload.find(b"\n")
                payload = payload[newline + 1 :] if newline >= 0 else b""
                fmt = "TabSeparated"
        summary = {
            "read_rows": str(getattr(result, "rows_read", lambda: 0)()),
            "read_bytes": str(getattr(result, "bytes_read", lambda: 0)()),
            "written_rows": "0",
            "written_bytes": "0",
        }
        headers = {"X-ClickHouse-Summary": json.dumps(summary), "X-ClickHouse-Timezone": "UTC"}
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
        return 200, payload, headers

    @staticmethod
    def _with_settings(
        sql: bytes, settings: dict[str, str], fmt_match: re.Match[bytes] | None
    ) -> bytes:
        """Append a SETTINGS clause to SELECTs; DDL and other statements take none."""
        if not settings or not re.match(rb"\s*(\(|SELECT|WITH)\b", sql, re.IGNORECASE):
            return sql
        clause = b"\nSETTINGS " + _settings_clause(settings).encode()
        if fmt_match:
            return sql[: fmt_match.start()] + clause + b"\n" + sql[fmt_match.start() :]
        return sql + clause

    def _insert(
        self, match: re.Match[bytes], data: bytes, settings: dict[str, str], database: str | None
    ) -> tuple[int, bytes, dict[str, str]]:
        target = match.group("target").decode()
        fmt = match.group("fmt").decode()
        fd, tmp = tempfile.mkstemp(suffix="." + fmt.lower())
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            clause = f" SETTINGS {_settings_clause(settings)}" if settings else ""
            sql = f"INSERT INTO {target} FROM INFILE '{tmp}'{clause} FORMAT {fmt}"
            self.engine.run(sql.encode(), "TabSeparated", {}, database)
        finally:
            os.unlink(tmp)
        summary = {"written_rows": "0", "written_bytes": str(len(data))}
        return (
            200,
            b"",
            {"X-ClickHouse-Summary": json.dumps(summary), "X-ClickHouse-Timezone": "UTC"},
        )

    def _reply(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-ClickHouse-Server-Display-Name", "teilhabe-chdb")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)


def write_addr_file(addr_file: Path, url: str) -> None:
    """Atomically publish the server's URL (temp file + rename)."""
    addr_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = addr_file.with_suffix(".tmp")
    tmp.write_text(url)
    os.replace(tmp, addr_file)


def serve(
    path: Path, host: str = "127.0.0.1", port: int = 0, addr_file: Path | None = None
) -> None:
    """Serve chDB at ``path`` on ``host:port`` until SIGTERM/SIGINT; publish the URL."""
    engine = Engine(path)
    handler = type("BoundHandler", (Handler,), {"engine": engine})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    url = f"http://{host}:{server.server_address[1]}"
    if addr_file is not None:
        write_addr_file(addr_file, url)
    log.info("embedded clickhouse serving path=%s url=%s pid=%s", path, url, os.getpid())

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        engine.close()
        if addr_file is not None and addr_file.exists() and addr_file.read_text() == url:
            addr_file.unlink()
        log.info("embedded clickhouse stopped")


def main() -> None:
    """Command-line entry: ``python -m pipeline.chserver --path DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--addr-file", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s level=%(levelname)s %(message)s")
    serve(args.path, args.host, args.port, args.addr_file)


if __name__ == "__main__":
    main()
