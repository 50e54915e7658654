"""The one chDB session of the data directory and the per-HTTP-session ``SET``/``USE`` state."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.dev.chserver.errors import ServerError
from pipeline.dev.chserver.protocol import quote_identifier

SESSION_IDLE_S = 3600.0


@dataclass
class SessionState:
    """What ``SET`` and ``USE`` left behind in one HTTP session (``session_id``)."""

    database: str | None = None
    settings: dict[str, str] = field(default_factory=dict)  # name -> SQL literal
    last_used: float = field(default_factory=time.monotonic)


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
