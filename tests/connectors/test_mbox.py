"""mbox reader: round trip of a synthetic organisation (the oracle), the same archive through the
real Perceval mbox backend, a hand-written archive, damaged archives, bounded memory, privacy."""

from __future__ import annotations

import bz2
import gzip
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.dev.generator import Organisation
from pipeline.sources.connectors import mbox, perceval
from pipeline.sources.connectors.base import ImportContext, ImportFormatError, RawEvent
from tests.connectors import common
from tests.connectors.common import (
    assert_not_the_format,
    assert_same_events,
    assert_valid,
    org_spec,
    strip_ids,
)
from tests.connectors.export_mbox import SECRET, mbox_expressible, write_mbox

SAMPLE = Path(__file__).parent / "samples" / "mbox" / "dev-list.mbox"
PERCEVAL = Path(sys.executable).parent / "perceval"
SPEC = org_spec(7, "mail", churn=False)


def read(path: Path) -> tuple[list[RawEvent], ImportContext]:
    return common.read_with(mbox.read, path)


def assert_private(events: list[RawEvent], raw: str) -> None:
    """No subject/body text, no Message-ID host; addresses only in actor/target."""
    common.assert_private(events, SECRET, raw)
    for e in events:
        blob = orjson.dumps(e).decode()
        assert "example.org>" not in blob and "host-" not in blob


def run_perceval(archive_dir: Path, out: Path) -> Path:
    """The real ``perceval mbox URI DIR --json-line`` over a directory of mbox files."""
    subprocess.run(
        [str(PERCEVAL), "mbox", "https://lists.example.org/dev", str(archive_dir), "--json-line"]
        + ["-o", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    events = list(Organisation(SPEC).events())
    folder = tmp_path_factory.mktemp("mbox") / "archive"
    folder.mkdir()
    return events, write_mbox(events, folder / "list.mbox")


# --------------------------------------------------------------------------------------------
# round trips


def test_round_trip_gives_exactly_what_the_archive_expresses(
    generated: tuple[list[dict[str, Any]], Path],
) -> None:
    events, path = generated
    got, ctx = read(path)
    expected = mbox_expressible(events)
    assert {"post_created", "reply_created", "mention"} == {e["event_type"] for e in expected}
    assert_same_events(got, expected)
    assert not ctx.stats.skipped
    assert_valid(got, now_ms=4_000_000_000_000)
    assert_private(got, path.read_text())


def test_real_perceval_items_give_the_same_events(
    generated: tuple[list[dict[str, Any]], Path], tmp_path: Path
) -> None:
    _, path = generated
    items = run_perceval(path.parent, tmp_path / "items.jsonl")
    first = orjson.loads(items.read_bytes().split(b"\n", 1)[0])
    assert first["backend_name"] == "MBox" and "Message-ID" in first["data"]
    ctx = ImportContext()
    assert list(perceval.read(items, ctx)) == read(path)[0]
    assert not ctx.stats.skipped


def test_sample_through_real_perceval_gives_the_same_events(tmp_path: Path) -> None:
    shutil.copy(SAMPLE, tmp_path / "dev-list.mbox")
    items = run_perceval(tmp_path, tmp_path / "items.jsonl")
    ctx = ImportContext()
    assert list(perceval.read(items, ctx)) == read(SAMPLE)[0]
    # Perceval itself drops mails without Message-ID or a valid Date; the rest is ours
    assert dict(ctx.stats.skipped) == {"bot": 2, "duplicate": 1}


# --------------------------------------------------------------------------------------------
# the hand-written archive


def _ev(kind: str, at: str, actor: str, space: str, cid: str, **fields: str) -> dict[str, Any]:
    e = {"event_type": kind, "occurred_at": at, "actor_id": actor, "platform": "mail"}
    e.update(space_id=space, content_id=mbox.content_id(cid), **fields)
    return e


DEV = "dev.lists.example.org"
M1, M2, M7 = (
    "m1.1709283600@host-a.example.org",
    "m2.1709289000@host-b.example.org",
    "m7@host-d.example.org",
)
R1 = mbox.content_id(M1)
SAMPLE_EVENTS = [
    # Date +0100 -> UTC; From mixed case -> lower; Cc "Carol, C." with a comma in the name
    _ev(
        "post_created",
        "2024-03-01T09:00:00.000000Z",
        "alice@example.org",
        DEV,
        M1,
        root_content_id=R1,
    ),
    _ev(
        "mention",
        "2024-03-01T09:00:00.000000Z",
        "alice@example.org",
        DEV,
        M1,
        target_actor_id="bob@example.org",
        root_content_id=R1,
    ),
    _ev(
        "mention",
        "2024-03-01T09:00:00.000000Z",
        "alice@example.org",
        DEV,
        M1,
        target_actor_id="carol@example.org",
        root_content_id=R1,
    ),
    # Cc alice (the parent's author, already the reply's target), bob himself: no mention
    _ev(
        "reply_created",
        "2024-03-01T10:30:00.000000Z",
        "bob@example.org",
        DEV,
        M2,
        target_actor_id="alice@example.org",
        parent_content_id=R1,
        root_content_id=R1,
    ),
    _ev(
        "mention",
        "2024-03-01T10:30:00.000000Z",
        "bob@example.org",
        DEV,
        M2,
        target_actor_id="dave@example.org",
        root_content_id=R1,
    ),
    # "Precedence: list" and "Auto-Submitted: no" are people's mail
    _ev(
        "post_created",
        "2024-03-01T12:00:00.000000Z",
        "carol@example.org",
        DEV,
        "m6@host-c.example.org",
        root_content_id=mbox.content_id("m6@host-c.example.org"),
    ),
    # References only (folded): parent = the last, root = the parent's root; To bob = target
    _ev(
        "reply_created",
        "2024-03-01T13:00:00.000000Z",
        "dave@example.org",
        DEV,
        M7,
        target_actor_id="bob@example.org",
        parent_content_id=mbox.content_id(M2),
        root_content_id=R1,
    ),
    # the parent is not in the archive: no target, root from References; no list: "mbox"
    _ev(
        "reply_created",
        "2024-03-01T14:00:00.000000Z",
        "dave@example.org",
        "mbox",
        "m8@host-d.example.org",
        parent_content_id=mbox.content_id("gone@host-x.example.org"),
        root_content_id=mbox.content_id("gone-root@host-x.example.org"),
    ),
    _ev(
        "mention",
        "2024-03-01T14:00:00.000000Z",
        "dave@example.org",
        "mbox",
        "m8@host-d.example.org",
        target_actor_id="erin@example.org",
        root_content_id=mbox.content_id("gone-root@host-x.example.org"),
    ),
]
# unparseable: text before the first message, no Date, a bad Date, no headers at all, junk
# behind a "From " line, the truncated last message (no Date); bot: auto-reply, bulk
SAMPLE_SKIPS = {"unparseable": 6, "bot": 2, "duplicate": 1}


def test_sample_gives_the_documented_mapping() -> None:
    got, ctx = read(SAMPLE)
    assert strip_ids(got) == SAMPLE_EVENTS
    assert dict(ctx.stats.skipped) == SAMPLE_SKIPS
    # 14 blocks in the file (incl. the leading text): each one event group or one skip
    assert sum(e["event_type"] != "mention" for e in got) + sum(SAMPLE_SKIPS.values()) == 14
    assert_private(got, SAMPLE.read_text())
    assert got[1]["event_id"] == R1 + ":to:" + mbox._digest("bob@example.org")[:16]


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress], ids=["gzip", "bzip2"])
def test_compressed_archives_and_directories(tmp_path: Path, compress: Any) -> None:
    (tmp_path / "2024").mkdir()
    (tmp_path / "2024" / "03.mbox.gz").write_bytes(compress(SAMPLE.read_bytes()))
    got, ctx = read(tmp_path)
    assert strip_ids(got) == SAMPLE_EVENTS
    assert dict(ctx.stats.skipped) == SAMPLE_SKIPS


