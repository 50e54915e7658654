"""ClickHouse connections: one code path (clickhouse-connect's HTTP client) for both the
embedded chDB (served over loopback HTTP by ``pipeline.dev.chserver``) and a ClickHouse server.

The embedded server publishes its URL in ``<data_dir>/clickhouse.addr``. ``get_client`` only
connects; ``pipeline.dev.clickhouse`` starts the embedded one as a child process.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import Error as ClickHouseDriverError

from pipeline.errors import SinkError
from pipeline.settings import Settings

ADDR_FILE_NAME = "clickhouse.addr"


def addr_file(settings: Settings) -> Path:
    """Where the embedded server of ``settings`` publishes its URL."""
    return settings.data_dir / ADDR_FILE_NAME


def ping(url: str, timeout: float = 2.0) -> bool:
    """True when ``url``/ping answers like ClickHouse (``Ok.``)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/ping", timeout=timeout) as resp:
            return bool(resp.status == 200 and resp.read(16).strip() == b"Ok.")
    except (OSError, ValueError):
        return False


def embedded_url(settings: Settings) -> str | None:
    """URL of the running embedded server of ``settings``; None when none answers."""
    try:
        url = addr_file(settings).read_text().strip()
    except FileNotFoundError:
        return None
    return url if url and ping(url) else None


def _redact(dsn: str) -> str:
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return dsn


def get_client(settings: Settings) -> Client:
    """A clickhouse-connect HTTP client for the configured ClickHouse, database selected.

    Embedded (``chdb://DIR``): connects to the server published in ``<data_dir>/clickhouse.addr``
    (without compression: loopback), SinkError when none runs. Otherwise the DSN with the
    configured password. Both without an HTTP session, so one client may serve several threads.
    Creates ``clickhouse_database`` when missing. SinkError when ClickHouse is unreachable.
    """
    db = settings.clickhouse_database
    if settings.embedded_clickhouse:
        url = embedded_url(settings)
        if url is None:
            raise SinkError(
                f"the embedded ClickHouse for {settings.chdb_path} is not running (no answer at "
                f"{addr_file(settings)}); `teilhabe worker` and `teilhabe demo` start it, or run "
                f"`python -m pipeline.dev.chserver --path {settings.chdb_path} "
                f"--addr-file {addr_file(settings)}`"
            )
        where = url
        kwargs: dict[str, Any] = {"dsn": url, "compress": False}
    else:
        where = _redact(settings.clickhouse_dsn)
        kwargs = {"dsn": settings.clickhouse_dsn, "password": settings.read_clickhouse_password()}
    try:
        client = clickhouse_connect.get_client(autogenerate_session_id=False, **kwargs)
        if settings.embedded_clickhouse:
            served = str(client.command("SELECT path FROM system.disks WHERE name = 'default'"))
            if Path(served).resolve() != settings.chdb_path.resolve():
                raise SinkError(
                    f"the embedded ClickHouse at {url} serves {served}, not {settings.chdb_path} "
                    f"(TEILHABE_CLICKHOUSE_DSN); stop it or use another TEILHABE_DATA_DIR"
                )
        # EXISTS first: a read-only user (the analyst's `teilhabe query`) may not CREATE
        if str(client.command(f"EXISTS DATABASE {quote_identifier(db)}")) != "1":
            client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(db)}")
    except SinkError:
        raise
    except Exception as exc:  # noqa: BLE001 - any connect failure is reported the same way
        raise SinkError(f"cannot use ClickHouse at {where}: {exc}") from exc
    client.database = db
    return client


#: ClickHouse error codes for a statement the server refuses as such: retrying the same
#: statement cannot succeed until someone changes the schema, the grants or the code
#: (docs/reliability.md). Everything else (connection failures, timeouts, TOO_MANY_PARTS,
#: MEMORY_LIMIT_EXCEEDED, a replica read-only while Keeper is away, codes not listed) is
#: retried: a wrongly retried permanent error stalls, a wrongly stopped transient one only
#: costs a restart, but a crash loop of every worker over a busy server is worse than a stall.
PERMANENT_ERROR_CODES: dict[int, str] = {
    1: "UNSUPPORTED_METHOD",
    6: "CANNOT_PARSE_TEXT",
    7: "INCORRECT_NUMBER_OF_COLUMNS",
    8: "THERE_IS_NO_COLUMN",
    10: "NOT_FOUND_COLUMN_IN_BLOCK",
    16: "NO_SUCH_COLUMN_IN_TABLE",
    20: "NUMBER_OF_COLUMNS_DOESNT_MATCH",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    36: "BAD_ARGUMENTS",
    41: "CANNOT_PARSE_DATETIME",
    43: "ILLEGAL_TYPE_OF_ARGUMENT",
    44: "ILLEGAL_COLUMN",
    46: "UNKNOWN_FUNCTION",
    47: "UNKNOWN_IDENTIFIER",
    48: "NOT_IMPLEMENTED",
    50: "UNKNOWN_TYPE",
    53: "TYPE_MISMATCH",
    56: "UNKNOWN_STORAGE",
    60: "UNKNOWN_TABLE",
    62: "SYNTAX_ERROR",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    73: "UNKNOWN_FORMAT",
    81: "UNKNOWN_DATABASE",
    115: "UNKNOWN_SETTING",
    117: "INCORRECT_DATA",
    164: "READONLY",
    192: "UNKNOWN_USER",
    193: "WRONG_PASSWORD",
    194: "REQUIRED_PASSWORD",
    195: "IP_ADDRESS_NOT_ALLOWED",
    291: "DATABASE_ACCESS_DENIED",
    376: "CANNOT_PARSE_UUID",
    386: "NO_COMMON_TYPE",
    392: "QUERY_IS_PROHIBITED",
    497: "ACCESS_DENIED",
    516: "AUTHENTICATION_FAILED",
}
#: Names accepted as well when a reply carries no numeric code (older servers called code
#: 497 NOT_ENOUGH_PRIVILEGES).
PERMANENT_ERROR_NAMES = frozenset(PERMANENT_ERROR_CODES.values()) | {"NOT_ENOUGH_PRIVILEGES"}
_CODE_IN_TEXT = re.compile(r"\bcode:\s*(\d+)", re.IGNORECASE)
_NAME_IN_TEXT = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")


