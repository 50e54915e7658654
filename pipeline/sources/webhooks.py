"""Live ingest over HTTP, the pure part: credentials, rate limits, de-duplication, and Slack
Events API / Mattermost outgoing webhook payloads as contract v1 events.

``agents.webhooks`` serves it from the worker. Message text is read here only to find
mentions: it never leaves the mapping functions (not in events, logs or dead letters).

Person keys: on Slack the user id (``U…``; the Events API has no e-mail: an export imported
alongside must use ``person_key="id"``), on Mattermost the username, lower-cased (the outgoing
webhook names mentioned people by username only, so the author is keyed the same way for a
mention to tie two people; a renamed user counts as a new person). Ids of events and content
come from the platform's ids, never a person's: ``slack:{channel}:{ts}`` for a message (as the
export reader, so an overlap counts once), ``slack:{event_id}`` for a reaction or a join,
``mattermost:{post_id}``, ``{content}:mention:{n}``; a delivery that arrives twice is counted
once downstream too.
"""

from __future__ import annotations

import hmac
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import parse_qs

import orjson
from prometheus_client import CollectorRegistry, Counter
from slack_sdk.signature import Clock, SignatureVerifier

from pipeline.contract.events import validate_event
from pipeline.contract.records import Envelope, TooLarge, pack
from pipeline.errors import ConfigError, InvalidEvent
from pipeline.settings import Settings, read_private_file
from pipeline.sources.connectors import mentions
from pipeline.sources.connectors.base import Message, RawEvent, event, iso

SLACK: Final = "slack"
MATTERMOST: Final = "mattermost"
EVENTS: Final = "events"  # the generic endpoint: contract events and envelopes
SOURCES: Final = (EVENTS, SLACK, MATTERMOST)
#: Every status the endpoint answers with (a closed set for the metric's label).
STATUSES: Final = ("200", "202", "400", "401", "404", "413", "429", "503")
MAX_MENTIONS: Final = 50  # per message: bounds the events one request can fan out to

_SLACK_TS: Final = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,6}))?")
#: Message subtypes that are a person's post or reply; every other one is left out.
_COUNTED_SUBTYPES: Final = frozenset({None, "file_share", "thread_broadcast", "me_message"})
_SUBTYPE_REASONS: Final = {
    "bot_message": "bot",
    "message_changed": "edit",
    "message_deleted": "deletion",
    "message_replied": "edit",
    "channel_join": "join_message",
    "channel_leave": "join_message",
}
#: Why a valid payload yields no event (a closed set: a label of the ignored-counter).
IGNORE_REASONS: Final = (
    "bot",
    "edit",
    "deletion",
    "join_message",
    "subtype",
    "direct_message",
    "no_user",
    "event_type",
    "callback_type",
    "duplicate",
)


