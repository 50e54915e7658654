"""Slack export reader: round trip of a synthetic organisation (the oracle), a hand-written
sample after Slack's documentation, corrupt archives, privacy and the bounded thread memory."""

from __future__ import annotations

import doctest
import shutil
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract.events import validate_event
from pipeline.sources.connectors import mentions, slack
from pipeline.sources.connectors.base import ImportContext, ImportFormatError, RawEvent
from tests.connectors.common import (
    CHAT_EXPRESSIBLE,
    JSON,
    OrgEvents,
    assert_chat_expressible,
    assert_chat_round_trip,
    assert_no_text,
    assert_person_key_id,
    assert_valid,
    export_fixtures,
    org_spec,
    read_with,
    shape,
    texts_in,
)
from tests.connectors.export_slack import plan_slack, slack_expressible, write_plan

SAMPLE = Path(__file__).parent / "samples" / "slack" / "workspace"
org_events, exported = export_fixtures(org_spec(11, "slack"), plan_slack, write_plan, "export.zip")


def read(source: Path, **kw: Any) -> tuple[list[RawEvent], ImportContext]:
    return read_with(slack.read, source, **kw)


# ---- round trip: the oracle ----------------------------------------------------------------


def test_round_trip_gives_back_exactly_the_expressible_events(
    org_events: OrgEvents, exported: tuple[Path, Any]
) -> None:
    events, _ = org_events
    path, plan = exported
    got, ctx = read(path)
    assert_chat_round_trip(got, ctx, slack_expressible(events), plan.bot_messages)


def test_expressible_keeps_every_expressible_generator_event(org_events: OrgEvents) -> None:
    """The oracle itself: nothing expressible is lost, mentions add their message."""
    events, _ = org_events
    assert_chat_expressible(events, slack_expressible(events))

    # who did what when is kept (the export has no reaction time: the message's time instead)
    def ms(e: dict[str, Any]) -> dict[str, Any]:
        keep = ("event_type", "actor_id", "space_id")
        return {**{k: e.get(k) for k in keep}, "occurred_at": e["occurred_at"][:23]}

    want = Counter(
        shape(ms(e)) for e in events if e["event_type"] in CHAT_EXPRESSIBLE - {"reaction_added"}
    )
    have = Counter(shape(ms(e)) for e in slack_expressible(events))
    assert not want - have


def test_replies_across_day_files_find_their_root(exported: tuple[Path, Any]) -> None:
    path, _ = exported
    got, _ = read(path)
    posts = {e["content_id"]: e for e in got if e["event_type"] == "post_created"}
    replies = [e for e in got if e["event_type"] == "reply_created"]
    later = [
        r
        for r in replies
        if r["occurred_at"][:10] != posts[r["root_content_id"]]["occurred_at"][:10]
    ]
    assert later, "the sample should have threads spanning days"
    assert all(r["target_actor_id"] == posts[r["root_content_id"]]["actor_id"] for r in replies)


def test_zip_and_directory_give_the_same_events_with_stable_ids(
    exported: tuple[Path, Any], tmp_path: Path
) -> None:
    path, _ = exported
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path / "unzipped")
    a, _ = read(path)
    b, _ = read(tmp_path / "unzipped")
    c, _ = read(path)
    assert sorted(map(orjson.dumps, a)) == sorted(map(orjson.dumps, b))
    assert a == c


def test_zip_with_a_top_folder(exported: tuple[Path, Any], tmp_path: Path) -> None:
    path, _ = exported
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(nested, "w") as dst:
        for info in src.infolist():
            dst.writestr(f"Teilhabe Slack export Jan 5 2026/{info.filename}", src.read(info))
    assert read(nested)[0] == read(path)[0]


def test_person_key_id_uses_slack_user_ids(exported: tuple[Path, Any]) -> None:
    path, plan = exported
    assert_person_key_id(slack.read, path, set(plan.users.values()))


def test_progress_reports_the_day_files(exported: tuple[Path, Any]) -> None:
    path, _ = exported
    seen: list[int] = []
    ctx = ImportContext(progress=seen.append)
    list(slack.read(path, ctx))
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    days = [i for i in infos if i.filename.count("/") == 1]
    assert len(seen) == 1 + len(days)  # the metadata files, then each day file
    assert sum(seen) == sum(i.compress_size for i in infos)


