"""Mattermost bulk export reader: round trip of a synthetic organisation (the oracle), a
hand-written sample after Mattermost's documentation, corrupt files and privacy."""

from __future__ import annotations

import gzip
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
from pipeline.sources.connectors import mattermost, mentions
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
    texts_in,
)
from tests.connectors.export_mattermost import mattermost_expressible, plan_mattermost, write_plan

SAMPLE = Path(__file__).parent / "samples" / "mattermost" / "export.jsonl"
org_events, exported = export_fixtures(
    org_spec(12, "mattermost"), plan_mattermost, write_plan, "export.jsonl"
)
VERSION = b'{"type":"version","version":1}\n'
USER = b'{"type":"user","user":{"username":"anna","email":"anna@example.org"}}\n'


def read(source: Path, **kw: Any) -> tuple[list[RawEvent], ImportContext]:
    return read_with(mattermost.read, source, **kw)


def post(**fields: Any) -> bytes:
    body = {"team": "t", "channel": "c", "user": "anna", "message": "m", "create_at": 1709543400000}
    body.update(fields)
    return orjson.dumps({"type": "post", "post": {k: v for k, v in body.items() if v is not ...}})


# ---- round trip: the oracle ----------------------------------------------------------------


def test_round_trip_gives_back_exactly_the_expressible_events(
    org_events: OrgEvents, exported: tuple[Path, Any]
) -> None:
    events, _ = org_events
    path, plan = exported
    got, ctx = read(path)
    assert_chat_round_trip(got, ctx, mattermost_expressible(events), plan.bot_posts)


def test_expressible_keeps_every_expressible_generator_event(org_events: OrgEvents) -> None:
    """The oracle itself: nothing expressible is lost; reactions keep their own time."""
    events, _ = org_events
    expressible = mattermost_expressible(events)
    assert_chat_expressible(events, expressible)

    def who_when(e: dict[str, Any]) -> tuple[Any, ...]:
        return (e["event_type"], e["actor_id"], e["occurred_at"][:19], e.get("space_id"))

    want = Counter(who_when({**e, "space_id": f"example/{e['space_id']}"}) for e in events)
    have = Counter(who_when(e) for e in expressible)
    assert not (+Counter({k: v for k, v in want.items() if k[0] in CHAT_EXPRESSIBLE})) - have


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".zip"])
def test_gzip_and_zip_give_the_same_events(
    exported: tuple[Path, Any], tmp_path: Path, suffix: str
) -> None:
    path, plan = exported
    other = write_plan(plan, tmp_path / f"export{suffix}")
    assert read(other)[0] == read(path)[0]


def test_ids_are_stable(exported: tuple[Path, Any]) -> None:
    path, _ = exported
    assert read(path)[0] == read(path)[0]


def test_person_key_id_uses_usernames(exported: tuple[Path, Any]) -> None:
    path, plan = exported
    assert_person_key_id(mattermost.read, path, set(plan.users.values()))


def test_progress_adds_up_to_the_file_size(exported: tuple[Path, Any], tmp_path: Path) -> None:
    path, plan = exported
    gz = write_plan(plan, tmp_path / "export.jsonl.gz")
    for source in (path, gz):
        seen: list[int] = []
        list(mattermost.read(source, ImportContext(progress=seen.append)))
        assert sum(seen) == source.stat().st_size


# ---- privacy ----------------------------------------------------------------------------------


def test_no_message_text_leaves_the_reader(exported: tuple[Path, Any]) -> None:
    path, plan = exported
    got, ctx = read(path)
    assert_no_text(got, ctx, ["Vertraulich", *plan.texts])


def test_no_sample_text_leaves_the_reader() -> None:
    texts: list[str] = []
    for line in SAMPLE.read_bytes().splitlines():
        try:
            texts += texts_in(orjson.loads(line), "message")
        except orjson.JSONDecodeError:
            pass
    got, ctx = read(SAMPLE)
    assert len(texts) > 15
    assert_no_text(got, ctx, texts)


# ---- the hand-written sample ------------------------------------------------------------------


def _ev(eid: str, kind: str, when: str, actor: str, space: str, **more: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": eid,
        "event_type": kind,
        "occurred_at": when,
        "actor_id": actor,
        "platform": "mattermost",
        "space_id": space,
        **more,
    }


