"""Serve an embedded chDB over the part of ClickHouse's HTTP interface clickhouse-connect uses.

chDB admits one process per data directory ("Cannot lock file .../status"). This process owns
it; every worker and the CLI talk to it with clickhouse-connect's ordinary HTTP client, exactly
as to a ClickHouse server. Killing it is a real sink outage.

Supported (enough for clickhouse-connect 1.12's ``HttpClient``):

* ``GET|HEAD /ping`` (and ``/replicas_status``, bare ``GET /``) -> ``Ok.``
* ``GET|POST /`` with the SQL in the ``query`` URL parameter and/or the body (joined by a newline,
  as ClickHouse does), or in a ``multipart/form-data`` field ``query``.
* ``INSERT INTO t (cols) [SETTINGS ...] FORMAT <fmt>`` followed by the data (any chDB input
  format; clickhouse-connect sends Native blocks), streamed into chDB without a temp file.
* Any other statement; its result in the format of its ``FORMAT`` clause, else ``default_format``
  (``TabSeparated``); ``X-ClickHouse-Format`` only for statements that return a result set.
* ``database``, ``param_<name>`` (server-side binding ``{name:Type}``), ``query_id``,
  ``session_id`` (``SET``/``USE`` are remembered per session), any other URL parameter is a query
  setting (``insert_deduplication_token``, ``max_threads``, ...) applied for that request only.
  HTTP-only settings (compression, progress headers, ``wait_end_of_query``...) are accepted and
  ignored: every response is buffered and sent uncompressed.
* Request bodies with ``Content-Encoding`` lz4 (clickhouse-connect's frame-per-block stream),
  zstd, gzip, deflate (and br when ``brotli`` is installed); chunked transfer encoding.
* Errors: HTTP 500, ``X-ClickHouse-Exception-Code`` and a body ``Code: N. DB::Exception: ...``,
  which clickhouse-connect raises as its ``DatabaseError`` carrying the server's message.
* ``X-ClickHouse-Summary`` (read/written rows and bytes), ``-Query-Id``, ``-Timezone``, ``-Format``.

Not supported: external data (multipart file parts), authentication (loopback only; user and
password are ignored), temporary tables per session (they are shared), response streaming (the
whole result is buffered), progress headers. One chDB session serialised by a lock: one query at
a time.

Run: ``python -m pipeline.dev.chserver --path DIR --addr-file FILE [--port N] [--parent-pid PID]``.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import gzip
import ipaddress
import json
import logging
import os
import re
import signal
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("teilhabe.chserver")

#: URL parameters that steer the HTTP transport or name things, never engine settings.
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "user",
        "password",
        "quota_key",
        "role",
        "buffer_size",
        "wait_end_of_query",
        "compress",
        "decompress",
        "client_protocol_version",
    }
)
#: Settings that only concern ClickHouse's HTTP layer; accepted and ignored here.
HTTP_ONLY_SETTINGS = frozenset(
    {
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_wait_end_of_query",
        "http_response_buffer_size",
        "http_write_exception_in_output_format",
        "output_format_parallel_formatting",
    }
)
SESSION_IDLE_S = 3600.0
SERVER_NAME = "teilhabe-chdb"

_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INSERT_DATA = re.compile(
    rb"\A\s*(?P<stmt>INSERT\s+INTO\s+[^\n]+?)\s+FORMAT\s+(?P<fmt>[A-Za-z][A-Za-z0-9_]*)"
    rb"[ \t]*(?:\r?\n|\Z)",
    re.IGNORECASE,
)
_NOT_DATA_INSERT = re.compile(rb"\b(SELECT|VALUES)\b", re.IGNORECASE)
_TRAILING_FORMAT = re.compile(rb"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*\Z", re.IGNORECASE)
_USE = re.compile(rb"\A\s*USE\s+(`[^`]+`|\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_]*)\s*;?\s*\Z", re.I)
_SET = re.compile(rb"\A\s*SET\s+(?!ROLE\b|DEFAULT\s+ROLE\b)(.*?)\s*;?\s*\Z", re.IGNORECASE | re.S)
_SET_ITEM = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|[^,']+?)\s*(?:,|\Z)", re.S
)
_CODE = re.compile(r"Code:\s*(\d+)")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")


class ServerError(Exception):
    """A failure reported to the client as a ClickHouse exception with ``code``."""

    def __init__(self, code: int, message: str, name: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.name = name

    def body(self) -> str:
        """``Code: N. DB::Exception: ... (NAME)`` like ClickHouse's HTTP error bodies."""
        text = str(self)
        if text.startswith("Code:"):
            return text
        suffix = f" ({self.name})" if self.name and f"({self.name})" not in text else ""
        return f"Code: {self.code}. DB::Exception: {text}{suffix}"

    @classmethod
    def from_engine(cls, exc: BaseException) -> ServerError:
        """Wrap a chDB exception; its message already starts with ``Code: N.`` (maybe prefixed)."""
        text = str(exc).strip() or type(exc).__name__
        start = text.find("Code:")
        if start > 0:
            text = text[start:]
        match = _CODE.search(text)
        name = _NAME.search(text)
        return cls(int(match.group(1)) if match else 1001, text, name.group(1) if name else "")


