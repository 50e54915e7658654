"""Credentials of the webhook routes: bearer tokens (several: a rotation), Slack's request
signatures, Mattermost's outgoing-webhook tokens, read from owner-only secret files."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from slack_sdk.signature import Clock, SignatureVerifier

from pipeline.errors import ConfigError
from pipeline.settings import Settings, read_private_file


def read_tokens(path: Path, variable: str) -> list[bytes]:
    """The non-empty, non-comment lines of an owner-only secret file (several: a rotation)."""
    raw = read_private_file(path, variable)
    tokens = [t.strip() for t in raw.splitlines()]
    tokens = [t for t in tokens if t and not t.startswith(b"#")]
    if not tokens:
        raise ConfigError(f"{variable}: {str(path)!r} holds no token")
    return tokens


def token_matches(given: str | bytes | None, tokens: Sequence[bytes]) -> bool:
    """True when ``given`` equals one of ``tokens``; compares in constant time with each."""
    if not given:
        return False
    value = given.encode("utf-8", "replace") if isinstance(given, str) else given
    found = False
    for token in tokens:
        found |= hmac.compare_digest(value, token)
    return found


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, None for any other header."""
    return header_token(authorization, "bearer")


def header_token(authorization: str | None, scheme: str) -> str | None:
    """The token of an ``Authorization: <scheme> …`` header (``Bearer``; Mattermost's
    outgoing webhooks send ``Token``), None for any other header."""
    given, _, token = (authorization or "").partition(" ")
    return (token.strip() or None) if given.lower() == scheme.lower() else None


SLACK_MAX_AGE_S: Final = 300  # Slack's replay window (its verifier's, too)


class _FunctionClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackVerifier:
    """Slack's request signature check (slack_sdk's verifier: HMAC-SHA256 over
    ``v0:{timestamp}:{body}``, timestamps more than 5 minutes off refused as replays)."""

    def __init__(self, signing_secret: str, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._verifier = SignatureVerifier(signing_secret, clock=_FunctionClock(now))

    def plausible(self, timestamp: str | None, signature: str | None) -> bool:
        """The headers' form and the timestamp's age, checked before the body is read: a
        timestamp of at most 12 digits within 5 minutes, a ``v0=`` signature of 64 hex digits."""
        if not timestamp or len(timestamp) > 12 or not timestamp.isascii():
            return False
        if not timestamp.isdigit() or abs(self._now() - int(timestamp)) > SLACK_MAX_AGE_S:
            return False
        sig = signature or ""
        return len(sig) == 67 and sig.startswith("v0=") and _is_hex(sig[3:])

    def verify(self, body: bytes, timestamp: str | None, signature: str | None) -> bool:
        """True for an authentic, fresh request; never raises for malformed headers."""
        if not self.plausible(timestamp, signature):
            return False
        try:
            return self._verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
        except (ValueError, OverflowError, TypeError, UnicodeError):  # never a 500
            return False


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


@dataclass(frozen=True)
class Credentials:
    """What each route checks; a route without credentials is not served."""

    bearer: list[bytes] = field(default_factory=list)
    slack: SlackVerifier | None = None
    mattermost: list[bytes] = field(default_factory=list)


def load_credentials(settings: Settings) -> Credentials:
    """Read the configured secret files (owner-only); ConfigError when none is set."""
    s = settings
    creds = Credentials(
        bearer=read_tokens(s.webhook_token_file, "TEILHABE_WEBHOOK_TOKEN_FILE")
        if s.webhook_token_file
        else [],
        slack=SlackVerifier(
            read_private_file(
                s.slack_signing_secret_file, "TEILHABE_SLACK_SIGNING_SECRET_FILE"
            ).decode()
        )
        if s.slack_signing_secret_file
        else None,
        mattermost=read_tokens(s.mattermost_token_file, "TEILHABE_MATTERMOST_TOKEN_FILE")
        if s.mattermost_token_file
        else [],
    )
    if not (creds.bearer or creds.slack or creds.mattermost):
        raise ConfigError(
            "TEILHABE_WEBHOOK_ENABLED is true but no endpoint has credentials: set "
            "TEILHABE_WEBHOOK_TOKEN_FILE, TEILHABE_SLACK_SIGNING_SECRET_FILE and/or "
            "TEILHABE_MATTERMOST_TOKEN_FILE (files readable by their owner only)"
        )
    return creds