# --- credentials -----------------------------------------------------------------------------
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
    scheme, _, token = (authorization or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


class _FunctionClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackVerifier:
    """Slack's request signature check (slack_sdk's verifier: HMAC-SHA256 over
    ``v0:{timestamp}:{body}``, timestamps more than 5 minutes off refused as replays)."""

    def __init__(self, signing_secret: str, now: Callable[[], float] = time.time) -> None:
        self._verifier = SignatureVerifier(signing_secret, clock=_FunctionClock(now))

    def verify(self, body: bytes, timestamp: str | None, signature: str | None) -> bool:
        """True for an authentic, fresh request; never raises for malformed headers."""
        try:
            return self._verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
        except ValueError:  # a timestamp that is not a number, a body that is not UTF-8
            return False


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


# --- rate limit and de-duplication -----------------------------------------------------------
class RateLimiter:
    """A token bucket per source: ``burst`` requests at once, then ``rate_per_s``."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 1024,
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def check(self, source: str) -> float:
        """Take one request of ``source``: 0.0 when allowed, else seconds until it would be."""
        now = self.clock()
        tokens, at = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[source] = (tokens, now)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return wait


Seen = Literal["new", "pending", "done"]


class RecentIds:
    """Delivery ids of the last ``ttl_s`` (at most ``max_ids``, oldest forgotten first).

    ``begin`` claims an id; ``finish`` marks it delivered, ``abandon`` forgets it (the
    sender's retry is then processed again). Slack retries after 1 and 5 minutes.
    """

    def __init__(
        self,
        ttl_s: float = 3600.0,
        max_ids: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_ids = max_ids
        self.clock = clock
        self._ids: OrderedDict[str, tuple[float, bool]] = OrderedDict()  # expires, done

    def begin(self, delivery_id: str) -> Seen:
        """``new`` (now claimed), ``pending`` (being delivered) or ``done`` (delivered)."""
        now = self.clock()
        while self._ids:
            oldest, (expires, _) = next(iter(self._ids.items()))
            if expires > now and len(self._ids) < self.max_ids:
                break
            del self._ids[oldest]
        known = self._ids.get(delivery_id)
        if known is not None:
            return "done" if known[1] else "pending"
        self._ids[delivery_id] = (now + self.ttl_s, False)
        return "new"

    def finish(self, delivery_id: str) -> None:
        """Mark a claimed id as delivered."""
        if delivery_id in self._ids:
            self._ids[delivery_id] = (self._ids[delivery_id][0], True)

    def abandon(self, delivery_id: str) -> None:
        """Forget a claimed id whose delivery failed."""
        self._ids.pop(delivery_id, None)


# --- mapping ---------------------------------------------------------------------------------
@dataclass
class Mapped:
    """Contract events of one payload (raw person ids), or why there are none."""

    events: list[RawEvent] = field(default_factory=list)
    ignored: str | None = None


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object; InvalidEvent ``not_json`` / ``not_an_object``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("not_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _req(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent("bad_payload", f"{name} must be a non-empty string")
    return value


def _opt(doc: Mapping[str, Any], name: str) -> str | None:
    return None if doc.get(name) in (None, "") else _req(doc, name)


def slack_time(ts: str) -> str:
    """A Slack ``ts`` (``1732450000.000200``: seconds.microseconds) as RFC 3339 UTC."""
    m = _SLACK_TS.fullmatch(ts)
    if m is None:
        raise InvalidEvent("bad_timestamp", "a Slack ts is seconds.microseconds")
    micros = int((m[2] or "0").ljust(6, "0"))
    return iso(datetime.fromtimestamp(int(m[1]), UTC) + timedelta(microseconds=micros))


def slack_mentions(text: object) -> list[str]:
    """User ids mentioned as ``<@U…>`` in a Slack text, in order, once each (at most
    ``MAX_MENTIONS``; the parsing is the export reader's,
    ``pipeline.sources.connectors.mentions``)."""
    return mentions.slack_mentions(text)[:MAX_MENTIONS]


def mattermost_mentions(text: object) -> list[str]:
    """Usernames (lower-case) mentioned as ``@name`` in a Mattermost text, in order, once
    each; not ``@all``, ``@channel``, ``@here``, nor the ``@`` of an e-mail address."""
    return mentions.at_mentions(text, None)[:MAX_MENTIONS]


def map_slack_callback(doc: Mapping[str, Any]) -> Mapped:
    """Contract events of one Slack ``event_callback`` (InvalidEvent when malformed)."""
    ev = doc.get("event")
    if not isinstance(ev, dict):
        raise InvalidEvent("bad_payload", "event_callback without an event object")
    kind = ev.get("type")
    if kind == "message":
        return _slack_message(ev)
    if kind == "reaction_added":
        return _slack_reaction(ev, _req(doc, "event_id"))
    if kind == "member_joined_channel":
        return _slack_joined(ev, _req(doc, "event_id"))
    if not isinstance(kind, str):
        raise InvalidEvent("bad_payload", "event.type must be a string")
    return Mapped(ignored="event_type")


def _slack_message(ev: Mapping[str, Any]) -> Mapped:
    subtype = ev.get("subtype")
    if subtype not in _COUNTED_SUBTYPES:
        return Mapped(ignored=_SUBTYPE_REASONS.get(str(subtype), "subtype"))
    if ev.get("bot_id") or ev.get("bot_profile"):
        return Mapped(ignored="bot")
    if ev.get("channel_type") in ("im", "mpim"):
        return Mapped(ignored="direct_message")
    user = ev.get("user")
    if not isinstance(user, str) or not user:
        return Mapped(ignored="no_user")
    channel, ts = _req(ev, "channel"), _req(ev, "ts")
    when = slack_time(ts)
    thread = _opt(ev, "thread_ts")
    # ids as the export reader's (pipeline.sources.connectors.slack): an import counts them once
    cid = f"slack:{channel}:{ts}"
    is_reply = thread is not None and thread != ts
    root = f"slack:{channel}:{thread}" if is_reply else cid
    msg = Message(SLACK, cid, root, when, channel)
    first = (
        msg.reply(user, parent_content_id=root, target_actor_id=_opt(ev, "parent_user_id"))
        if is_reply
        else msg.post(user)
    )
    return Mapped([first, *msg.numbered_mentions(user, slack_mentions(ev.get("text")))])


def _slack_reaction(ev: Mapping[str, Any], event_id: str) -> Mapped:
    user = _req(ev, "user")
    when = slack_time(_req(ev, "event_ts"))
    item = ev.get("item")
    if not isinstance(item, dict):
        raise InvalidEvent("bad_payload", "reaction_added without an item object")
    if item.get("type") == "message":
        space: str | None = _req(item, "channel")
        content = f"slack:{space}:{_req(item, 'ts')}"
    else:  # a file or file comment: no channel
        space, content = None, f"slack:{_opt(item, 'file_comment') or _req(item, 'file')}"
    return Mapped(
        [
            event(
                f"slack:{event_id}",  # Slack's id of the delivery: stable over retries
                "reaction_added",
                when,
                user,
                platform=SLACK,
                space_id=space,
                target_actor_id=_opt(ev, "item_user"),
                content_id=content,
            )
        ]
    )


def _slack_joined(ev: Mapping[str, Any], event_id: str) -> Mapped:
    user, channel, ts = _req(ev, "user"), _req(ev, "channel"), _req(ev, "event_ts")
    joined = event(
        f"slack:{event_id}",
        "member_joined",
        slack_time(ts),
        user,
        platform=SLACK,
        space_id=channel,
    )
    return Mapped([joined])


def parse_mattermost(body: bytes, content_type: str) -> dict[str, Any]:
    """A Mattermost outgoing webhook body (JSON or form-encoded) as a dict of fields."""
    if content_type == "application/json":
        return parse_json_object(body)
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidEvent("invalid_utf8", "form body is not UTF-8") from None
    return {k: v[0] for k, v in form.items()}


def map_mattermost(doc: Mapping[str, Any]) -> Mapped:
    """A post of a Mattermost outgoing webhook and its @mentions as contract events."""
    user = _req(doc, "user_name").lower()
    post, channel = _req(doc, "post_id"), _req(doc, "channel_id")
    stamp = doc.get("timestamp")
    if isinstance(stamp, str) and stamp.isdigit():
        stamp = int(stamp)
    if not isinstance(stamp, int) or isinstance(stamp, bool) or not 0 <= stamp < 10**14:
        raise InvalidEvent("bad_timestamp", "timestamp must be epoch milliseconds")
    when = iso(datetime.fromtimestamp(stamp // 1000, UTC) + timedelta(milliseconds=stamp % 1000))
    msg = Message(MATTERMOST, f"mattermost:{post}", f"mattermost:{post}", when, channel)
    mentioned = mattermost_mentions(doc.get("text"))
    return Mapped([msg.post(user), *msg.numbered_mentions(user, mentioned)])


# --- what goes to Kafka ----------------------------------------------------------------------
def validate_all(
    events: Iterable[Mapping[str, Any]], now_ms: int, future_ms: int
) -> list[RawEvent]:
    """Each event checked against contract v1 (the first failure raises InvalidEvent)."""
    return [validate_event(ev, now_ms, future_ms) for ev in events]


def outgoing(
    events: Iterable[Mapping[str, Any]],
    pseudonymise: Callable[[str], str],
    already: bool = False,
) -> list[RawEvent]:
    """Validated events as sent on: set fields only, person ids pseudonymised (``already``:
    the sender did it with the same key, they are kept)."""
    out = []
    for ev in events:
        doc = {k: v for k, v in ev.items() if v is not None and k != "ts"}
        if not already:
            doc["actor_id"] = pseudonymise(doc["actor_id"])
            if "target_actor_id" in doc:
                doc["target_actor_id"] = pseudonymise(doc["target_actor_id"])
        out.append(doc)
    return out


#: Envelopes of the webhook endpoints: person ids pseudonymised by the worker already.
ENVELOPE_HEAD: Final = b'{"schema_version":1,"pseudonymised":true,"events":['
ENVELOPE_TAIL: Final = b"]}"


def envelopes(events: Iterable[Mapping[str, Any]], max_bytes: int) -> list[Envelope | TooLarge]:
    """Pseudonymised events as envelope values of at most ``max_bytes`` each
    (``pipeline.contract.records``); an event too large for one alone comes back as ``TooLarge``."""
    items = (orjson.dumps(ev) for ev in events)
    return list(pack(items, ENVELOPE_HEAD, ENVELOPE_TAIL, max_bytes))


_SLACK_KEEP: Final = ("type", "event_id", "event_time", "team_id", "api_app_id")
_SLACK_EVENT_KEEP: Final = ("type", "subtype", "channel", "channel_type", "ts", "thread_ts")
_MATTERMOST_KEEP: Final = ("team_id", "channel_id", "post_id", "timestamp")


def redacted(source: str, doc: Mapping[str, Any] | None) -> bytes:
    """A dead letter of a platform payload: only fields that name no person and hold no text
    (ids of the event, channel and message, its times), so nothing private is written."""

    def scalars(d: Mapping[str, Any], keep: Sequence[str]) -> dict[str, Any]:
        return {
            k: d[k][:200] if isinstance(d[k], str) else d[k]
            for k in keep
            if isinstance(d.get(k), str | int | float | bool)
        }

    out: dict[str, Any] = {"redacted": True, "source": source}
    if doc is None:
        out["unparseable"] = True
    elif source == SLACK:
        out.update(scalars(doc, _SLACK_KEEP))
        if isinstance(doc.get("event"), dict):
            out["event"] = scalars(doc["event"], _SLACK_EVENT_KEEP)
    else:
        out.update(scalars(doc, _MATTERMOST_KEEP))
    return orjson.dumps(out)


# --- metrics ---------------------------------------------------------------------------------
@dataclass
class WebhookMetrics:
    """Counters of the endpoint; labels are closed sets (source, status, reason)."""

    requests: Counter
    events: Counter
    ignored: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WebhookMetrics:
        """Register the counters in ``registry`` (the worker's)."""
        return cls(
            requests=Counter(
                "teilhabe_webhook_requests",
                "Webhook requests answered, by source (events, slack, mattermost) and status",
                ["source", "status"],
                registry=registry,
            ),
            events=Counter(
                "teilhabe_webhook_events",
                "Events received over webhooks and confirmed by Kafka, by source",
                ["source"],
                registry=registry,
            ),
            ignored=Counter(
                "teilhabe_webhook_ignored",
                "Valid webhook payloads that hold nothing to count (bot, edit, duplicate, ...)",
                ["source", "reason"],
                registry=registry,
            ),
        )