def test_progress_sums_to_the_file_size(generated: tuple[list[dict[str, Any]], Path]) -> None:
    _, path = generated
    ctx = ImportContext()
    seen: list[int] = []
    ctx.progress = seen.append
    list(mbox.read(path, ctx))
    assert sum(seen) == path.stat().st_size and all(n >= 0 for n in seen)


# --------------------------------------------------------------------------------------------
# damaged archives


def test_not_an_mbox(tmp_path: Path) -> None:
    text = f"{SECRET} just text\nno separator\n"
    assert_not_the_format(read, tmp_path / "notes.txt", text, SECRET, "no 'From ' separator")


def test_empty_file_has_no_messages(tmp_path: Path) -> None:
    (tmp_path / "empty.mbox").write_bytes(b"")
    assert read(tmp_path / "empty.mbox") == ([], ImportContext())


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    data = gzip.compress(SAMPLE.read_bytes())
    (tmp_path / "cut.mbox.gz").write_bytes(data[: len(data) * 2 // 3])
    got, ctx = read(tmp_path / "cut.mbox.gz")
    assert 0 < len(got) < len(SAMPLE_EVENTS)
    assert strip_ids(got) == SAMPLE_EVENTS[: len(got)]
    assert ctx.stats.skipped["truncated"] == 1


def test_damaged_gzip_from_the_start_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    with pytest.raises(ImportFormatError, match="damaged or truncated"):
        read(tmp_path / "bad.gz")


# --------------------------------------------------------------------------------------------
# threading memory, headers


def _headers(
    mid: str, frm: str, date: str = "Fri, 01 Mar 2024 10:00:00 +0000", **more: str
) -> dict[str, str]:
    h = {"message-id": f"<{mid}>", "from": frm, "date": date}
    h.update({k.replace("_", "-"): v for k, v in more.items()})
    return h


def test_memory_is_bounded_oldest_parents_are_forgotten() -> None:
    threads, ctx = mbox.MailThreads(capacity=2), ImportContext()
    for i in range(3):
        threads.events(_headers(f"p{i}@x", f"a{i}@example.org"), ctx)
    late = threads.events(_headers("r0@x", "b@example.org", in_reply_to="<p0@x>"), ctx)
    kept = threads.events(_headers("r2@x", "b@example.org", in_reply_to="<p2@x>"), ctx)
    assert "target_actor_id" not in late[0]  # p0 was evicted
    assert kept[0]["target_actor_id"] == "a2@example.org"
    assert len(threads._seen) == 2
    # a duplicate outside the window is not recognised (documented)
    assert threads.events(_headers("p0@x", "a0@example.org"), ctx)
    assert not ctx.stats.skipped


def test_list_id_that_looks_like_an_address_is_hashed() -> None:
    (e,) = mbox.MailThreads().events(
        _headers("x@y", "a@example.org", list_id="<team@lists.example.org>"), ImportContext()
    )
    assert e["space_id"].startswith("mbox:") and "@" not in e["space_id"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"auto_submitted": "auto-generated"}, "bot"),
        ({"precedence": "junk"}, "bot"),
        ({"from": "undisclosed-recipients:;"}, "unparseable"),
        ({"date": "32 Feb 2024"}, "unparseable"),
    ],
)
def test_skip_reasons(headers: dict[str, str], reason: str) -> None:
    ctx = ImportContext()
    h = _headers("s@x", "a@example.org")
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    assert mbox.MailThreads().events(h, ctx) == []
    assert ctx.stats.skipped == Counter({reason: 1})
