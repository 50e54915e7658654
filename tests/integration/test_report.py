"""``teilhabe report`` on the real engine (docs/report.md): the figures embedded in the HTML
equal a plain-Python recomputation over the same events (k = 1; several units, spaces and
platforms, replies on later days, late duplicates, any insertion order); with k = 5 nothing
about a group under 5 people reaches the embedded data or the plots' text; the file makes no
external reference."""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.contract.events import INTERACTION_TYPES
from pipeline.report.figures import collect
from pipeline.report.html import render
from pipeline.sinks.facts import EVENT_COLUMNS, event_row
from tests.conftest import migrated_clickhouse

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
HOUR_MS = 3_600_000
FIRST, LAST = (DAY0 + timedelta(days=1)).date(), (DAY0 + timedelta(days=5)).date()
#: unit -> people; "Tiny" (3 people) is under k = 5 on every day.
UNITS = {"Alpha": 9, "Beta": 8, "Gamma": 7, "Tiny": 3}
#: space -> (platform, units whose people post there); "tiny-space" only has Tiny's authors.
SPACES = {
    "general": ("slack", ["Alpha", "Beta", "Gamma"]),
    "beta-team": ("slack", ["Beta"]),
    "ideas-board": ("viva-engage", ["Alpha", "Gamma", "Beta"]),
    "tiny-space": ("rareplat", ["Tiny"]),
}


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with migrated_clickhouse(tmp_path_factory.mktemp("report"), min_group_size=1) as client:
        yield client


def people() -> dict[str, str]:
    return {f"{u[:2].lower()}{i}": u for u, n in UNITS.items() for i in range(n)}


def build(seed: int) -> list[dict[str, Any]]:
    """Random facts over 7 days around the period: posts in spaces, replies by others (some a
    day or more later, some by the author), reactions and mentions across units, views; a
    few interaction targets unknown to the directory."""
    rng = random.Random(seed)
    who = people()
    by_unit: dict[str, list[str]] = defaultdict(list)
    for p, u in who.items():
        by_unit[u].append(p)
    events: list[dict[str, Any]] = []

    def add(etype: str, ts: int, actor: str, **kw: Any) -> dict[str, Any]:
        ev = {
            "event_id": f"e{len(events)}",
            "event_type": etype,
            "ts": ts,
            "actor_id": actor,
            "actor_unit": who.get(actor, "unknown"),
            "space_id": None,
            "platform": None,
            "target_actor_id": None,
            "target_unit": None,
            "content_id": None,
            "parent_content_id": None,
            "root_content_id": None,
            "idea_status": None,
            "late": False,
        }
        ev.update(kw)
        events.append(ev)
        return ev

    start = int(DAY0.timestamp() * 1000)
    for day in range(7):
        for _ in range(60):
            space = rng.choice(list(SPACES))
            platform, units = SPACES[space]
            author = rng.choice(by_unit[rng.choice(units)])
            ts = start + day * 24 * HOUR_MS + rng.randrange(24 * HOUR_MS)
            post = add(
                "post_created",
                ts,
                author,
                space_id=space,
                platform=platform,
                content_id=f"c{len(events)}",
            )
            for _ in range(rng.choice([0, 0, 1, 2, 3])):
                replier = rng.choice(by_unit[rng.choice(units)])
                delay = rng.choice([rng.randrange(HOUR_MS), rng.randrange(60 * HOUR_MS)])
                add(
                    "reply_created",
                    ts + delay,
                    replier,
                    space_id=space,
                    platform=platform,
                    target_actor_id=author,
                    target_unit=who[author],
                    content_id=f"r{len(events)}",
                    parent_content_id=post["content_id"],
                    root_content_id=post["content_id"],
                )
        for _ in range(120):
            actor = rng.choice(list(who))
            target = rng.choice([*who, "stranger"])  # a target the directory does not know
            ts = start + day * 24 * HOUR_MS + rng.randrange(24 * HOUR_MS)
            etype = rng.choice(["reaction_added", "mention", "view", "share"])
            space = rng.choice(["general", "ideas-board"])
            add(
                etype,
                ts,
                actor,
                space_id=space,
                platform=SPACES[space][0],
                target_actor_id=None if etype == "view" else target,
                target_unit=None if etype == "view" else who.get(target),
            )
        for _ in range(6):  # ideas, votes, comments and decisions
            author = rng.choice(list(who))
            ts = start + day * 24 * HOUR_MS + rng.randrange(20 * HOUR_MS)
            idea = add(
                "idea_submitted",
                ts,
                author,
                space_id="ideas-board",
                platform="viva-engage",
                content_id=f"i{len(events)}",
            )
            for _ in range(3):
                add(
                    rng.choice(["idea_voted", "idea_commented"]),
                    ts + HOUR_MS,
                    rng.choice(list(who)),
                    space_id="ideas-board",
                    platform="viva-engage",
                    target_actor_id=author,
                    target_unit=who[author],
                    root_content_id=idea["content_id"],
                )
            add(
                "idea_status_changed",
                ts + 2 * HOUR_MS,
                rng.choice(list(who)),
                space_id="ideas-board",
                platform="viva-engage",
                content_id=idea["content_id"],
                idea_status=rng.choice(["in_review", "accepted", "rejected"]),
            )
    for ev in rng.sample(events, 40):  # late duplicates of on-time facts
        events.append({**ev, "late": True})
    for ev in rng.sample(events[:-40], 20):  # facts that only ever arrived late
        ev["late"] = True
    rng.shuffle(events)
    return events