# ---- privacy ----------------------------------------------------------------------------------


def test_no_message_text_leaves_the_reader(exported: tuple[Path, Any]) -> None:
    path, plan = exported
    got, ctx = read(path)
    assert_no_text(got, ctx, ["Vertraulich", *plan.texts])


def test_no_sample_text_leaves_the_reader() -> None:
    texts: list[str] = []
    for day in SAMPLE.glob("*/*.json"):
        try:
            texts += texts_in(orjson.loads(day.read_bytes()), "text")
        except orjson.JSONDecodeError:
            pass
    got, ctx = read(SAMPLE)
    assert len(texts) > 15
    # DM and group-DM names (made of user names) never become a space
    assert_no_text(got, ctx, [*texts, "mpdm", "alice--bob"])


# ---- the hand-written sample ------------------------------------------------------------------


def _ev(eid: str, kind: str, when: str, actor: str, space: str, **more: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": eid,
        "event_type": kind,
        "occurred_at": when,
        "actor_id": actor,
        "platform": "slack",
        "space_id": space,
        **more,
    }


ALICE, BOB, CAROL = "alice@example.org", "U02BOB", "carol@example.org"  # bob has no e-mail
ROOT = "slack:C01ALLG:1709543400.000200"
TOMB = "slack:C01ALLG:1709546400.000700"


def _post(cid: str, when: str, actor: str, space: str) -> dict[str, Any]:
    return _ev(cid, "post_created", when, actor, space, content_id=cid, root_content_id=cid)


