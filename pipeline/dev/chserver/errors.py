"""The ClickHouse exception the gateway reports: HTTP 500 with ``Code: N. DB::Exception: ...``."""

from __future__ import annotations

import re

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