def quote_literal(value: str) -> str:
    """A ClickHouse string literal; ClickHouse converts it to the setting's type."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    """A back-quoted ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _unquote_identifier(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in '`"':
        return raw[1:-1]
    return raw


@dataclass
class SessionState:
    """What ``SET`` and ``USE`` left behind in one HTTP session (``session_id``)."""

    database: str | None = None
    settings: dict[str, str] = field(default_factory=dict)  # name -> SQL literal
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class Result:
    """Body and ClickHouse headers of one successful statement."""

    body: bytes = b""
    fmt: str | None = None
    summary: dict[str, str] = field(default_factory=dict)


def _summary(res: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, attr in (
        ("read_rows", "rows_read"),
        ("read_bytes", "bytes_read"),
        ("written_rows", "rows_written"),
        ("written_bytes", "bytes_written"),
    ):
        getter = getattr(res, attr, None)
        out[key] = str(int(getter() if callable(getter) else getter or 0))
    elapsed = getattr(res, "elapsed", None)
    if elapsed is not None:
        out["elapsed_ns"] = str(int((elapsed() if callable(elapsed) else elapsed) * 1e9))
    return out


class Engine:
    """The one chDB session of the data directory, serialised by a lock.

    Per-request database and settings are applied with ``USE``/``SET`` before each statement;
    the engine remembers what it applied, so a request only pays for what differs from the
    previous one, and settings never leak from one request into the next.
    """

    def __init__(self, path: Path) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock = threading.Lock()
        self.session = session.Session(str(path))
        self._conn: Any = self.session._conn  # chdb.state.sqlitelike.Connection
        self._database = "default"
        self._applied: dict[str, str] = {}
        self.sessions: dict[str, SessionState] = {}
        row = self._q("SELECT version(), timezone()", "TabSeparated").bytes().decode().split("\t")
        self.version, self.timezone = row[0].strip(), row[1].strip()

    def _q(self, sql: str | bytes, fmt: str, params: Mapping[str, str] | None = None) -> Any:
        try:
            return self.session.query(sql, fmt, params=dict(params or {}))
        except Exception as exc:  # noqa: BLE001 - chDB raises RuntimeError subclasses
            raise ServerError.from_engine(exc) from None

    def _prepare(self, database: str, settings: Mapping[str, str]) -> None:
        """USE and SET what this request needs; reset what the previous one set (lock held)."""
        if database != self._database:
            self._q(f"USE {quote_identifier(database)}", "TabSeparated")
            self._database = database
        for name in [n for n in self._applied if n not in settings]:
            self._q(f"SET {name} = DEFAULT", "TabSeparated")
            del self._applied[name]
        for name, literal in settings.items():
            if self._applied.get(name) != literal:
                self._q(f"SET {name} = {literal}", "TabSeparated")  # unchanged if it fails
                self._applied[name] = literal

    def query(
        self,
        sql: bytes,
        fmt: str,
        database: str,
        settings: Mapping[str, str],
        params: Mapping[str, str],
    ) -> Any:
        """Run one statement; a FORMAT clause in ``sql`` wins over ``fmt``."""
        with self.lock:
            self._prepare(database, settings)
            return self._q(sql, fmt, params)

    def insert(
        self, statement: str, fmt: str, data: bytes, database: str, settings: Mapping[str, str]
    ) -> Any:
        """Stream ``data`` (in input format ``fmt``) into ``INSERT INTO t (cols) ...``."""
        with self.lock:
            self._prepare(database, settings)
            try:
                inserter = self._conn.send_insert(statement, fmt)
            except Exception as exc:  # noqa: BLE001
                raise ServerError.from_engine(exc) from None
            try:
                if data:
                    inserter.append(data)
                return inserter.finish()
            except Exception as exc:  # noqa: BLE001
                try:
                    inserter.cancel()
                except Exception:  # noqa: BLE001 - already finished/failed
                    pass
                raise ServerError.from_engine(exc) from None

    def check_database(self, database: str) -> None:
        """Raise UNKNOWN_DATABASE like ``USE`` would."""
        with self.lock:
            self._prepare(database, dict(self._applied))

    def check_settings(self, settings: Mapping[str, str]) -> None:
        """Raise like ``SET`` would for unknown settings or bad values."""
        with self.lock:
            self._prepare(self._database, {**self._applied, **settings})

    def session_state(self, session_id: str, create: bool) -> SessionState | None:
        """The state of ``session_id`` (None when it has none); idle sessions expire."""
        now = time.monotonic()
        with self.lock:
            idle = [s for s, st in self.sessions.items() if now - st.last_used > SESSION_IDLE_S]
            for sid in idle:
                del self.sessions[sid]
            state = self.sessions.get(session_id)
            if state is None and create:
                state = self.sessions[session_id] = SessionState()
            if state is not None:
                state.last_used = now
            return state

    def close(self) -> None:
        """Close the session (flushes and releases the directory lock)."""
        with self.lock:
            self.session.close()


def decompress(body: bytes, encoding: str | None) -> bytes:
    """Undo a request's ``Content-Encoding`` (clickhouse-connect writes one frame per block)."""
    encoding = (encoding or "").strip().lower()
    if not body or encoding in ("", "identity"):
        return body
    try:
        if encoding == "lz4":
            import lz4.frame

            out = bytearray()
            rest = body
            while rest:
                dec = lz4.frame.LZ4FrameDecompressor()
                out += dec.decompress(rest)
                if not dec.eof:
                    raise ValueError("truncated lz4 frame")
                rest = dec.unused_data
            return bytes(out)
        if encoding == "zstd":
            from backports import zstd  # type: ignore[import-not-found,unused-ignore]

            return bytes(zstd.decompress(body))
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        if encoding == "br":
            import brotli  # type: ignore[import-not-found,unused-ignore]

            return bytes(brotli.decompress(body))
    except ImportError as exc:
        raise ServerError(
            48, f"Content-Encoding {encoding} needs {exc.name}", "NOT_IMPLEMENTED"
        ) from None
    except Exception as exc:  # noqa: BLE001 - corrupt input
        raise ServerError(
            271, f"Cannot decompress {encoding} request body: {exc}", "CANNOT_DECOMPRESS"
        ) from None
    raise ServerError(48, f"Unsupported Content-Encoding {encoding!r}", "NOT_IMPLEMENTED")


def parse_form(body: bytes, content_type: str) -> dict[str, str]:
    """Plain fields of a ``multipart/form-data`` body (query, param_*); files are refused."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields: dict[str, str] = {}
    for part in msg.iter_parts():
        if part.get_filename():
            raise ServerError(48, "external data (file parts) is not supported", "NOT_IMPLEMENTED")
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if name:
            fields[str(name)] = payload.decode("utf-8") if isinstance(payload, bytes) else ""
    return fields


class Handler(BaseHTTPRequestHandler):
    """One HTTP request -> one chDB statement."""

    engine: Engine
    protocol_version = "HTTP/1.1"
    server_version = SERVER_NAME
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http " + format, *args)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self._reply(200, b"", {}, head=True)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urlsplit(self.path)
        if url.path.rstrip("/") in ("/ping", "/replicas_status") or (
            url.path == "/" and "query" not in dict(parse_qsl(url.query))
        ):
            self._reply(200, b"Ok.\n", {})
            return
        self._handle(b"")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        self._handle(body)

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():  # trailers up to the blank line
                    pass
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _handle(self, body: bytes) -> None:
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": self.engine.timezone}
        try:
            result = self._execute(params, body, headers)
        except ServerError as exc:
            log.debug("query_id=%s failed: %s", query_id, exc)
            self._error(exc, headers)
            return
        except Exception as exc:  # noqa: BLE001 - every failure becomes a ClickHouse error
            log.exception("query_id=%s internal error", query_id)
            self._error(ServerError(1001, f"{type(exc).__name__}: {exc}", "STD_EXCEPTION"), headers)
            return
        headers["X-ClickHouse-Summary"] = json.dumps(result.summary)
        if result.fmt:
            headers["X-ClickHouse-Format"] = result.fmt
        self._reply(200, result.body, headers)

    def _execute(self, params: dict[str, str], body: bytes, headers: dict[str, str]) -> Result:
        engine = self.engine
        body = decompress(body, self.headers.get("Content-Encoding"))
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            params.update(parse_form(body, content_type))
            body = b""
        query = params.get("query", "").encode()
        sql = query + b"\n" + body if query and body else query or body
        if not sql.strip():
            raise ServerError(62, "Empty query", "SYNTAX_ERROR")

        session_id = params.get("session_id") or ""
        state = engine.session_state(session_id, create=False) if session_id else None
        database = params.get("database") or (state.database if state else None) or "default"
        settings = dict(state.settings) if state else {}
        for key, value in params.items():
            if key in TRANSPORT_PARAMS or key in HTTP_ONLY_SETTINGS or key.startswith("param_"):
                continue
            if not _SETTING_NAME.fullmatch(key):
                raise ServerError(115, f"Unknown setting '{key}'", "UNKNOWN_SETTING")
            settings[key] = quote_literal(value)
        if "session_timezone" in settings:
            headers["X-ClickHouse-Timezone"] = params.get("session_timezone") or engine.timezone

        insert = _INSERT_DATA.match(sql)
        if insert and not _NOT_DATA_INSERT.search(insert.group("stmt")):
            res = engine.insert(
                insert.group("stmt").decode(),
                insert.group("fmt").decode(),
                sql[insert.end() :],
                database,
                settings,
            )
            return Result(summary=_summary(res))

        use = _USE.match(sql)
        if use:
            name = _unquote_identifier(use.group(1).decode())
            engine.check_database(name)
            if session_id:
                (engine.session_state(session_id, create=True) or SessionState()).database = name
            return Result()
        set_stmt = _SET.match(sql)
        if set_stmt:
            pairs = self._parse_set(set_stmt.group(1).decode())
            engine.check_settings(pairs)
            if session_id:
                (engine.session_state(session_id, create=True) or SessionState()).settings.update(
                    pairs
                )
            return Result()

        bind = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        trailing = _TRAILING_FORMAT.search(sql[-200:])
        if trailing:
            res = engine.query(sql, "TabSeparated", database, settings, bind)
            return Result(res.bytes() or b"", trailing.group(1).decode(), _summary(res))
        fmt = params.get("default_format") or "TabSeparated"
        if fmt in ("TabSeparated", "TSV"):
            # A result set always has its names line, a statement without one has no output:
            # that tells clickhouse-connect's command() a "" result from "no result".
            res = engine.query(sql, "TabSeparatedWithNames", database, settings, bind)
            out = res.bytes() or b""
            if not out:
                return Result(summary=_summary(res))
            newline = out.find(b"\n")
            return Result(out[newline + 1 :] if newline >= 0 else b"", fmt, _summary(res))
        res = engine.query(sql, fmt, database, settings, bind)
        out = res.bytes() or b""
        return Result(out, fmt if out else None, _summary(res))

    @staticmethod
    def _parse_set(text: str) -> dict[str, str]:
        pairs: dict[str, str] = {}
        pos = 0
        while pos < len(text):
            m = _SET_ITEM.match(text, pos)
            if not m or m.end() == pos:
                raise ServerError(62, f"Cannot parse SET {text!r}", "SYNTAX_ERROR")
            pairs[m.group(1)] = m.group(2).strip()
            pos = m.end()
        if not pairs:
            raise ServerError(62, "SET without settings", "SYNTAX_ERROR")
        return pairs

    def _error(self, exc: ServerError, headers: dict[str, str]) -> None:
        headers = dict(headers)
        headers["X-ClickHouse-Exception-Code"] = str(exc.code)
        self._reply(500, (exc.body() + "\n").encode(), headers, content_type="text/plain")

    def _reply(
        self,
        status: int,
        payload: bytes,
        headers: dict[str, str],
        content_type: str = "application/octet-stream",
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-ClickHouse-Server-Display-Name", SERVER_NAME)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(payload)


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
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


if __name__ == "__main__":
    main()