ALICE, BOB, CAROL, DAVE = "alice@example.org", "bob@example.org", "carol@example.org", "dave"
TS, EK = "werk/town-square", "werk/einkauf"
P1 = "mattermost:werk/town-square:1709543400000"
R1 = f"{P1}:1709629200000"
BOTPOST = "mattermost:werk/town-square:1709544600000"
DM = "mattermost:direct:1709551000000"
GM = "mattermost:direct:1709552000000"


def _post(cid: str, when: str, actor: str, space: str) -> dict[str, Any]:
    return _ev(cid, "post_created", when, actor, space, content_id=cid, root_content_id=cid)


def _react(cid: str, emoji: str, ms: int, when: str, actor: str, target: str | None,
           space: str, root: str) -> dict[str, Any]:  # fmt: skip
    more = {"target_actor_id": target} if target else {}
    return _ev(
        f"{cid}:reaction:{emoji}:{ms}",
        "reaction_added",
        when,
        actor,
        space,
        **more,
        content_id=cid,
        root_content_id=root,
    )


PLUS1, HEART, TADA, CHECK = "3ca81f8be160", "9d36db83d481", "aa3581492662", "cf3c0293b0c7"
SAMPLE_EVENTS = [
    # a post with mentions (@bob, @Carol.M. with a trailing dot; not @channel, @nobody, e-mail)
    _post(P1, "2024-03-04T09:10:00.000000Z", ALICE, TS),
    *[
        _ev(
            f"{P1}:mention:{i}",
            "mention",
            "2024-03-04T09:10:00.000000Z",
            ALICE,
            TS,
            target_actor_id=who,
            content_id=P1,
            root_content_id=P1,
        )
        for i, who in enumerate((BOB, CAROL))
    ],
    # reactions at their own time (the bot's reaction is skipped)
    _react(P1, PLUS1, 1709543460000, "2024-03-04T09:11:00.000000Z", BOB, ALICE, TS, P1),
    _react(P1, HEART, 1709543520000, "2024-03-04T09:12:00.000000Z", CAROL, ALICE, TS, P1),
    _react(P1, HEART, 1709543580000, "2024-03-04T09:13:00.000000Z", BOB, ALICE, TS, P1),
    # a reply on the next day with a mention and a reaction of its own
    _ev(
        R1,
        "reply_created",
        "2024-03-05T09:00:00.000000Z",
        BOB,
        TS,
        target_actor_id=ALICE,
        content_id=R1,
        parent_content_id=P1,
        root_content_id=P1,
    ),
    _ev(
        f"{R1}:mention:0",
        "mention",
        "2024-03-05T09:00:00.000000Z",
        BOB,
        TS,
        target_actor_id=ALICE,
        content_id=R1,
        root_content_id=P1,
    ),
    _react(R1, TADA, 1709629260000, "2024-03-05T09:01:00.000000Z", CAROL, BOB, TS, P1),
    # an edited post counts once
    _post("mattermost:werk/town-square:1709544000000", "2024-03-04T09:20:00.000000Z", BOB, TS),
    # a bot post: skipped; people's reaction and reply on it count, without a target
    _react(BOTPOST, CHECK, 1709544700000, "2024-03-04T09:31:40.000000Z", BOB, None, TS, BOTPOST),
    _ev(
        f"{BOTPOST}:1709544800000",
        "reply_created",
        "2024-03-04T09:33:20.000000Z",
        ALICE,
        TS,
        content_id=f"{BOTPOST}:1709544800000",
        parent_content_id=BOTPOST,
        root_content_id=BOTPOST,
    ),
    # joins and leaves (also "added by": the added person joins)
    _ev(
        "mattermost:werk/einkauf:1709545200000",
        "member_joined",
        "2024-03-04T09:40:00.000000Z",
        CAROL,
        EK,
    ),
    _ev(
        "mattermost:werk/einkauf:1709545800000",
        "member_joined",
        "2024-03-04T09:50:00.000000Z",
        BOB,
        EK,
    ),
    _ev(
        "mattermost:werk/einkauf:1709546000000",
        "member_left",
        "2024-03-04T09:53:20.000000Z",
        CAROL,
        EK,
    ),
    # a user without e-mail is keyed by the username
    _post("mattermost:werk/einkauf:1709548200000", "2024-03-04T10:30:00.000000Z", DAVE, EK),
    _ev(
        "mattermost:werk/einkauf:1709548200000:mention:0",
        "mention",
        "2024-03-04T10:30:00.000000Z",
        DAVE,
        EK,
        target_actor_id=ALICE,
        content_id="mattermost:werk/einkauf:1709548200000",
        root_content_id="mattermost:werk/einkauf:1709548200000",
    ),
    # a direct message with a reply and a reaction, space "direct"
    _post(DM, "2024-03-04T11:16:40.000000Z", ALICE, "direct"),
    _ev(
        f"{DM}:1709551060000",
        "reply_created",
        "2024-03-04T11:17:40.000000Z",
        BOB,
        "direct",
        target_actor_id=ALICE,
        content_id=f"{DM}:1709551060000",
        parent_content_id=DM,
        root_content_id=DM,
    ),
    _react(
        f"{DM}:1709551060000",
        PLUS1,
        1709551070000,
        "2024-03-04T11:17:50.000000Z",
        ALICE,
        BOB,
        "direct",
        DM,
    ),  # fmt: skip
    # a group message; two identical reactions in the same millisecond stay two
    _post(GM, "2024-03-04T11:33:20.000000Z", CAROL, "direct"),
    _react(GM, PLUS1, 1709552010000, "2024-03-04T11:33:30.000000Z", ALICE, CAROL, "direct", GM),
    {
        **_react(GM, PLUS1, 1709552010000, "2024-03-04T11:33:30.000000Z", BOB, CAROL, "direct", GM),
        "event_id": f"{GM}:reaction:{PLUS1}:1709552010000:1",
    },
]
SAMPLE_SKIPS = Counter(
    {
        "bot": 3,  # the bot's reaction, the bot post, a webhook post
        "unparseable": 3,  # a post without user, a broken line, the truncated last line
        "system": 2,  # a system reply (ephemeral), a header change
        "deleted": 2,  # a deleted post and its reply
        "unknown_type": 1,
    }
)


