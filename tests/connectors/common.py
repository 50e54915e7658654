"""What the connector tests share: the synthetic organisation and its written export, reading
an export whole, comparing events without their ids, and the checks every reader's events
pass (contract-valid, unique ids, no message text, addresses only where they are pseudonymised).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import strategies as st

from pipeline.contract.events import validate_event
from pipeline.dev.generator import Organisation, OrgSpec
from pipeline.sources.connectors.base import ImportContext, ImportFormatError, RawEvent

_IDS = ("event_id", "schema_version")
OrgEvents = tuple[list[dict[str, Any]], dict[str, str]]
"""The organisation's events and its people (person id -> unit)."""

#: What a chat export (Slack, Mattermost) expresses of the generator's event types.
CHAT_EXPRESSIBLE = frozenset(
    {"post_created", "reply_created", "reaction_added", "mention", "member_joined", "member_left"}
)
#: Arbitrary JSON values, for readers that must never crash on what they are given.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def org_spec(seed: int, platform: str, *, churn: bool = True) -> OrgSpec:
    """Three units of 20 people for three days on ``platform``; with ``churn`` one in ten
    joins and one in twenty leaves in the period."""
    more = {"new_member_share": 0.1, "leaver_share": 0.05} if churn else {}
    units = (("Vertrieb", 20), ("IT", 20), ("Einkauf", 20))
    return OrgSpec(seed=seed, units=units, days=3, platforms=(platform,), **more)


def organisation(spec: OrgSpec) -> OrgEvents:
    """The events and people of the synthetic organisation of ``spec``."""
    org = Organisation(spec)
    return list(org.events()), {p.person_id: p.unit for p in org.people}


def export_fixtures(
    spec: OrgSpec,
    plan: Callable[[list[dict[str, Any]], dict[str, str]], Any],
    write_plan: Callable[[Any, Path], Path],
    filename: str,
) -> tuple[Any, Any]:
    """The module fixtures ``org_events`` (``organisation(spec)``) and ``exported`` (the path
    of the export written by an export helper's ``plan`` and ``write_plan``, and the plan)."""

    @pytest.fixture(scope="module", name="org_events")
    def org_events_fixture() -> OrgEvents:
        return organisation(spec)

    @pytest.fixture(scope="module", name="exported")
    def exported_fixture(
        org_events: OrgEvents, tmp_path_factory: pytest.TempPathFactory
    ) -> tuple[Path, Any]:
        planned = plan(*org_events)
        folder = tmp_path_factory.mktemp(spec.platforms[0])
        return write_plan(planned, folder / filename), planned

    return org_events_fixture, exported_fixture


def read_with(
    reader: Callable[..., Iterator[RawEvent]], source: Path, **kw: Any
) -> tuple[list[RawEvent], ImportContext]:
    """All events of ``reader`` at ``source``, and the context it filled."""
    ctx = ImportContext()
    return list(reader(source, ctx, **kw)), ctx