SAMPLE_EVENTS = [
    # DM (listed in dms.json): a thread, space "direct"
    _post("slack:D0ALBO001:1709551000.000100", "2024-03-04T11:16:40.000100Z", ALICE, "direct"),
    _ev(
        "slack:D0ALBO001:1709551060.000200",
        "reply_created",
        "2024-03-04T11:17:40.000200Z",
        BOB,
        "direct",
        target_actor_id=ALICE,
        content_id="slack:D0ALBO001:1709551060.000200",
        parent_content_id="slack:D0ALBO001:1709551000.000100",
        root_content_id="slack:D0ALBO001:1709551000.000100",
    ),
    # a DM folder missing from dms.json is still a DM
    _post("slack:D0NOTLISTED:1709553000.000100", "2024-03-04T11:50:00.000100Z", BOB, "direct"),
    # allgemein, day 1
    _ev(
        "slack:C01ALLG:1709542800.000100",
        "member_joined",
        "2024-03-04T09:00:00.000100Z",
        CAROL,
        "allgemein",
    ),
    _post(ROOT, "2024-03-04T09:10:00.000200Z", ALICE, "allgemein"),
    _ev(
        f"{ROOT}:mention:0",
        "mention",
        "2024-03-04T09:10:00.000200Z",
        ALICE,
        "allgemein",
        target_actor_id=BOB,
        content_id=ROOT,
        root_content_id=ROOT,
    ),
    *[
        _ev(
            f"{ROOT}:reaction:3ca81f8be160:{i}",
            "reaction_added",
            "2024-03-04T09:10:00.000200Z",
            who,
            "allgemein",
            target_actor_id=ALICE,
            content_id=ROOT,
            root_content_id=ROOT,
        )
        for i, who in enumerate((BOB, CAROL))
    ],
    _post("slack:C01ALLG:1709544000.000300", "2024-03-04T09:20:00.000300Z", BOB, "allgemein"),
    _ev(
        "slack:C01ALLG:1709544000.000300:mention:0",
        "mention",
        "2024-03-04T09:20:00.000300Z",
        BOB,
        "allgemein",
        target_actor_id=ALICE,
        content_id="slack:C01ALLG:1709544000.000300",
        root_content_id="slack:C01ALLG:1709544000.000300",
    ),
    _post("slack:C01ALLG:1709545200.000500", "2024-03-04T09:40:00.000500Z", CAROL, "allgemein"),
    # allgemein, day 2: replies to day 1's thread (one without parent_user_id)
    _ev(
        "slack:C01ALLG:1709629200.000100",
        "reply_created",
        "2024-03-05T09:00:00.000100Z",
        BOB,
        "allgemein",
        target_actor_id=ALICE,
        content_id="slack:C01ALLG:1709629200.000100",
        parent_content_id=ROOT,
        root_content_id=ROOT,
    ),
    _ev(
        "slack:C01ALLG:1709629200.000100:reaction:9d36db83d481:0",
        "reaction_added",
        "2024-03-05T09:00:00.000100Z",
        ALICE,
        "allgemein",
        target_actor_id=BOB,
        content_id="slack:C01ALLG:1709629200.000100",
        root_content_id=ROOT,
    ),
    _ev(
        "slack:C01ALLG:1709629800.000200",
        "reply_created",
        "2024-03-05T09:10:00.000200Z",
        CAROL,
        "allgemein",
        target_actor_id=ALICE,
        content_id="slack:C01ALLG:1709629800.000200",
        parent_content_id=ROOT,
        root_content_id=ROOT,
    ),
    _ev(
        "slack:C01ALLG:1709629800.000200:mention:0",
        "mention",
        "2024-03-05T09:10:00.000200Z",
        CAROL,
        "allgemein",
        target_actor_id=BOB,
        content_id="slack:C01ALLG:1709629800.000200",
        root_content_id=ROOT,
    ),
    # a reply under a deleted root: activity without a target
    _ev(
        "slack:C01ALLG:1709630400.000300",
        "reply_created",
        "2024-03-05T09:20:00.000300Z",
        ALICE,
        "allgemein",
        content_id="slack:C01ALLG:1709630400.000300",
        parent_content_id=TOMB,
        root_content_id=TOMB,
    ),
    _ev(
        "slack:C01ALLG:1709631000.000400",
        "member_left",
        "2024-03-05T09:30:00.000400Z",
        CAROL,
        "allgemein",
    ),
    _ev(
        "slack:C01ALLG:1709632200.000600",
        "member_joined",
        "2024-03-05T09:50:00.000600Z",
        BOB,
        "allgemein",
    ),
    # group DM (mpims.json): space "direct", reactions of two people
    _post("slack:G02MPIM:1709552000.000100", "2024-03-04T11:33:20.000100Z", CAROL, "direct"),
    *[
        _ev(
            f"slack:G02MPIM:1709552000.000100:reaction:920cbab65e05:{i}",
            "reaction_added",
            "2024-03-04T11:33:20.000100Z",
            who,
            "direct",
            target_actor_id=CAROL,
            content_id="slack:G02MPIM:1709552000.000100",
            root_content_id="slack:G02MPIM:1709552000.000100",
        )
        for i, who in enumerate((ALICE, BOB))
    ],
    # projekt-x: day 1 is not JSON (skipped), day 2 is read
    _post("slack:C02PROJ:1709629500.000100", "2024-03-05T09:05:00.000100Z", BOB, "projekt-x"),
    # private channel (groups.json)
    _post("slack:G01VORST:1709550000.000100", "2024-03-04T11:00:00.000100Z", ALICE, "vorstand"),
]
SAMPLE_SKIPS = Counter(
    {
        # users.json: a non-object; allgemein: no user, a non-object; projekt-x day 1 not JSON
        "unparseable": 4,
        # bot_message, a message with bot_id, the bot's reaction
        "bot": 3,
        "reaction_users_unknown": 1,  # count 3, two users listed
        "system": 1,  # channel_topic
        "deleted": 1,  # tombstone
        "edited": 1,  # message_changed record (the edited message itself counts once)
    }
)


def test_sample_gives_exactly_the_documented_events() -> None:
    got, ctx = read(SAMPLE)
    assert got == SAMPLE_EVENTS
    assert ctx.stats.skipped == SAMPLE_SKIPS
    assert ctx.people == {}
    assert_valid(got)


def test_sample_as_zip_is_the_same(tmp_path: Path) -> None:
    archive = Path(shutil.make_archive(str(tmp_path / "export"), "zip", SAMPLE))
    got, ctx = read(archive)
    assert got == SAMPLE_EVENTS and ctx.stats.skipped == SAMPLE_SKIPS


# ---- corrupt input ------------------------------------------------------------------------------