@dataclass(frozen=True)
class ClickHouseFailure:
    """What a failed ClickHouse call was: ``permanent`` = the server refused the statement."""

    permanent: bool
    code: int | None
    name: str | None
    text: str

    def describe(self) -> str:
        """``code=60 (UNKNOWN_TABLE): <server text>`` or the exception text."""
        if self.code is None and self.name is None:
            return self.text
        return f"code={self.code} ({self.name or 'unknown name'}): {self.text}"


def classify_error(exc: BaseException) -> ClickHouseFailure:
    """The one place that decides whether a ClickHouse failure is worth retrying.

    clickhouse-connect raises ``DatabaseError`` (``OperationalError`` after its own retry)
    with the server's exception code for a statement the server answered with an error, and
    ``OperationalError`` without a code when it could not talk to the server at all. The
    code decides (``PERMANENT_ERROR_CODES``), the class does not: a code in the message or
    the ``X-ClickHouse-Exception-Code`` header (``exc.code``) counts, a failure without one
    (connection refused, reset, timeout, the embedded server not running) is transient.
    """
    text = " ".join(str(exc).split())[:500] or type(exc).__name__
    code: int | None = None
    name: str | None = None
    if isinstance(exc, ClickHouseDriverError):
        code, name = exc.code, exc.name
        if code is None:
            found = _CODE_IN_TEXT.search(text)
            code = int(found.group(1)) if found else None
        if name is None and code is not None:
            names = _NAME_IN_TEXT.findall(text)
            name = names[-1] if names else PERMANENT_ERROR_CODES.get(code)
    permanent = code in PERMANENT_ERROR_CODES or (code is None and name in PERMANENT_ERROR_NAMES)
    return ClickHouseFailure(permanent, code, name, text)


class PermanentSinkError(SinkError):
    """ClickHouse refused a statement in a way no retry can fix; the worker stops."""

    def __init__(self, what: str, failure: ClickHouseFailure) -> None:
        super().__init__(
            f"clickhouse refused the {what}: {failure.describe()}. Retrying cannot help: "
            "fix the cause (the table's schema versus `teilhabe migrate`, the user's grants "
            "- INSERT and SELECT on the database -, or the statement), then restart the "
            "worker. Nothing past the unwritten records was committed: the restart writes "
            "them (docs/reliability.md)"
        )
        self.what = what
        self.failure = failure


def quote_identifier(name: str) -> str:
    """A back-quoted ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def run_query(client: Client, sql: str) -> tuple[list[str], list[Sequence[Any]]]:
    """Run a query; (column names, rows). Column names also for an empty result."""
    result = client.query(sql)
    columns, rows = list(result.column_names), list(result.result_rows)
    if not columns and not rows:
        # chDB sends no Native block for zero rows; a LIMIT 0 probe (FORMAT JSON) has the names
        try:
            probe = f"SELECT * FROM ({sql.strip().rstrip(';')}) LIMIT 0"
            columns = list(client.query(probe).column_names)
        except Exception:  # noqa: BLE001 - not a SELECT: no columns to show
            columns = []
    return columns, rows


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal | UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot render {type(value).__name__}")


def _text(value: Any, null: str) -> str:
    if value is None:
        return null
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple | dict | set | frozenset):
        return orjson.dumps(value, default=_json_default).decode()
    return str(value)


def format_rows(
    column_names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: Literal["table", "json", "csv"],
) -> str:
    """Render a result as an aligned text table, a JSON list of objects, or CSV with a header."""
    if fmt == "json":
        docs = [dict(zip(column_names, row, strict=True)) for row in rows]
        return orjson.dumps(docs, default=_json_default, option=orjson.OPT_INDENT_2).decode()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(column_names)
        writer.writerows([[_text(v, "") for v in row] for row in rows])
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise ValueError(f"format must be table, json or csv, got {fmt!r}")
    cells = [[_text(v, "NULL") for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(column_names)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(column_names, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


__all__ = [
    "PERMANENT_ERROR_CODES",
    "ClickHouseFailure",
    "PermanentSinkError",
    "addr_file",
    "classify_error",
    "embedded_url",
    "format_rows",
    "get_client",
    "ping",
    "run_query",
]