def shape(event: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """An event without its ids, as a hashable for multiset comparison."""
    return tuple(sorted((k, v) for k, v in event.items() if k not in _IDS))


def strip_ids(events: Iterable[RawEvent]) -> list[dict[str, Any]]:
    """The events without ``event_id`` and ``schema_version``, in order."""
    return [{k: v for k, v in e.items() if k not in _IDS} for e in events]


def assert_same_events(got: Iterable[RawEvent], expected: Iterable[dict[str, Any]]) -> None:
    """The same events, ids aside, in any order."""
    assert Counter(map(shape, got)) == Counter(map(shape, expected))


def assert_valid(events: list[RawEvent], now_ms: int | None = None) -> None:
    """Every event is contract v1 (none later than ``now_ms``, default now); ids are unique."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    for ev in events:
        validate_event(ev, now, 0)
    assert len({ev["event_id"] for ev in events}) == len(events), "event ids must be unique"


def assert_private(events: list[RawEvent], secret: str, raw: str | None = None) -> None:
    """No ``secret`` (it is in every message text) in any event; an ``@`` (an address) only
    in ``actor_id`` / ``target_actor_id``, which the importer pseudonymises. ``raw``, the
    input, must hold the secret, else the check proves nothing."""
    if raw is not None:
        assert secret in raw  # the input has text to leak
    for e in events:
        assert secret not in orjson.dumps(e).decode()
        for k, v in e.items():
            if k not in ("actor_id", "target_actor_id"):
                assert "@" not in str(v), (k, v)


def assert_no_text(events: list[RawEvent], ctx: ImportContext, texts: list[str]) -> None:
    """None of the message ``texts`` is in the events or the statistics."""
    blob = orjson.dumps(events).decode() + repr(ctx.stats)
    assert not [t for t in texts if t in blob]


def texts_in(doc: Any, key: str) -> list[str]:
    """Every string under ``key`` anywhere in a JSON document (the messages of a sample)."""
    if isinstance(doc, dict):
        found = [v for k, v in doc.items() if k == key and isinstance(v, str)]
        return found + [t for v in doc.values() for t in texts_in(v, key)]
    if isinstance(doc, list):
        return [t for v in doc for t in texts_in(v, key)]
    return []


def assert_person_key_id(
    reader: Callable[..., Iterator[RawEvent]], source: Path, ids: set[str]
) -> None:
    """With ``person_key="id"`` every person of the events is one of the platform's ``ids``;
    a key the reader does not offer is a ValueError."""
    got, _ = read_with(reader, source, person_key="id")
    assert {e["actor_id"] for e in got} <= ids
    assert {e["target_actor_id"] for e in got if "target_actor_id" in e} <= ids
    with pytest.raises(ValueError):
        reader(source, ImportContext(), person_key="name")


def assert_not_the_format(
    read: Callable[[Path], Any], junk: Path, content: str, secret: str, match: str = ""
) -> None:
    """Reading ``junk``, a file of ``content`` that holds the ``secret`` message text, is an
    ImportFormatError (matching ``match``) that does not repeat the text; reading a file
    that is not there, an ImportFormatError that says so."""
    junk.write_text(content)
    with pytest.raises(ImportFormatError, match=match) as info:
        read(junk)
    assert secret not in str(info.value)
    with pytest.raises(ImportFormatError, match="no such file"):
        read(junk.with_name(f"missing-{junk.name}"))


def assert_chat_round_trip(
    got: list[RawEvent], ctx: ImportContext, expected: list[dict[str, Any]], bots: int
) -> None:
    """A chat export read back: exactly the ``expected`` events (ids aside) with one of each
    expressible type at least, valid; the ``bots`` messages are the only skips; no profiles."""
    assert_same_events(got, expected)
    assert ctx.stats.skipped == Counter({"bot": bots})
    assert ctx.people == {}
    assert_valid(got)
    kinds = Counter(ev["event_type"] for ev in got)
    assert kinds.keys() == CHAT_EXPRESSIBLE, kinds  # the sample exercises every mapping


def assert_chat_expressible(
    events: list[dict[str, Any]], expressible: list[dict[str, Any]]
) -> None:
    """A chat export's oracle keeps every expressible event; a mention becomes a message plus
    the mention."""
    source = Counter(e["event_type"] for e in events if e["event_type"] in CHAT_EXPRESSIBLE)
    got = Counter(e["event_type"] for e in expressible)
    assert got == source + Counter({"post_created": source["mention"]})


# --------------------------------------------------------------------------------------------
# writing chat exports (export_slack, export_mattermost)

#: Emoji names the export helpers react with.
EMOJI = ("+1", "heart", "tada", "eyes", "raised_hands", "rocket", "clap", "100", "pray", "fire")


def in_spaces(events: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(event, type, space) of the events that happen in a space, in time order: what a chat
    export can hold."""
    for ev in sorted(events, key=lambda e: e["occurred_at"]):
        space = ev.get("space_id")
        if space is not None:
            yield ev, ev["event_type"], space


def new_text(texts: list[str], kind: str) -> str:
    """A new message text, added to ``texts``: numbered (so unique) and long enough that a
    privacy test finding it in the output is no chance."""
    n = len(texts) + 1
    digest = hashlib.sha1(str(n).encode()).hexdigest()
    texts.append(f"Vertraulich {kind} Nr. {n} zur Abstimmung {digest}")
    return texts[-1]


def free_tick(used: set[int], tick: int) -> int:
    """``tick`` or the first later one not in ``used``, now taken: the messages of a channel
    need distinct times (a message's time is its identity in the export)."""
    while tick in used:
        tick += 1
    used.add(tick)
    return tick


def new_emoji(event_id: str, used: Container[str]) -> str | None:
    """An emoji for the reaction event ``event_id`` (picked by its id) that the person has not
    ``used`` on the message yet; None when they used them all."""
    start = int(hashlib.sha1(event_id.encode()).hexdigest(), 16) % len(EMOJI)
    for k in range(len(EMOJI)):
        emoji = EMOJI[(start + k) % len(EMOJI)]
        if emoji not in used:
            return emoji
    return None