def _zip(path: Path, files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


USERS = orjson.dumps([{"id": "U1", "profile": {"email": "a@example.org"}}])
CHANNELS = orjson.dumps([{"id": "C1", "name": "general"}])
DAY = orjson.dumps([{"type": "message", "user": "U1", "text": "hallo", "ts": "1709543400.000100"}])


def test_truncated_zip_is_a_format_error(exported: tuple[Path, Any], tmp_path: Path) -> None:
    path, _ = exported
    cut = tmp_path / "cut.zip"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImportFormatError, match="not a readable ZIP"):
        slack.read(cut, ImportContext())


@pytest.mark.parametrize("missing", ["users.json", "channels.json"])
def test_zip_without_metadata_is_a_format_error(missing: str, tmp_path: Path) -> None:
    files = {"users.json": USERS, "channels.json": CHANNELS, "general/2024-03-04.json": DAY}
    del files[missing]
    with pytest.raises(ImportFormatError, match=missing):
        slack.read(_zip(tmp_path / "x.zip", files), ImportContext())


def test_not_a_zip_and_missing_files_are_format_errors(tmp_path: Path) -> None:
    text = tmp_path / "export.zip"
    text.write_text("this is a text file, not an archive\n")
    with pytest.raises(ImportFormatError, match="not a readable ZIP"):
        slack.read(text, ImportContext())
    with pytest.raises(ImportFormatError, match="no such file"):
        slack.read(tmp_path / "nowhere.zip", ImportContext())
    with pytest.raises(ImportFormatError, match="not a Slack workspace export"):
        slack.read(tmp_path, ImportContext())  # a directory that is no export


def test_unreadable_users_json_is_a_format_error(tmp_path: Path) -> None:
    for bad in (b"{not json", b'{"users": []}'):
        files = {"users.json": bad, "channels.json": CHANNELS}
        with pytest.raises(ImportFormatError, match="users.json"):
            slack.read(_zip(tmp_path / "x.zip", files), ImportContext())


def test_damaged_member_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    other = orjson.dumps(
        [{"type": "message", "user": "U1", "text": "x", "ts": "1709629200.000100"}]
    )
    path = _zip(
        tmp_path / "x.zip",
        {
            "users.json": USERS,
            "channels.json": CHANNELS,
            "general/2024-03-04.json": DAY,
            "general/2024-03-05.json": other,
        },
        method=zipfile.ZIP_STORED,
    )
    raw = bytearray(path.read_bytes())
    at = raw.index(b"hallo")
    raw[at : at + 5] = b"HALLO"  # same length, wrong CRC
    path.write_bytes(bytes(raw))
    got, ctx = read(path)
    assert [e["occurred_at"][:10] for e in got] == ["2024-03-05"]
    assert ctx.stats.skipped == Counter({"unparseable": 1})


def test_bad_records_are_skipped_never_a_crash(tmp_path: Path) -> None:
    day = orjson.dumps(
        [
            {"type": "message", "user": "U1", "text": "ok", "ts": "1709543400.000100"},
            {"type": "message", "text": "no user", "ts": "1709543401.000100"},
            {"type": "message", "user": "U1", "text": "no ts"},
            {"type": "message", "user": "U1", "ts": 1709543402.5},
            {"type": "message", "user": "U1", "ts": "yesterday"},
            {"type": "message", "user": ["U1"], "ts": "1709543403.000100"},
            {"type": "message", "user": "U1", "subtype": 7, "ts": "1709543404.000100"},
            {"type": "message", "user": "U1", "ts": "1709543405.000100", "reactions": "lots"},
            {
                "type": "message",
                "user": "U1",
                "ts": "1709543406.000100",
                "reactions": [{"name": "+1"}, 3, {"name": "x", "users": [None, "U1"], "count": 2}],
            },
            None,
            [],
            17,
        ]
    )
    files = {
        "users.json": USERS,
        "channels.json": CHANNELS,
        "general/2024-03-04.json": day,
        "general/2024-03-05.json": b'{"not": "an array"}',
        "general/2024-03-06.json": b"",
    }
    got, ctx = read(_zip(tmp_path / "x.zip", files))
    # every record is an event or a counted skip
    assert Counter(e["event_type"] for e in got) == Counter(
        {"post_created": 3, "reaction_added": 1}
    )
    assert ctx.stats.skipped == Counter({"unparseable": 15})
    assert_valid(got)


