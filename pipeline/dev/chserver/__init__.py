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

Modules: ``protocol`` (request parsing, encodings), ``errors``, ``engine`` (the chDB session),
``handler`` (HTTP request -> statement), ``server`` (process, command line).
"""