def load(client: Any, events: list[dict[str, Any]]) -> None:
    client.command("TRUNCATE TABLE teilhabe.events")
    client.command("TRUNCATE TABLE teilhabe.directory_people")
    rows = [event_row(ev, late=ev["late"]) for ev in events]
    for i in range(0, len(rows), 500):  # several inserts, out of order
        client.insert("teilhabe.events", rows[i : i + 500], column_names=EVENT_COLUMNS)
    client.insert(
        "teilhabe.directory_people",
        [(p, u, "{}") for p, u in people().items()],
        column_names=("person_id", "unit", "attributes"),
    )


def set_k(client: Any, k: int) -> None:
    client.insert("teilhabe.config", [("min_group_size", str(k))], column_names=("key", "value"))


# --- the oracle: plain recomputations from docs/metrics.md ----------------------------------


def unique(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({ev["event_id"]: ev for ev in events}.values())


def day_of(ts: int) -> date:
    return datetime.fromtimestamp(ts / 1000, tz=UTC).date()


def in_period(ts: int) -> bool:
    return FIRST <= day_of(ts) <= LAST


def oracle_active(events: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for ev in events:
        if in_period(ev["ts"]):
            out[(day_of(ev["ts"]).isoformat(), ev["actor_unit"])].add(ev["actor_id"])
    return out


def oracle_matrix(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter(
        (ev["actor_unit"], ev["target_unit"] or "unknown")
        for ev in events
        if in_period(ev["ts"])
        and ev["event_type"] in INTERACTION_TYPES
        and ev["target_actor_id"] not in (None, ev["actor_id"])
    )


def oracle_response(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per space and platform: posts of the period, their authors, the median seconds from a
    post to its first reply by someone else (whenever it came; never below 0)."""
    posts = [e for e in events if e["event_type"] == "post_created" and in_period(e["ts"])]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for post in posts:
        replies = [
            e["ts"]
            for e in events
            if e["event_type"] == "reply_created"
            and e["root_content_id"] == post["content_id"]
            and e["actor_id"] != post["actor_id"]
        ]
        row = out.setdefault(
            (post["space_id"], post["platform"]),
            {"posts": 0, "authors": set(), "delays": [], "unanswered": 0},
        )
        row["posts"] += 1
        row["authors"].add(post["actor_id"])
        if replies:
            row["delays"].append(max(0, min(replies) - post["ts"]) / 1000)
        else:
            row["unanswered"] += 1
    return out


def oracle_coverage(events: list[dict[str, Any]], k: int) -> tuple[dict[tuple[str, str], int], int]:
    """Events per (type, platform): the sum over the period's days of the day's cells with at
    least k people, when the day's other cells together have 0 or >= k distinct people (else
    the smallest shown cell of the day is left out too); and how often that second step ran."""
    cells: dict[tuple[date, str, str], list[str]] = defaultdict(list)
    for ev in events:
        if in_period(ev["ts"]):
            cells[(day_of(ev["ts"]), ev["event_type"], ev["platform"] or "")].append(ev["actor_id"])
    people = {c: set(actors) for c, actors in cells.items()}
    shown = {c for c, p in people.items() if len(p) >= k}
    secondary = 0
    for day in {c[0] for c in cells}:
        hidden: set[str] = set()
        for c, p in people.items():
            if c[0] == day and c not in shown:
                hidden |= p
        if 0 < len(hidden) < k:
            rest = sorted((len(people[c]), c[1], c[2]) for c in shown if c[0] == day)
            shown.discard((day, rest[0][1], rest[0][2]))
            secondary += 1
    sums: Counter[tuple[str, str]] = Counter()
    for c in shown:
        sums[(c[1], c[2])] += len(cells[c])
    return dict(sums), secondary


# --- the report -------------------------------------------------------------------------------


def report_html(client: Any, units: list[str] | None = None) -> str:
    data = collect(client, "teilhabe", FIRST, LAST, units or [], "UTC", datetime.now(UTC))
    return render(data)


def embedded(html: str) -> dict[str, Any]:
    found = re.search(
        r'<script type="application/json" id="teilhabe-report-data">(.*?)</script>', html, re.S
    )
    assert found, "no embedded data"
    return json.loads(found.group(1))


def svg_texts(html: str) -> list[str]:
    """The text of every <text> element of the inline plots."""
    out = []
    for svg in re.findall(r"<svg.*?</svg>", html, re.S):
        for text in re.findall(r"<text\b[^>]*>(.*?)</text>", svg, re.S):
            out.append(re.sub(r"<[^>]+>", "", text).strip())
    return out


def test_figures_equal_the_oracle_at_k1(ch: Any, tmp_path: Path) -> None:
    events = build(seed=3)
    load(ch, events)
    set_k(ch, 1)
    from pipeline.cli.main import app

    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app, ["report", "--from", FIRST.isoformat(), "--to", LAST.isoformat(), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = embedded(out.read_text(encoding="utf-8"))
    facts = unique(events)
    assert data["meta"]["k"] == 1
    assert (data["meta"]["from"], data["meta"]["to"]) == (FIRST.isoformat(), LAST.isoformat())

    want_active = {key: len(p) for key, p in oracle_active(facts).items()}
    got_active = {(r["day"], r["unit"]): r["active_users"] for r in data["daily_active_by_unit"]}
    assert got_active == want_active

    got_matrix = {(r["from_unit"], r["to_unit"]): r["interactions"] for r in data["silo_matrix"]}
    assert got_matrix == dict(oracle_matrix(facts))
    assert ("Alpha", "unknown") in got_matrix  # targets the directory does not know

    want = oracle_response(facts)
    got = {(r["space_id"], r["platform"]): r for r in data["response_by_space"]}
    assert set(got) == set(want)
    for key, w in want.items():
        assert got[key]["posts"] == w["posts"], key
        assert got[key]["unanswered"] == w["unanswered"], key
        m = got[key]["median_first_response_s"]
        assert (m is None) == (not w["delays"]), key
        if w["delays"]:
            assert m == pytest.approx(median(w["delays"]), abs=1e-3), key


def test_unit_filter_keeps_only_those_units(ch: Any) -> None:
    load(ch, build(seed=4))
    set_k(ch, 1)
    data = embedded(report_html(ch, ["Beta"]))
    assert {r["unit"] for r in data["daily_active_by_unit"]} == {"Beta"}
    assert all("Beta" in (r["from_unit"], r["to_unit"]) for r in data["silo_matrix"])
    assert data["meta"]["units"] == ["Beta"]


def test_nothing_under_k_in_data_or_plots(ch: Any) -> None:
    events = build(seed=5)
    load(ch, events)
    set_k(ch, 5)
    html = report_html(ch)
    data = embedded(html)
    facts = unique(events)
    assert data["meta"]["k"] == 5

    active = oracle_active(facts)
    assert data["daily_active_by_unit"], "the large units must be shown"
    for r in data["daily_active_by_unit"]:
        assert r["active_users"] == len(active[(r["day"], r["unit"])]) >= 5
    response = oracle_response(facts)
    assert data["response_by_space"], "the large spaces must be shown"
    for r in data["response_by_space"]:
        assert len(response[(r["space_id"], r["platform"])]["authors"]) >= 5
    for r in data["silo_matrix"]:
        assert "Tiny" not in (r["from_unit"], r["to_unit"])
    want_coverage, secondary = oracle_coverage(facts, 5)
    assert secondary, "the data must make the coverage's secondary suppression work"
    got_coverage = {(c["event_type"], c["platform"]): c["events"] for c in data["coverage"]}
    assert got_coverage == want_coverage

    # The small unit, the small space and the platform only its 3 people use appear nowhere:
    # not in any figure's rows, not in any plot's text.
    figures = {key: value for key, value in data.items() if key != "meta"}
    dumped = json.dumps(figures)
    texts = svg_texts(html)
    assert texts, "the plots keep their text as <text>"
    assert any("Alpha" in t for t in texts)
    for name in ("Tiny", "tiny-space", "rareplat"):
        assert name not in dumped, name
        assert not any(name in t for t in texts), name
    # Every number in a plot's text is a figure of groups of at least k people: the plots draw
    # only the rows above, so no count of the small groups can appear; the totals they add up
    # (sums over days and over the units shown) are sums of shown rows only.
    tiny_days = {r["day"] for r in data["daily_active_by_unit"] if r["unit"] == "Tiny"}
    assert not tiny_days


def test_no_external_reference(ch: Any) -> None:
    load(ch, build(seed=6))
    set_k(ch, 1)
    html = report_html(ch)
    assert "@import" not in html
    assert not re.search(r"url\(\s*(?!#)", html), "only url(#id) references inside the page"
    for attr in re.findall(
        r"""\b(?:src|href|xlink:href|action|poster)\s*=\s*["']?([^"'\s>]*)""", html
    ):
        assert attr.startswith("#"), attr
    assert "<link" not in html and "<img" not in html and "<iframe" not in html
    assert not re.search(r"<script(?![^>]*application/json)", html), "no executable script"
    raw = re.search(r'id="teilhabe-report-data">(.*?)</script>', html, re.S)
    assert raw and "</" not in raw.group(1)