def test_sample_gives_exactly_the_documented_events() -> None:
    got, ctx = read(SAMPLE)
    assert got == SAMPLE_EVENTS
    assert ctx.stats.skipped == SAMPLE_SKIPS
    assert ctx.people == {}
    assert_valid(got)


def test_sample_gzipped_is_the_same(tmp_path: Path) -> None:
    gz = tmp_path / "export.jsonl.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    got, ctx = read(gz)
    assert got == SAMPLE_EVENTS and ctx.stats.skipped == SAMPLE_SKIPS


# ---- corrupt input ------------------------------------------------------------------------------


def test_not_a_bulk_export_is_a_format_error(tmp_path: Path) -> None:
    cases = {
        "empty.jsonl": b"",
        "text.jsonl": b"hello world\n",
        "post-first.jsonl": post() + b"\n",
        "binary.jsonl": bytes(range(256)) * 4,
        "array.jsonl": b"[1, 2]\n",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImportFormatError, match="not a Mattermost bulk export"):
            mattermost.read(path, ImportContext())
    with pytest.raises(ImportFormatError, match="no such file"):
        mattermost.read(tmp_path / "nowhere.jsonl", ImportContext())


def test_zip_without_one_jsonl_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.jsonl", VERSION)
        zf.writestr("b.jsonl", VERSION)
    with pytest.raises(ImportFormatError, match="2 .jsonl files"):
        mattermost.read(path, ImportContext())
    cut = tmp_path / "cut.zip"
    cut.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ImportFormatError, match="cannot be opened"):
        mattermost.read(cut, ImportContext())


def test_truncated_gzip_reads_what_it_can_then_fails_clearly(tmp_path: Path) -> None:
    data = VERSION + USER + b"\n".join(post(create_at=1709543400000 + i) for i in range(2000))
    packed = gzip.compress(data)
    path = tmp_path / "export.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    ctx = ImportContext()
    got: list[RawEvent] = []
    with pytest.raises(ImportFormatError, match="truncated"):
        for ev in mattermost.read(path, ctx):
            got.append(ev)
    assert 0 < len(got) < 2000


