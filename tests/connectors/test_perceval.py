"""Perceval item reader: hand-made items per backend (slack, mattermost, discourse) that follow
the backends' source, their envelopes checked against the real backends' ``metadata()``,
damaged input, Perceval's indented output, privacy. (The mbox backend's real items are tested
in test_mbox.py: the same events as the mbox reader.)"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from perceval.backends.core.discourse import Discourse
from perceval.backends.core.mattermost import Mattermost
from perceval.backends.core.slack import Slack

from pipeline.sources.connectors import perceval
from pipeline.sources.connectors.base import ImportContext, RawEvent
from tests.connectors import common

SAMPLES = Path(__file__).parent / "samples" / "perceval"
SECRET = "GEHEIM"
ANNA, BEN = "anna@example.org", "ben@example.org"


def read(path: Path) -> tuple[list[RawEvent], ImportContext]:
    return common.read_with(perceval.read, path)


def brief(events: list[RawEvent]) -> list[tuple[Any, ...]]:
    """(type, actor, target, content, parent, root, space) per event."""
    return [
        (
            e["event_type"],
            e["actor_id"],
            e.get("target_actor_id"),
            e.get("content_id"),
            e.get("parent_content_id"),
            e.get("root_content_id"),
            e.get("space_id"),
        )
        for e in events
    ]


def assert_private(events: list[RawEvent], raw: str) -> None:
    """No text, addresses only in actor/target; contract-valid events."""
    common.assert_private(events, SECRET, raw)
    common.assert_valid(events, now_ms=4_000_000_000_000)


@pytest.mark.parametrize("name", ["slack", "mattermost", "discourse"])
def test_samples_are_what_the_backends_emit(name: str) -> None:
    """Envelope fields recomputed by the real backend classes from each item's data."""
    for line in (SAMPLES / f"{name}.jsonl").read_bytes().splitlines():
        item = orjson.loads(line)
        data = item["data"]
        if name == "slack":
            backend: Any = Slack(data["channel_info"]["id"], "token")
        elif name == "mattermost":
            backend = Mattermost("https://mm.example.org", data["channel_data"]["id"], "token")
        else:
            backend = Discourse("https://discourse.example.org")
        expected = backend.metadata(data)
        for key in ("backend_name", "category", "origin", "uuid", "updated_on", "search_fields"):
            assert item[key] == expected[key], key


def test_slack_items() -> None:
    got, ctx = read(SAMPLES / "slack.jsonl")
    c = "slack:C0TEILHAB:"
    root = c + "1709290000.000100"
    assert brief(got) == [
        # a person's reaction to a bot's message: kept, nobody to target
        ("reaction_added", ANNA, None, c + "1709290800.000900", None, c + "1709290800.000900",
         "allgemein"),
        # broadcast thread reply: the root's author, learnt from the root item further down
        ("reply_created", "U0003", ANNA, c + "1709290700.000800", root, root, "allgemein"),
        ("mention", "U0003", BEN, c + "1709290700.000800", None, root, "allgemein"),
        ("member_joined", "U0003", None, None, None, None, "allgemein"),
        ("post_created", BEN, None, c + "1709290500.000600", None, c + "1709290500.000600",
         "allgemein"),
        ("post_created", ANNA, None, root, None, root, "allgemein"),
        ("mention", ANNA, BEN, root, None, root, "allgemein"),  # <@U0002> twice: once
        ("mention", ANNA, ANNA, root, None, root, "allgemein"),  # as the Slack export reader
        ("reaction_added", BEN, ANNA, root, None, root, "allgemein"),
        ("reaction_added", "U0003", ANNA, root, None, root, "allgemein"),
    ]  # fmt: skip
    assert got[1]["occurred_at"] == "2024-03-01T10:58:20.000800Z"  # ts to the microsecond
    assert dict(ctx.stats.skipped) == {
        "bot": 2,  # bot_message, Slackbot
        "system": 1,  # channel_topic
        "deleted": 1,  # tombstone
        "reaction_users_unknown": 1,  # count 3, users listed 2
    }
    assert_private(got, (SAMPLES / "slack.jsonl").read_text())


def test_mattermost_items() -> None:
    got, ctx = read(SAMPLES / "mattermost.jsonl")
    m = "mattermost:"
    p1, p2, p9 = (m + "p1p1p1p1p1p1p1p1p1p1p1p1p1", m + "p2p2p2p2p2p2p2p2p2p2p2p2p2",
                  m + "p9p9p9p9p9p9p9p9p9p9p9p9p9")  # fmt: skip
    town = "town-square"
    assert brief(got) == [
        ("post_created", ANNA, None, p9, None, p9, "direct"),
        ("mention", ANNA, BEN, p9, None, p9, "direct"),
        ("member_joined", "dora", None, None, None, None, town),  # added by anna
        ("member_joined", "cem", None, None, None, None, town),  # no e-mail: the username
        ("reply_created", BEN, ANNA, p2, p1, p1, town),
        ("mention", BEN, ANNA, p2, None, p1, town),  # @channel is nobody
        ("reaction_added", ANNA, BEN, p2, None, p1, town),
        ("post_created", ANNA, None, p1, None, p1, town),
        ("mention", ANNA, BEN, p1, None, p1, town),  # @ghost. unknown, cem@... an address
        ("reaction_added", BEN, ANNA, p1, None, p1, town),
    ]  # fmt: skip
    assert got[6]["occurred_at"] == "2024-03-01T10:46:42.500000Z"  # the reaction's own time
    assert dict(ctx.stats.skipped) == {
        "bot": 3,  # a bot user's post, a webhook post, a bot's reaction
        "system": 1,  # header change
        "deleted": 1,
    }
    assert_private(got, (SAMPLES / "mattermost.jsonl").read_text())


