"""Reading a request: which URL parameters are transport and which settings, the statement
shapes the gateway treats apart (data INSERT, USE, SET, trailing FORMAT), quoting, request
body encodings and multipart forms."""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import re
import zlib

from pipeline.dev.chserver.errors import ServerError

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

SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INSERT_DATA = re.compile(
    rb"\A\s*(?P<stmt>INSERT\s+INTO\s+[^\n]+?)\s+FORMAT\s+(?P<fmt>[A-Za-z][A-Za-z0-9_]*)"
    rb"[ \t]*(?:\r?\n|\Z)",
    re.IGNORECASE,
)
NOT_DATA_INSERT = re.compile(rb"\b(SELECT|VALUES)\b", re.IGNORECASE)
TRAILING_FORMAT = re.compile(rb"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*\Z", re.IGNORECASE)
USE_STMT = re.compile(rb"\A\s*USE\s+(`[^`]+`|\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_]*)\s*;?\s*\Z", re.I)
SET_STMT = re.compile(
    rb"\A\s*SET\s+(?!ROLE\b|DEFAULT\s+ROLE\b)(.*?)\s*;?\s*\Z", re.IGNORECASE | re.S
)
_SET_ITEM = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|[^,']+?)\s*(?:,|\Z)", re.S
)


def quote_literal(value: str) -> str:
    """A ClickHouse string literal; ClickHouse converts it to the setting's type."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    """A back-quoted ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def unquote_identifier(raw: str) -> str:
    """``raw`` without its back quotes or double quotes, if quoted."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in '`"':
        return raw[1:-1]
    return raw


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


def parse_set(text: str) -> dict[str, str]:
    """The ``name = value`` pairs of a ``SET`` statement's list (values as SQL literals)."""
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