def test_oversized_day_file_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slack, "MAX_DAY_FILE_BYTES", 64)
    big = orjson.dumps(
        [{"type": "message", "user": "U1", "ts": "1709543400.000100", "text": "x" * 100}]
    )
    files = {"users.json": USERS, "channels.json": CHANNELS, "general/2024-03-04.json": big}
    got, ctx = read(_zip(tmp_path / "x.zip", files))
    assert got == [] and ctx.stats.skipped == Counter({"too_large": 1})


def test_thread_memory_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for one root, a reply to an older thread keeps its parent but has no target."""
    monkeypatch.setattr(slack, "THREAD_ROOTS_PER_CHANNEL", 1)
    msgs = [
        {
            "type": "message",
            "user": "U1",
            "ts": "1709543400.000100",
            "thread_ts": "1709543400.000100",
        },
        {
            "type": "message",
            "user": "U2",
            "ts": "1709543500.000100",
            "thread_ts": "1709543500.000100",
        },
        {
            "type": "message",
            "user": "U2",
            "ts": "1709543600.000100",
            "thread_ts": "1709543400.000100",
        },
        {
            "type": "message",
            "user": "U1",
            "ts": "1709543700.000100",
            "thread_ts": "1709543500.000100",
        },
    ]
    users = orjson.dumps([{"id": "U1"}, {"id": "U2"}])
    files = {
        "users.json": users,
        "channels.json": CHANNELS,
        "general/2024-03-04.json": orjson.dumps(msgs),
    }
    got, _ = read(_zip(tmp_path / "x.zip", files))
    replies = [e for e in got if e["event_type"] == "reply_created"]
    assert [r.get("target_actor_id") for r in replies] == [None, "U2"]
    assert replies[0]["root_content_id"] == "slack:C1:1709543400.000100"


# ---- mentions and arbitrary input ------------------------------------------------------------


def test_slack_mentions() -> None:
    assert mentions.slack_mentions("<@U1AB> <@W2CD|jo> <@U1AB|x> <!here> <!subteam^S1|@t>") == [
        "U1AB",
        "W2CD",
    ]
    assert mentions.slack_mentions("mail a@b.c, <@lowercase>, <@U1") == []
    assert mentions.slack_mentions(None) == [] and mentions.slack_mentions(["<@U1AB>"]) == []
    assert doctest.testmod(mentions).failed == 0


MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "type": st.just("message"),
        "subtype": st.sampled_from(["channel_join", "bot_message", "tombstone", "file_share", "x"])
        | JSON,
        "user": st.sampled_from(["U1", "U2", "USLACKBOT"]) | JSON,
        "ts": st.sampled_from(["1709543400.000100", "1709543500", "9" * 20]) | JSON,
        "thread_ts": st.sampled_from(["1709543400.000100", "1709543300.000100"]) | JSON,
        "parent_user_id": st.sampled_from(["U1", "U2"]) | JSON,
        "text": st.sampled_from(["<@U1> <@U2|b>", "<@U9>"]) | JSON,
        "bot_id": JSON,
        "reply_count": JSON,
        "reactions": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.text(max_size=5) | JSON,
                    "users": st.lists(st.sampled_from(["U1", "U2"]) | JSON),
                },
                optional={"count": JSON},
            )
            | JSON,
            max_size=3,
        )
        | JSON,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MESSAGE | JSON, max_size=6))
def test_arbitrary_messages_never_crash(messages: list[Any]) -> None:
    """Each message gives events or a counted skip (never a crash, never silent loss)."""
    ctx = ImportContext()
    users = slack._Users(keys={"U1": "a@example.org"})
    reader = slack._ChannelReader(slack._Channel("C1", "general"), users, ctx)
    now = int(time.time() * 1000) + 10**15  # "9" * 20 seconds is not a time; far future is
    for msg in messages:
        before = ctx.stats.skipped.total()
        out = list(reader.message(msg))
        assert out or ctx.stats.skipped.total() > before
        for ev in out:
            validate_event(ev, now, 0)
