"""Viva Engage export reader: round trip of a synthetic organisation (the oracle), a hand-written
sample after Microsoft's documentation, damaged exports, privacy and progress."""

from __future__ import annotations

import shutil
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.sources.connectors import viva_engage
from pipeline.sources.connectors.base import ImportContext, ImportFormatError, RawEvent
from tests.connectors.common import (
    OrgEvents,
    assert_not_the_format,
    assert_private,
    assert_same_events,
    assert_valid,
    org_spec,
    organisation,
    read_with,
    strip_ids,
)
from tests.connectors.export_viva_engage import (
    SECRET,
    viva_engage_expressible,
    write_viva_engage_export,
)

SAMPLE = Path(__file__).parent / "samples" / "viva_engage"
P = "viva-engage:"


def read(path: Path) -> tuple[list[RawEvent], ImportContext]:
    return read_with(viva_engage.read, path)


@pytest.fixture(scope="module")
def org_events() -> OrgEvents:
    return organisation(org_spec(7, "viva-engage"))


@pytest.fixture(scope="module")
def export(org_events: OrgEvents, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_viva_engage_export(*org_events, tmp_path_factory.mktemp("ve") / "export.zip")


# --------------------------------------------------------------------------------------------
# round trip


def test_round_trip_gives_exactly_what_the_export_expresses(
    org_events: OrgEvents, export: Path
) -> None:
    events, people = org_events
    got, ctx = read(export)
    expected = viva_engage_expressible(events)
    kinds = Counter(e["event_type"] for e in expected)
    assert {"post_created", "reply_created", "mention", "member_joined", "member_left"} <= set(
        kinds
    )
    assert_same_events(got, expected)
    assert not ctx.stats.skipped
    assert_valid(got, now_ms=4_000_000_000_000)
    # units come from the export itself (Users.csv department)
    assert {p: a["unit"] for p, a in ctx.people.items()} == people
    assert_private(got, SECRET)


def test_self_mentions_are_kept(tmp_path: Path) -> None:
    """A person mentioning themself is recorded as the platform recorded it (the analyst
    views leave self-ties out)."""
    events, people = organisation(org_spec(7, "viva-engage"))
    mention = next(e for e in events if e["event_type"] == "mention")
    me = mention["actor_id"]
    mine = [{**mention, "target_actor_id": me}]
    got, _ = read(write_viva_engage_export(mine, people, tmp_path / "export.zip"))
    assert_same_events(got, viva_engage_expressible(mine))
    assert [(e["event_type"], e.get("target_actor_id")) for e in got] == [
        ("post_created", None),
        ("mention", me),
    ]


def test_unzipped_directory_reads_like_the_zip(export: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(export) as zf:
        zf.extractall(tmp_path / "dir")
    assert read(tmp_path / "dir")[0] == read(export)[0]


def test_progress_reports_source_bytes(export: Path) -> None:
    ctx = ImportContext()
    seen: list[int] = []
    ctx.progress = seen.append
    list(viva_engage.read(export, ctx))
    assert all(n >= 0 for n in seen)
    with zipfile.ZipFile(export) as zf:
        members = sum(zf.getinfo(n).compress_size for n in ("Messages.csv", "Users.csv"))
    assert members - 2 <= sum(seen) <= export.stat().st_size


# --------------------------------------------------------------------------------------------
# the documented format, by hand


def _ev(kind: str, at: str, actor: str, **fields: str) -> dict[str, Any]:
    e = {"event_type": kind, "occurred_at": at, "actor_id": actor, "platform": "viva-engage"}
    e.update(fields)
    return e


ANNA, BEN, DORA, GAST = (
    "anna.alt@example.com",
    "ben.bau@example.com",
    "dora.diaz@example.com",
    "gast@partner.example",
)
EMIL = "viva-engage:1005"  # Users.csv has no e-mail for him
NORD, RUNDE = "Vertrieb Nord", "IT-Runde"
SAMPLE_EVENTS = [
    _ev("member_joined", "2024-02-01T08:00:00.000000Z", ANNA),
    _ev("member_joined", "2024-02-15T09:30:00.000000Z", BEN),
    _ev("member_left", "2024-03-20T17:00:00.000000Z", "cem.cakir@example.com"),  # deleted
    _ev("member_left", "2024-03-10T12:00:00.000000Z", DORA),  # suspended (soft_delete)
    _ev("member_joined", "2024-01-10T10:00:00.000000Z", EMIL),
    # the reply comes before its parent in the file; it still finds the parent's author
    _ev(
        "reply_created",
        "2024-03-01T10:15:00.000000Z",
        BEN,
        space_id=NORD,
        target_actor_id=ANNA,
        content_id=P + "2003",
        parent_content_id=P + "2001",
        root_content_id=P + "2001",
    ),
    _ev(
        "mention",
        "2024-03-01T10:15:00.000000Z",
        BEN,
        space_id=NORD,
        target_actor_id=ANNA,
        content_id=P + "2003",
        root_content_id=P + "2001",
    ),
    _ev(
        "post_created",
        "2024-03-01T10:12:13.000000Z",
        ANNA,
        space_id=NORD,
        content_id=P + "2001",
        root_content_id=P + "2001",
    ),
    _ev(  # [[user:1002]] twice: one mention
        "mention",
        "2024-03-01T10:12:13.000000Z",
        ANNA,
        space_id=NORD,
        target_actor_id=BEN,
        content_id=P + "2001",
        root_content_id=P + "2001",
    ),
    _ev(
        "mention",
        "2024-03-01T10:12:13.000000Z",
        ANNA,
        space_id=NORD,
        target_actor_id=EMIL,
        content_id=P + "2001",
        root_content_id=P + "2001",
    ),
    _ev(  # group_name empty: the name from Groups.csv
        "post_created",
        "2024-03-01T11:00:00.000000Z",
        BEN,
        space_id=RUNDE,
        content_id=P + "2002",
        root_content_id=P + "2002",
    ),
    _ev(  # a self-mention is kept as recorded (the analyst views leave self-ties out)
        "mention",
        "2024-03-01T11:00:00.000000Z",
        BEN,
        space_id=RUNDE,
        target_actor_id=BEN,
        content_id=P + "2002",
        root_content_id=P + "2002",
    ),
    _ev(  # private conversation: kept, no space
        "post_created",
        "2024-03-02T09:00:00.000000Z",
        EMIL,
        content_id=P + "2009",
        root_content_id=P + "2009",
    ),
    _ev(
        "reply_created",
        "2024-03-02T09:05:00.000000Z",
        DORA,
        target_actor_id=EMIL,
        content_id=P + "2010",
        parent_content_id=P + "2009",
        root_content_id=P + "2009",
    ),
    _ev(  # the parent is older than the export: no target
        "reply_created",
        "2024-03-02T10:00:00.000000Z",
        BEN,
        space_id=RUNDE,
        content_id=P + "2011",
        parent_content_id=P + "9999",
        root_content_id=P + "9998",
    ),
    _ev(  # a guest known only from Messages.csv (sender_email); fractional seconds
        "reply_created",
        "2024-03-02T11:00:00.250000Z",
        GAST,
        space_id=NORD,
        target_actor_id=BEN,
        content_id=P + "2012",
        parent_content_id=P + "2003",
        root_content_id=P + "2001",
    ),
    _ev(  # a mentioned user the export does not know
        "mention",
        "2024-03-02T11:00:00.250000Z",
        GAST,
        space_id=NORD,
        target_actor_id="viva-engage:4242",
        content_id=P + "2012",
        root_content_id=P + "2001",
    ),
    _ev(  # a reply to a bot's message: no person to target
        "reply_created",
        "2024-03-02T12:00:00.000000Z",
        BEN,
        space_id=RUNDE,
        content_id=P + "2013",
        parent_content_id=P + "2005",
        root_content_id=P + "2005",
    ),
]
# Users.csv: a short row, an unreadable joined_at; Messages.csv: a short row, a bad date
SAMPLE_SKIPS = {"unparseable": 4, "deleted": 1, "bot": 1, "system": 1, "duplicate": 1}


def test_sample_gives_the_documented_mapping() -> None:
    got, ctx = read(SAMPLE)
    assert strip_ids(got) == SAMPLE_EVENTS
    assert dict(ctx.stats.skipped) == SAMPLE_SKIPS
    # every message row is one post/reply or one skip (mentions come on top)
    rows = 14
    made = sum(e["event_type"] in ("post_created", "reply_created") for e in got)
    assert made + sum(ctx.stats.skipped.values()) - 2 == rows  # 2 skips are Users.csv rows
    assert ctx.people[ANNA] == {"unit": "Vertrieb", "location": "Hamburg"}
    assert ctx.people[EMIL] == {"unit": "Controlling", "location": "Stuttgart"}
    assert ctx.people["frieda.fuchs@example.com"] == {"unit": "Personal"}
    assert [e["event_id"] for e in got[5:7]] == [P + "2003", P + "2003:mention:1001"]
    assert_private(got, SECRET)


def test_sample_zipped_in_a_network_folder(tmp_path: Path) -> None:
    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted((SAMPLE / "network").iterdir()):
            zf.write(f, f"export-1709251200/{f.name}")
    got, ctx = read(z)
    assert strip_ids(got) == SAMPLE_EVENTS
    assert dict(ctx.stats.skipped) == SAMPLE_SKIPS


def test_only_messages_csv_is_required(tmp_path: Path) -> None:
    shutil.copy(SAMPLE / "network" / "Messages.csv", tmp_path / "messages.CSV")
    got, ctx = read(tmp_path)
    # without Users.csv: keys from sender_email (Emil has none), no units, no membership
    assert {e["actor_id"] for e in got} == {ANNA, BEN, DORA, GAST, "viva-engage:1005"}
    assert not any(e["event_type"].startswith("member_") for e in got)
    assert ctx.people == {}
    # without Groups.csv a nameless group is its id
    assert next(e for e in got if e["content_id"] == P + "2002")["space_id"] == "group:502"


# --------------------------------------------------------------------------------------------
# damaged exports


def test_truncated_zip_is_a_format_error(export: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.zip"
    cut.write_bytes(export.read_bytes()[: export.stat().st_size // 2])
    with pytest.raises(ImportFormatError, match="not a readable ZIP"):
        read(cut)


def test_not_a_zip_and_missing_source(tmp_path: Path) -> None:
    assert_not_the_format(read, tmp_path / "export.zip", f"{SECRET} this is no zip\n", SECRET)


def test_zip_without_messages_csv(tmp_path: Path) -> None:
    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(SAMPLE / "network" / "Users.csv", "Users.csv")
    with pytest.raises(ImportFormatError, match="no Messages.csv"):
        read(z)


def test_messages_csv_without_required_column(tmp_path: Path) -> None:
    (tmp_path / "Messages.csv").write_text("id,body\n1,hello\n")
    with pytest.raises(ImportFormatError, match="lacks column.*sender_id.*created_at"):
        read(tmp_path)


def _damage(src: Path, dst: Path, member: str) -> None:
    """Copy the ZIP, flipping bytes inside ``member``'s compressed data (bad CRC / stream)."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = zf.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + info.compress_size // 3, start + info.compress_size // 3 + 64):
        data[i] ^= 0x5A
    dst.write_bytes(bytes(data))


def test_damaged_messages_member_fails_before_any_message_event(
    export: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.zip"
    _damage(export, bad, "Messages.csv")
    ctx = ImportContext()
    out: list[RawEvent] = []
    with pytest.raises(ImportFormatError, match="Messages.csv is damaged"):
        out.extend(viva_engage.read(bad, ctx))
    assert out == []


def test_damaged_users_member_is_counted_and_messages_still_read(
    export: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.zip"
    _damage(export, bad, "Users.csv")
    got, ctx = read(bad)
    assert ctx.stats.skipped["damaged_file"] == 1
    assert sum(e["event_type"] == "post_created" for e in got) == sum(
        e["event_type"] == "post_created" for e in read(export)[0]
    )


def test_bad_rows_are_skipped_not_fatal(tmp_path: Path) -> None:
    header = ",".join(
        ("id", "replied_to_id", "thread_id", "group_name", "sender_id", "body", "created_at")
    )
    rows = [
        "1,,1,G,10,ok,2024-03-01 10:00:00 UTC",
        "2,,2,G,10,too,few",  # wrong column count
        '3,,3,G,10,"unterminated quote,2024-03-01 10:00:00 UTC',  # swallows the rest
    ]
    (tmp_path / "Messages.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    got, ctx = read(tmp_path)
    assert [e["content_id"] for e in got] == [P + "1"]
    assert ctx.stats.skipped == Counter({"unparseable": 2})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01 10:12:13 UTC", "2024-03-01T10:12:13.000000Z"),
        ("2024-03-01T10:12:13Z", "2024-03-01T10:12:13.000000Z"),
        ("2024-03-01T11:12:13.5+01:00", "2024-03-01T10:12:13.500000Z"),
        ("2024-03-01 10:12:13 +0000", "2024-03-01T10:12:13.000000Z"),
        ("2024-03-01 10:12:13", "2024-03-01T10:12:13.000000Z"),
        ("01.03.2024 10:12", None),
        ("", None),
    ],
)
def test_time_forms(value: str, expected: str | None) -> None:
    ts = viva_engage._parse_time(value)
    assert (None if ts is None else viva_engage.iso(ts)) == expected