def test_discourse_items() -> None:
    got, ctx = read(SAMPLES / "discourse.jsonl")
    site = perceval._site("https://discourse.example.org")
    d, who = f"discourse:{site}:", f"discourse:{site}:"
    anna, ben, cem, dora = (who + n for n in ("anna", "ben", "cem", "dora"))
    cat = "discourse-category-7"
    assert brief(got) == [
        ("post_created", anna, None, d + "101", None, d + "101", cat),
        ("mention", anna, ben, d + "101", None, d + "101", cat),
        ("reply_created", ben, anna, d + "102", d + "101", d + "101", cat),  # to the topic
        ("mention", ben, ben, d + "102", None, d + "101", cat),  # of himself: kept, as Slack's
        ("reply_created", cem, ben, d + "103", d + "102", d + "101", cat),
        ("mention", cem, anna, d + "103", None, d + "101", cat),  # /users/Anna, old form
        ("reply_created", anna, cem, d + "106", d + "105", d + "101", cat),
        # the answered post is not in the item: reply_to_user still names its author
        ("reply_created", ben, dora, d + "107", None, d + "101", cat),
        ("post_created", anna, None, d + "201", None, d + "201", None),  # private message
        ("reply_created", ben, anna, d + "202", d + "201", d + "201", None),
    ]
    assert dict(ctx.stats.skipped) == {"system": 1, "deleted": 1}
    assert_private(got, (SAMPLES / "discourse.jsonl").read_text())


def test_several_backends_in_one_directory(tmp_path: Path) -> None:
    for name in ("slack", "mattermost", "discourse"):
        (tmp_path / f"{name}.jsonl").write_bytes((SAMPLES / f"{name}.jsonl").read_bytes())
    got, ctx = read(tmp_path)
    separately = [read(SAMPLES / f"{n}.jsonl") for n in ("discourse", "mattermost", "slack")]
    assert got == [e for events, _ in separately for e in events]  # files sorted by name
    assert ctx.stats.skipped == sum((c.stats.skipped for _, c in separately), Counter())


def test_indented_output_reads_like_json_lines(tmp_path: Path) -> None:
    """Perceval without --json-line writes json.dumps(item, indent=4) per item."""
    lines = (SAMPLES / "mattermost.jsonl").read_bytes().splitlines()
    pretty = b"\n".join(
        orjson.dumps(orjson.loads(line), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        for line in lines
    )
    (tmp_path / "items.json").write_bytes(pretty + b"\n")
    assert read(tmp_path / "items.json")[0] == read(SAMPLES / "mattermost.jsonl")[0]


def test_bad_lines_unknown_backends_and_categories_are_skipped(tmp_path: Path) -> None:
    good = (SAMPLES / "discourse.jsonl").read_bytes().splitlines()
    git = {"backend_name": "Git", "category": "commit", "data": {"commit": "abc"}}
    odd = orjson.loads(good[0])
    odd["category"] = "post"
    cut = good[1][: len(good[1]) // 2]  # truncated last line
    lines = [good[0], b"[1, 2]", orjson.dumps(git), b"not json", orjson.dumps(odd), b"", cut]
    (tmp_path / "items.jsonl").write_bytes(b"\n".join(lines))
    got, ctx = read(tmp_path / "items.jsonl")
    assert len(got) == 8  # the first topic only
    assert dict(ctx.stats.skipped) == {
        "unparseable": 3,  # [1, 2], not json, the cut line (the blank line is no record)
        "unknown_backend": 1,
        "unsupported_category": 1,
        "system": 1,  # posts of the first topic
        "deleted": 1,
    }


def test_a_file_without_items_is_a_format_error(tmp_path: Path) -> None:
    text = f"{SECRET} no json here\n[1]\n"
    common.assert_not_the_format(read, tmp_path / "items.jsonl", text, SECRET, "no Perceval item")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert read(tmp_path / "empty.jsonl")[0] == []


def test_progress_sums_to_the_file_size() -> None:
    ctx = ImportContext()
    seen: list[int] = []
    ctx.progress = seen.append
    list(perceval.read(SAMPLES / "mattermost.jsonl", ctx))
    size = (SAMPLES / "mattermost.jsonl").stat().st_size
    assert size - 2 <= sum(seen) <= size
