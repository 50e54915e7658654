"""Response per community on the real engine: ``daily_response_by_space`` and the gauge
``teilhabe_unanswered_posts_by_space`` against plain Python recomputations from the inserted
facts (docs/metrics.md, daily_response_by_space): replies by others and by the author, replies
stamped before their post (0 s), replies after the target, unanswered posts, posts without a
space, several spaces and platforms, duplicates and late copies inserted out of order; k = 1
and k = 3, with the secondary step against the day's posts (docs/privacy.md)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from statistics import median
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.ops import readings
from pipeline.ops.exporter import TOP_SPACES, PipelineMetrics
from pipeline.ops.gauges import refresh_unanswered_by_space_gauge
from pipeline.sinks.facts import EVENT_COLUMNS, event_row
from tests.conftest import migrated_clickhouse
from tests.integration.test_analyst_views import DAY0, day_of, event, set_config, unique

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
T0 = int(DAY0.timestamp() * 1000)
TARGET_H = 6
SPACES = [("s1", "chat"), ("s2", "chat"), ("s3", "wiki"), ("s4", None), ("s1", "wiki")]
Key = tuple[date, str, str]


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with migrated_clickhouse(tmp_path_factory.mktemp("by_space"), min_group_size=1) as client:
        set_config(client, response_target_h=TARGET_H)
        yield client


def insert(client: Any, evs: list[dict[str, Any]], rng: random.Random) -> None:
    """Replace the facts with ``evs`` (duplicates and late copies among them), inserted in
    shuffled batches, so that neither order nor parts decide anything."""
    client.command("TRUNCATE TABLE teilhabe.events")
    rows = [event_row(ev, late=bool(ev["late"])) for ev in evs]
    rng.shuffle(rows)
    for part in (rows[0::3], rows[1::3], rows[2::3]):
        if part:
            client.insert("teilhabe.events", part, column_names=EVENT_COLUMNS)


def facts(rng: random.Random, n_people: int, days: int) -> list[dict[str, Any]]:
    """Posts in spaces on two platforms (and without a space) over ``days`` days, replies by
    others, by the author, stamped before the post, after the target or never; duplicates."""
    people = [f"{i:032x}" for i in range(n_people)]
    evs: list[dict[str, Any]] = []
    for i in range(rng.randint(10, 60)):
        author = rng.choice(people)
        ts = T0 + rng.randrange(days * DAY_MS)
        space, platform = rng.choice([*SPACES, (None, "chat"), ("", None)])
        post = event(f"p{i}", "post_created", ts, author, rng.choice("AB"), content=f"c{i}")
        post.update(space_id=space, platform=platform)
        evs.append(post)
        for j in range(rng.choice([0, 0, 1, 1, 2, 3])):
            replier = rng.choice([author, *people])  # the author's own replies do not answer
            delay = rng.choice(
                [
                    -HOUR_MS,
                    -1,
                    0,
                    60_000,
                    2 * HOUR_MS,
                    TARGET_H * HOUR_MS,
                    TARGET_H * HOUR_MS + 1,
                    3 * DAY_MS,
                ]
            )  # before the post (clock skew), at, within, exactly at and beyond the target
            reply = event(f"r{i}-{j}", "reply_created", ts + delay, replier, "A", root=f"c{i}")
            reply.update(space_id=space, platform=platform)
            evs.append(reply)
    evs += [{**ev, "late": True} for ev in evs if rng.random() < 0.2]  # late duplicates
    evs += [dict(ev) for ev in evs if rng.random() < 0.1]  # plain duplicates
    return evs


# --- oracle --------------------------------------------------------------------------------


def first_responses(evs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int | None]]:
    """Each post with its response time (ms, at least 0), None while nobody else replied."""
    facts_ = unique(evs)
    out = []
    for p in facts_:
        if p["event_type"] != "post_created" or p["content_id"] is None:
            continue
        replies = [
            r["ts"]
            for r in facts_
            if r["event_type"] == "reply_created"
            and r["root_content_id"] == p["content_id"]
            and r["actor_id"] != p["actor_id"]
        ]
        out.append((p, max(0, min(replies) - p["ts"]) if replies else None))
    return out


def shown(parts: dict[Any, set[str]], k: int) -> set[Any]:
    """Parts (total key, space, platform) -> authors: those shown by k and the secondary step
    of docs/privacy.md, per total (its first key): parts without a space never shown; when
    the authors of the hidden parts (distinct) are 1 to k - 1, the shown part with the fewest
    authors (then the smallest space, platform) is hidden too."""
    out: set[Any] = set()
    for total in {key[0] for key in parts}:
        mine = {key: a for key, a in parts.items() if key[0] == total}
        visible = {key for key, a in mine.items() if key[1] != "" and len(a) >= k}
        hidden: set[str] = set().union(*(a for key, a in mine.items() if key not in visible))
        if 0 < len(hidden) < k and visible:
            visible.remove(min(visible, key=lambda key: (len(mine[key]), key[1], key[2])))
        out |= visible
    return out


def oracle_view(evs: list[dict[str, Any]], k: int) -> set[tuple[Any, ...]]:
    groups: dict[Key, list[int | None]] = defaultdict(list)
    authors: dict[Key, set[str]] = defaultdict(set)
    for post, response in first_responses(evs):
        key = (day_of(post), post["space_id"] or "", post["platform"] or "")
        groups[key].append(response)
        authors[key].add(post["actor_id"])
    out = set()
    for key in shown(authors, k):
        times = [t for t in groups[key] if t is not None]
        out.add(
            (
                *key,
                len(groups[key]),
                sum(1 for t in times if t <= TARGET_H * HOUR_MS),
                round(2 * median(times)) if times else None,  # ms x 2: an integer
                len(groups[key]) - len(times),
            )
        )
    return out


def oracle_gauge(
    evs: list[dict[str, Any]], k: int, since: int, until: int, cap: int
) -> dict[tuple[str, str], int]:
    posts: dict[tuple[None, str, str], int] = defaultdict(int)
    authors: dict[tuple[None, str, str], set[str]] = defaultdict(set)
    for post, response in first_responses(evs):
        if since <= post["ts"] <= until and response is None:
            key = (None, post["space_id"] or "", post["platform"] or "")
            posts[key] += 1
            authors[key].add(post["actor_id"])
    top = sorted(shown(authors, k), key=lambda key: (-posts[key], key[1], key[2]))[:cap]
    return {(s, p): posts[(None, s, p)] for _, s, p in top}


# --- what ClickHouse says ------------------------------------------------------------------


def view(client: Any) -> set[tuple[Any, ...]]:
    return set(
        client.query(
            "SELECT day, space_id, platform, posts, answered_within_target, "
            "if(isNaN(median_first_response_s), NULL, "
            "toInt64(round(median_first_response_s * 2000))), "
            "unanswered FROM teilhabe.daily_response_by_space"
        ).result_rows
    )


def gauge(client: Any, since_days: int, now: int) -> dict[tuple[str, str], float]:
    m = PipelineMetrics.create(CollectorRegistry())
    refresh_unanswered_by_space_gauge(client, "teilhabe", m, TARGET_H, since_days, now)
    return {
        (s.labels["space"], s.labels["platform"]): s.value
        for family in m.registry.collect()
        if family.name == "teilhabe_unanswered_posts_by_space"
        for s in family.samples
    }


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("seed", range(4))
def test_view_equals_its_oracle(ch: Any, k: int, seed: int) -> None:
    rng = random.Random(seed)
    evs = facts(rng, rng.randint(3, 9), 3)
    insert(ch, evs, rng)
    set_config(ch, min_group_size=k)
    got, want = view(ch), oracle_view(evs, k)
    assert got == want
    assert got or k > 1, "no row: the facts exercise nothing"
    if k == 3:
        sizes: dict[Key, set[str]] = defaultdict(set)
        for post, _ in first_responses(evs):
            sizes[(day_of(post), post["space_id"] or "", post["platform"] or "")].add(
                post["actor_id"]
            )
        assert all(len(sizes[row[:3]]) >= 3 for row in got), "a row of fewer than 3 authors"


def test_hand_checked_rows_and_suppression(ch: Any) -> None:
    """One day: s1 (chat) 3 authors, s2 (chat) 4, s3 (wiki) 2, posts without a space by 1."""
    evs = []
    for n, (space, platform, author) in enumerate(
        [("s1", "chat", a) for a in "abc"]
        + [("s2", "chat", a) for a in "defg"]
        + [("s3", "wiki", a) for a in "hi"]
        + [(None, "chat", "z")]
    ):
        post = event(f"p{n}", "post_created", T0 + HOUR_MS, author, "A", content=f"c{n}")
        post.update(space_id=space, platform=platform)
        evs.append(post)
    # c0 answered after 2 h, c1 before its post (0 s), c2 only by its author, c3 after 1 day
    for n, (root, delay, who) in enumerate(
        [("c0", 2 * HOUR_MS, "x"), ("c1", -HOUR_MS, "x"), ("c2", 60_000, "c"), ("c3", DAY_MS, "x")]
    ):
        evs.append(event(f"r{n}", "reply_created", T0 + HOUR_MS + delay, who, "A", root=root))
    for ev in evs:
        ev.setdefault("late", False)
    insert(ch, evs, random.Random(0))
    d = DAY0.date()
    set_config(ch, min_group_size=1)  # the space-less posts are never a row
    assert view(ch) == {
        (d, "s1", "chat", 3, 2, 2 * 3_600_000, 1),  # median 1 h (ms x 2)
        (d, "s2", "chat", 4, 0, 2 * DAY_MS, 3),
        (d, "s3", "wiki", 2, 0, None, 2),
    }
    set_config(ch, min_group_size=3)  # s3 (2) and z hide 3 authors: nothing more hidden
    assert {r[1] for r in view(ch)} == {"s1", "s2"}
    set_config(ch, min_group_size=4)  # s1 (3) + s3 (2) + z: 6 hidden, s2 shown
    assert {r[1] for r in view(ch)} == {"s2"}
    evs = [ev for ev in evs if ev["actor_id"] != "z"]
    insert(ch, evs, random.Random(1))
    set_config(ch, min_group_size=3)  # s3's 2 authors alone: s1 (fewest shown) goes too
    assert {r[1] for r in view(ch)} == {"s2"}
    extra = event("p9", "post_created", T0 + HOUR_MS, "h", "A", content="c9")
    extra.update(platform="chat")  # h again, without a space: still 2 authors hidden, not 3
    insert(ch, [*evs, extra], random.Random(2))
    assert {r[1] for r in view(ch)} == {"s2"}


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("seed", range(3))
def test_no_day_minus_its_shown_rows_singles_out_fewer_than_k_authors(
    ch: Any, k: int, seed: int
) -> None:
    """The day's posts (daily_response added up) minus the rows shown: the posts left are by
    0 or at least k authors."""
    rng = random.Random(100 + seed)
    evs = facts(rng, rng.randint(3, 12), 2)
    insert(ch, evs, rng)
    set_config(ch, min_group_size=k)
    got = {row[:3] for row in view(ch)}
    left: dict[date, set[str]] = defaultdict(set)
    for post, _ in first_responses(evs):
        key = (day_of(post), post["space_id"] or "", post["platform"] or "")
        if key not in got:
            left[key[0]].add(post["actor_id"])
    assert all(len(a) == 0 or len(a) >= k for a in left.values())


@pytest.mark.parametrize(("k", "cap"), [(1, TOP_SPACES), (1, 2), (3, TOP_SPACES), (2, 1)])
@pytest.mark.parametrize("seed", range(3))
def test_gauge_equals_its_oracle(
    ch: Any, monkeypatch: pytest.MonkeyPatch, k: int, cap: int, seed: int
) -> None:
    """Unanswered posts of the lookback older than the target, per space and platform, k and
    the secondary step by their authors, the ``cap`` spaces with the most."""
    rng = random.Random(200 + seed)
    evs = facts(rng, rng.randint(3, 12), 4)
    insert(ch, evs, rng)
    set_config(ch, min_group_size=k)
    monkeypatch.setattr(readings, "TOP_SPACES", cap)
    now = T0 + 3 * DAY_MS
    got = gauge(ch, 2, now)
    assert got == oracle_gauge(evs, k, now - 2 * DAY_MS, now - TARGET_H * HOUR_MS, cap)
    assert len(got) <= cap


def test_gauge_and_view_agree_over_whole_days(ch: Any) -> None:
    """With k = 1 and a lookback covering whole days whose posts are all older than the target,
    the gauge per space is the view's unanswered posts added up over the days."""
    rng = random.Random(7)
    evs = facts(rng, 8, 3)
    insert(ch, evs, rng)
    set_config(ch, min_group_size=1)
    now = T0 + 3 * DAY_MS + TARGET_H * HOUR_MS  # until = the end of the third day
    lookback = 4  # since = before the first day
    summed: dict[tuple[str, str], int] = defaultdict(int)
    for _, space, platform, *_, unanswered in view(ch):
        if unanswered:
            summed[(space, platform)] += unanswered
    assert summed
    assert gauge(ch, lookback, now) == summed