def test_bad_lines_are_skipped_never_a_crash(tmp_path: Path) -> None:
    lines = [
        VERSION.strip(),
        USER.strip(),
        post(),  # good
        post(create_at=1709543400001, user=...),
        post(create_at=1709543400002, team=...),
        post(create_at="1709543400003"),
        post(create_at=True),
        post(create_at=-5),
        post(create_at=1709543400004, type=["x"]),
        post(create_at=1709543400005, replies="many"),
        post(
            create_at=1709543400006,
            replies=[{"user": "anna"}, 7, {"user": "anna", "create_at": 1709543400010}],
            reactions=[{"user": "anna"}, "x", {"emoji_name": "+1", "create_at": 1709543400011}],
        ),
        b'{"type":"post","post":"not an object"}',
        b'{"type":"direct_post","direct_post":{"user":"anna","create_at":1709543400020}}',
        b'{"type":"user","user":{"email":"no-username@example.org"}}',
        b'{"type":7}',
        b'["type","post"]',
        b"null",
        b'{"type":"post","post":{"team":"t","channel":"c","user":"anna","create_at":17',
        b"",
        b"   ",
    ]
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join(lines))
    got, ctx = read(path)
    assert Counter(e["event_type"] for e in got) == Counter({"post_created": 2, "reply_created": 1})
    # bad posts count their replies too (post with replies="many": 1)
    assert ctx.stats.skipped == Counter({"unparseable": 19})
    assert_valid(got)


def test_oversized_line_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mattermost, "MAX_LINE_BYTES", 200)
    path = tmp_path / "export.jsonl"
    huge = post(message="x" * 1000, create_at=1709543400001)
    path.write_bytes(VERSION + USER + huge + b"\n" + post() + b"\n")
    got, ctx = read(path)
    assert len(got) == 1 and ctx.stats.skipped == Counter({"too_large": 1})


# ---- mentions and arbitrary input ------------------------------------------------------------


def test_at_mentions() -> None:
    known = {"anna", "jonas", "carol.m", "x_y"}
    text = "@Anna, (@jonas) @carol.m. @x_y_ @all @here @channel @ghost a@anna.org @@jonas"
    assert mentions.at_mentions(text, known) == ["anna", "jonas", "carol.m", "x_y"]
    assert mentions.at_mentions("kein Name", known) == []
    assert mentions.at_mentions(None, known) == [] and mentions.at_mentions(3, known) == []
    assert mentions.at_mentions("@all", {"all"}) == []  # never a person


USERNAME = st.sampled_from(["anna", "bob", "bot"]) | JSON
MS = st.integers(min_value=-5, max_value=10**16) | JSON
REACTION = st.fixed_dictionaries(
    {},
    optional={"user": USERNAME, "emoji_name": st.sampled_from(["+1", "x"]) | JSON, "create_at": MS},
)
REPLY = st.fixed_dictionaries(
    {},
    optional={
        "user": USERNAME,
        "message": st.sampled_from(["@anna @bob", "hi"]) | JSON,
        "create_at": MS,
        "type": st.sampled_from(["", "system_x"]) | JSON,
        "delete_at": MS,
        "props": st.fixed_dictionaries({}, optional={"from_bot": JSON}) | JSON,
        "reactions": st.lists(REACTION | JSON, max_size=3) | JSON,
    },
)
POST = st.fixed_dictionaries(
    {},
    optional={
        "team": st.sampled_from(["t"]) | JSON,
        "channel": st.sampled_from(["c"]) | JSON,
        "channel_members": st.lists(USERNAME, max_size=3) | JSON,
        "user": USERNAME,
        "message": st.sampled_from(["@anna @bob", "hi"]) | JSON,
        "create_at": MS,
        "type": st.sampled_from(["", "system_join_channel", "system_add_to_channel", "x"]) | JSON,
        "props": st.fixed_dictionaries({}, optional={"from_bot": JSON, "addedUsername": USERNAME})
        | JSON,
        "delete_at": MS,
        "replies": st.lists(REPLY | JSON, max_size=3) | JSON,
        "reactions": st.lists(REACTION | JSON, max_size=3) | JSON,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(POST | JSON, st.booleans()), max_size=5))
def test_arbitrary_posts_never_crash(posts: list[tuple[Any, bool]]) -> None:
    """Each post gives events or a counted skip (never a crash, never silent loss)."""
    ctx = ImportContext()
    users = mattermost._Users(keys={"anna": "anna@example.org", "bob": "bob"}, bots={"bot"})
    reader = mattermost._PostReader(users, ctx)
    now = int(time.time() * 1000) + 10**15
    for body, direct in posts:
        before = ctx.stats.skipped.total()
        out = list(reader.post(body, direct))
        assert out or ctx.stats.skipped.total() > before
        for ev in out:
            validate_event(ev, now, 0)
