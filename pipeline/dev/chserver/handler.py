"""One HTTP request -> one chDB statement: the request handler and its ClickHouse headers."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pipeline.dev.chserver.engine import Engine, SessionState
from pipeline.dev.chserver.errors import ServerError
from pipeline.dev.chserver.protocol import (
    HTTP_ONLY_SETTINGS,
    INSERT_DATA,
    NOT_DATA_INSERT,
    SET_STMT,
    SETTING_NAME,
    TRAILING_FORMAT,
    TRANSPORT_PARAMS,
    USE_STMT,
    decompress,
    parse_form,
    parse_set,
    quote_literal,
    unquote_identifier,
)

log = logging.getLogger("teilhabe.chserver")

SERVER_NAME = "teilhabe-chdb"


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
            if not SETTING_NAME.fullmatch(key):
                raise ServerError(115, f"Unknown setting '{key}'", "UNKNOWN_SETTING")
            settings[key] = quote_literal(value)
        if "session_timezone" in settings:
            headers["X-ClickHouse-Timezone"] = params.get("session_timezone") or engine.timezone

        insert = INSERT_DATA.match(sql)
        if insert and not NOT_DATA_INSERT.search(insert.group("stmt")):
            res = engine.insert(
                insert.group("stmt").decode(),
                insert.group("fmt").decode(),
                sql[insert.end() :],
                database,
                settings,
            )
            return Result(summary=_summary(res))

        use = USE_STMT.match(sql)
        if use:
            name = unquote_identifier(use.group(1).decode())
            engine.check_database(name)
            if session_id:
                (engine.session_state(session_id, create=True) or SessionState()).database = name
            return Result()
        set_stmt = SET_STMT.match(sql)
        if set_stmt:
            pairs = parse_set(set_stmt.group(1).decode())
            engine.check_settings(pairs)
            if session_id:
                (engine.session_state(session_id, create=True) or SessionState()).settings.update(
                    pairs
                )
            return Result()

        bind = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        trailing = TRAILING_FORMAT.search(sql[-200:])
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
