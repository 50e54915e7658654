"""Deterministic synthetic organisation that emits contract v1 collaboration events.

Pure Python: all randomness comes from ``random.Random`` seeded from ``OrgSpec.seed``, so the
same spec always gives byte-identical output. The behaviour model (shared by the history
generator and the live stream):

* People belong to units and have a persona (observer, broadcaster, responder, engager) that
  sets their action mix, and an individual activity level (log-normal around the persona's).
* Activity follows a weekly season: weekdays busy with a daytime peak (UTC hours, roughly CET
  office hours), weekend days at ``weekend_factor`` of a weekday.
* Interactions (replies, reactions, shares, mentions; also idea votes and comments) pick the
  target person inside the actor's own unit with probability = that unit's silo strength,
  otherwise in another unit weighted by headcount. Replies, reactions and shares act on an
  existing, recent piece of content and target its author; mentions target a person.
  Self-interactions occur only at ``self_interaction_rate`` and never count as a silo tie.
* During the idea campaign a share of actions are idea actions; submitted ideas move through
  ``in_review`` to ``accepted``/``rejected`` (and sometimes ``implemented``), set by campaign
  managers (members of the first cohort).
* A few people join (``member_joined``) or leave (``member_left``) during the period.
* ``actor_unit`` / ``target_unit`` are left out (key absent, sometimes ``null``) in a share of
  events, so consumers must fill them from the directory.
* ``drop_unit`` thins that unit's activity by ``drop_factor`` from ``drop_from`` on.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Final

import orjson

PERSONAS: Final = ("observer", "broadcaster", "responder", "engager")

DEFAULT_UNITS: Final[tuple[tuple[str, int], ...]] = (
    ("Vertrieb", 110),
    ("Produktion", 120),
    ("IT", 60),
    ("Controlling", 25),
    ("Personal", 35),
    ("Einkauf", 45),
)
#: Org-wide communities added to the per-unit team channels when ``OrgSpec.spaces`` is None.
DEFAULT_COMMUNITIES: Final = ("community-digitisers", "ideas", "all-company", "ask-it")
LOCATIONS: Final = ("Hamburg", "München", "Stuttgart", "Köln", "Berlin", "Frankfurt am Main")
IDEA_STATUSES: Final = ("in_review", "accepted", "rejected", "implemented")

#: Action mix per persona (outside idea actions); weights need not sum to 1.
ACTION_MIX: Final[Mapping[str, tuple[tuple[str, float], ...]]] = {
    "observer": (
        ("view", 0.80),
        ("reaction_added", 0.16),
        ("reply_created", 0.02),
        ("post_created", 0.01),
        ("share", 0.01),
    ),
    "broadcaster": (
        ("post_created", 0.45),
        ("view", 0.20),
        ("share", 0.12),
        ("reaction_added", 0.10),
        ("mention", 0.08),
        ("reply_created", 0.05),
    ),
    "responder": (
        ("reply_created", 0.38),
        ("reaction_added", 0.30),
        ("view", 0.20),
        ("mention", 0.06),
        ("post_created", 0.04),
        ("share", 0.02),
    ),
    "engager": (
        ("post_created", 0.18),
        ("reply_created", 0.22),
        ("reaction_added", 0.22),
        ("view", 0.22),
        ("mention", 0.10),
        ("share", 0.06),
    ),
}
#: Idea-action mix per persona during the campaign.
IDEA_MIX: Final[Mapping[str, tuple[tuple[str, float], ...]]] = {
    "observer": (("idea_voted", 0.85), ("idea_commented", 0.10), ("idea_submitted", 0.05)),
    "broadcaster": (("idea_submitted", 0.50), ("idea_voted", 0.30), ("idea_commented", 0.20)),
    "responder": (("idea_voted", 0.40), ("idea_commented", 0.50), ("idea_submitted", 0.10)),
    "engager": (("idea_submitted", 0.30), ("idea_voted", 0.35), ("idea_commented", 0.35)),
}
#: Mean activity of a persona relative to the others (normalised over the organisation).
PERSONA_ACTIVITY: Final[Mapping[str, float]] = {
    "observer": 0.6,
    "broadcaster": 1.2,
    "responder": 1.3,
    "engager": 2.0,
}
#: Relative activity per UTC hour on a weekday (peak ~ 08-16 UTC = 09-17 CET).
# fmt: off
HOUR_PROFILE: Final = (
    0.03, 0.02, 0.02, 0.02, 0.03, 0.10, 0.35, 0.90, 1.50, 1.70, 1.60, 1.30,
    1.00, 1.40, 1.50, 1.30, 0.90, 0.50, 0.30, 0.25, 0.20, 0.15, 0.08, 0.05,
)
# fmt: on

_DAY_MS: Final = 86_400_000
_HOUR_MS: Final = 3_600_000
_POOL_CAP: Final = 300  # recent contents per unit that replies/reactions choose from


@dataclass(frozen=True)
class OrgSpec:
    """Everything that defines a synthetic organisation and its activity (same spec, same data).

    ``unit_silo`` overrides ``silo_strength`` per unit. ``spaces`` are (space_id, unit) pairs,
    unit None for org-wide communities; None gives a team channel per unit plus
    ``DEFAULT_COMMUNITIES``. ``campaign`` is the idea campaign as fractions (from, to) of the
    period, None for no campaign. ``cohorts`` are (name, share of people).
    """

    seed: int = 42
    units: tuple[tuple[str, int], ...] = DEFAULT_UNITS
    spaces: tuple[tuple[str, str | None], ...] | None = None
    platforms: tuple[str, ...] = ("viva-engage", "slack")
    silo_strength: float = 0.7
    unit_silo: Mapping[str, float] = field(default_factory=dict)
    persona_mix: tuple[tuple[str, float], ...] = (
        ("observer", 0.6),
        ("broadcaster", 0.1),
        ("responder", 0.15),
        ("engager", 0.15),
    )
    cohorts: tuple[tuple[str, float], ...] = (("digitisers", 0.08),)
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    days: float = 28.0
    events_per_user_day: float = 10.0
    weekend_factor: float = 0.2
    campaign: tuple[float, float] | None = (0.25, 0.75)
    idea_share: float = 0.08
    idea_decision_days: float = 2.0
    drop_unit: str | None = None
    drop_from: datetime | None = None
    drop_factor: float = 0.3
    new_member_share: float = 0.05
    leaver_share: float = 0.01
    omit_unit_share: float = 0.3
    team_space_share: float = 0.6
    self_interaction_rate: float = 0.002

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))
        if self.drop_from is not None and self.drop_from.tzinfo is None:
            object.__setattr__(self, "drop_from", self.drop_from.replace(tzinfo=UTC))
        names = [u for u, _ in self.units]
        if not names or len(set(names)) != len(names):
            raise ValueError("units must be non-empty with distinct names")
        if any(n < 1 for _, n in self.units):
            raise ValueError("every unit needs a headcount of at least 1")
        if self.days <= 0 or self.events_per_user_day < 0:
            raise ValueError("days must be > 0 and events_per_user_day >= 0")
        for name, value in (
            ("silo_strength", self.silo_strength),
            ("drop_factor", self.drop_factor),
            ("weekend_factor", self.weekend_factor),
            ("idea_share", self.idea_share),
            ("new_member_share", self.new_member_share),
            ("leaver_share", self.leaver_share),
            ("omit_unit_share", self.omit_unit_share),
            ("team_space_share", self.team_space_share),
            ("self_interaction_rate", self.self_interaction_rate),
            *self.unit_silo.items(),
            *self.cohorts,
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if unknown := set(self.unit_silo) - set(names):
            raise ValueError(f"unit_silo names unknown units: {sorted(unknown)}")
        if self.drop_unit is not None and self.drop_unit not in names:
            raise ValueError(f"drop_unit {self.drop_unit!r} is not a unit")
        if unknown := {p for p, _ in self.persona_mix} - set(PERSONAS):
            raise ValueError(f"unknown personas {sorted(unknown)}; known: {PERSONAS}")
        if sum(w for _, w in self.persona_mix) <= 0:
            raise ValueError("persona_mix needs a positive share")
        if not self.platforms:
            raise ValueError("at least one platform")
        if self.campaign is not None and not 0 <= self.campaign[0] <= self.campaign[1] <= 1:
            raise ValueError("campaign must be fractions 0 <= from <= to <= 1 of the period")

    @property
    def start_ms(self) -> int:
        """Start of the period in epoch milliseconds."""
        return round(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        """End (exclusive) of the period in epoch milliseconds."""
        return self.start_ms + round(self.days * _DAY_MS)

    def silo(self, unit: str) -> float:
        """Probability that an interaction of someone in ``unit`` targets their own unit."""
        return self.unit_silo.get(unit, self.silo_strength)


@dataclass(frozen=True, slots=True)
class Person:
    """One synthetic employee. ``joined_ms``/``left_ms`` are set when it happens in the period."""

    person_id: str
    unit: str
    persona: str
    cohorts: tuple[str, ...]
    location: str
    activity: float
    joined_ms: int | None = None
    left_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Space:
    """A community or channel on one platform; ``unit`` None means org-wide."""

    space_id: str
    unit: str | None
    platform: str


class Organisation:
    """People, spaces and the activity model of an ``OrgSpec``."""

    def __init__(self, spec: OrgSpec | None = None) -> None:
        self.spec = spec = spec or OrgSpec()
        rng = random.Random(f"org:{spec.seed}")
        self.units: list[str] = [u for u, _ in spec.units]
        self.headcount: dict[str, int] = dict(spec.units)
        self.tag = hashlib.blake2b(repr(spec).encode(), digest_size=4).hexdigest()
        self.spaces = self._make_spaces()
        self.people = self._make_people(rng)
        first_cohort = spec.cohorts[0][0] if spec.cohorts else None
        stay = [p for p in self.people if p.joined_ms is None and p.left_ms is None]
        managers = [p for p in stay if first_cohort in p.cohorts] or stay or self.people
        #: People who change idea statuses (up to two of the first cohort).
        self.campaign_managers: list[Person] = managers[:2]

    def _make_spaces(self) -> list[Space]:
        spec = self.spec
        team_platform = spec.platforms[1 % len(spec.platforms)]
        pairs = spec.spaces
        if pairs is None:
            pairs = tuple((f"team-{_slug(u)}", u) for u in self.units) + tuple(
                (name, None) for name in DEFAULT_COMMUNITIES
            )
        return [
            Space(sid, unit, team_platform if unit else spec.platforms[0]) for sid, unit in pairs
        ]

    def _make_people(self, rng: random.Random) -> list[Person]:
        spec = self.spec
        slots: list[tuple[str, str]] = []
        for unit, headcount in spec.units:
            personas = _apportion(spec.persona_mix, headcount)
            rng.shuffle(personas)
            slots.extend((unit, persona) for persona in personas)
        rng.shuffle(slots)  # person numbers do not reveal units
        n = len(slots)
        width = max(4, len(str(n)))
        main_location = {u: LOCATIONS[i % len(LOCATIONS)] for i, u in enumerate(self.units)}
        cohort_of: list[list[str]] = [[] for _ in range(n)]
        affinity = {"engager": 4.0, "broadcaster": 2.0, "responder": 2.0, "observer": 0.5}
        for name, share in spec.cohorts:
            chosen = _weighted_sample(rng, [affinity[p] for _, p in slots], round(share * n))
            for i in chosen:
                cohort_of[i].append(name)
        raw = [
            PERSONA_ACTIVITY[p] * rng.lognormvariate(0.0, 0.6) * (1.5 if cohort_of[i] else 1.0)
            for i, (_, p) in enumerate(slots)
        ]
        mean = sum(raw) / n
        period = spec.end_ms - spec.start_ms
        people = []
        for i, (unit, persona) in enumerate(slots):
            location = main_location[unit] if rng.random() < 0.8 else rng.choice(LOCATIONS)
            joined = left = None
            if rng.random() < spec.new_member_share:
                joined = spec.start_ms + int(rng.random() * period)
            if rng.random() < spec.leaver_share:
                left = (joined or spec.start_ms) + int(
                    rng.random() * (spec.end_ms - (joined or spec.start_ms))
                )
            people.append(
                Person(
                    person_id=f"u{i + 1:0{width}d}@example.org",
                    unit=unit,
                    persona=persona,
                    cohorts=tuple(cohort_of[i]),
                    location=location,
                    activity=raw[i] / mean,
                    joined_ms=joined,
                    left_ms=left,
                )
            )
        return people

    def directory_records(self) -> Iterator[dict[str, Any]]:
        """Directory entries: person_id, unit, cohorts, location (everyone, incl. later joiners)."""
        for p in self.people:
            yield {
                "person_id": p.person_id,
                "unit": p.unit,
                "cohorts": list(p.cohorts),
                "location": p.location,
            }

    def events(self) -> Iterator[dict[str, Any]]:
        """Contract v1 events over [start, start + days), in event-time order."""
        spec = self.spec
        sim = _Simulator(
            self,
            random.Random(f"events:{spec.seed}"),
            f"{self.tag}-",
            round(spec.idea_decision_days * _DAY_MS),
        )
        return sim.run_period()


def live_events(
    org: Organisation, rate_per_s: float, clock: Callable[[], float] = time.time
) -> Iterator[dict[str, Any]]:
    """Endless event stream stamped "now", at a mean of ``rate_per_s`` events per second.

    Event times advance by exponential gaps from ``clock()`` at the start, but never lag behind
    ``clock()`` nor run more than a second ahead of it: the caller paces the stream (e.g.
    ``produce_events(rate_per_s=...)``). Same behaviour model as ``Organisation.events``,
    without joins/leaves; the idea campaign runs whenever ``spec.campaign`` is set, with status
    changes after minutes instead of days; ``drop_unit`` is thinned from ``drop_from`` (or from
    the start when None). Randomness is seeded from the spec's seed and the start time.
    """
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be > 0")
    spec = org.spec
    now = clock()
    start_ms = int(now * 1000)
    sim = _Simulator(
        org, random.Random(f"live:{spec.seed}:{start_ms}"), f"{org.tag}-L{start_ms:x}-", 120_000
    )
    return sim.run_live(rate_per_s, clock, now)


def write_jsonl(
    org: Organisation,
    events_path: Path | str,
    directory_path: Path | str,
    limit: int | None = None,
) -> tuple[int, int]:
    """Write the events and the directory as JSON lines; returns (events, people) written.

    ``limit`` stops after that many events (the first ``limit`` of the full history, so a
    shorter file is a prefix of a longer one). Streams: memory does not grow with the
    number of events, only with the organisation.
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    n_people = 0
    dumps = orjson.dumps
    with open(directory_path, "wb") as fh:
        chunk: list[bytes] = []
        for rec in org.directory_records():
            chunk.append(dumps(rec))
            n_people += 1
            if len(chunk) >= 4096:
                fh.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            fh.write(b"\n".join(chunk) + b"\n")
    n_events = 0
    events = org.events()
    if limit is not None:
        events = islice(events, limit)
    with open(events_path, "wb") as fh:
        chunk = []
        for ev in events:
            chunk.append(dumps(ev))
            if len(chunk) >= 4096:
                fh.write(b"\n".join(chunk) + b"\n")
                n_events += len(chunk)
                chunk = []
        if chunk:
            fh.write(b"\n".join(chunk) + b"\n")
            n_events += len(chunk)
    return n_events, n_people


def scaled_units(
    people: int, units: int | None = None, base: tuple[tuple[str, int], ...] = DEFAULT_UNITS
) -> tuple[tuple[str, int], ...]:
    """Units of an organisation of ``people`` people, for ``OrgSpec.units``.

    ``units`` (default: as many as ``base``) takes the names and relative sizes of ``base``,
    cycled beyond its length with a number ("Vertrieb 2", ...); the headcounts are split in
    those proportions (largest remainder), each at least 1. ``scaled_units(395)`` is
    ``DEFAULT_UNITS`` itself (the default organisation has 395 people).
    """
    n_units = len(base) if units is None else units
    if n_units < 1:
        raise ValueError("at least one unit")
    if people < n_units:
        raise ValueError(f"{people} people cannot fill {n_units} units (one person each)")
    names, weights = [], []
    for i in range(n_units):
        name, weight = base[i % len(base)]
        names.append(name if i < len(base) else f"{name} {i // len(base) + 1}")
        weights.append(weight)
    total = sum(weights)
    quotas = [w * people / total for w in weights]
    counts = [math.floor(q) for q in quotas]
    left = people - sum(counts)
    for i in sorted(range(n_units), key=lambda i: (counts[i] - quotas[i], i))[:left]:
        counts[i] += 1
    for i in range(n_units):  # a tiny unit rounded to nobody: one person from the largest
        if counts[i] == 0:
            counts[max(range(n_units), key=counts.__getitem__)] -= 1
            counts[i] = 1
    return tuple(zip(names, counts, strict=True))


# --------------------------------------------------------------------------------------------
# The behaviour model


# A piece of content: (content_id, root_content_id, author_id, author_unit, space_id, platform)
_Content = tuple[str, str, str, str, str | None, str | None]


class _Simulator:
    """Mutable state of one run: content pools, ideas, members, scheduled events, counters."""

    def __init__(self, org: Organisation, rng: random.Random, prefix: str, delay_ms: int) -> None:
        spec = org.spec
        self.org, self.spec, self.rng, self.prefix = org, spec, rng, prefix
        self.delay_ms = max(1, delay_ms)
        self.n_events = 0
        self.n_contents = 0
        self.silo = {u: spec.silo(u) for u in org.units}
        self.posts: dict[str, list[_Content]] = {u: [] for u in org.units}
        self.contents: dict[str, list[_Content]] = {u: [] for u in org.units}
        self.ideas: list[tuple[str, str, str]] = []  # (idea_id, author_id, author_unit)
        self.last_content: dict[str, _Content] = {}
        self.members: dict[str, list[Person]] = {u: [] for u in org.units}
        self.scheduled: list[tuple[int, int, str, Any]] = []
        self.n_scheduled = 0
        self.others: dict[str, tuple[list[str], list[float]]] = {}
        for u in org.units:
            names = [v for v in org.units if v != u]
            self.others[u] = (names, _cumulative([org.headcount[v] for v in names]))
        self.team_space: dict[str, list[Space]] = {u: [] for u in org.units}
        self.wide_spaces = [s for s in org.spaces if s.unit is None]
        for s in org.spaces:
            if s.unit in self.team_space:
                self.team_space[s.unit].append(s)
        by_name = {s.space_id: s for s in org.spaces}
        self.idea_space = by_name.get("ideas") or _first(self.wide_spaces)
        self.cohort_space = {c: by_name.get(f"community-{c}") for c, _ in spec.cohorts}
        self.mix = {p: _table(ACTION_MIX[p]) for p in PERSONAS}
        self.idea_mix = {p: _table(IDEA_MIX[p]) for p in PERSONAS}
        self.omit = spec.omit_unit_share
        self.dates: dict[int, str] = {}
        self.active: set[str] = set()
        #: joins/leaves since the period driver last listed the active people
        self.roster_changed = True

    # ---- drivers ---------------------------------------------------------------------------

    def run_period(self) -> Iterator[dict[str, Any]]:
        spec, org, rng = self.spec, self.org, self.rng
        start, end = spec.start_ms, spec.end_ms
        drop_unit = spec.drop_unit
        drop_ms = _ms(spec.drop_from) if spec.drop_from is not None else start
        drop_factor = spec.drop_factor
        camp_from = camp_to = -1
        if spec.campaign is not None:
            camp_from = start + round(spec.campaign[0] * (end - start))
            camp_to = start + round(spec.campaign[1] * (end - start))
        for p in org.people:
            if p.joined_ms is None:
                self._add_member(p)
            else:
                self._schedule(p.joined_ms, "join", p)
            if p.left_ms is not None:
                self._schedule(p.left_ms, "leave", p)
        norm = 7.0 / ((5 + 2 * spec.weekend_factor) * (sum(HOUR_PROFILE) / 24))
        per_ms = spec.events_per_user_day / _DAY_MS * norm
        actors: list[Person] = []
        cum: list[float] = []
        slot = start
        expo, rand = rng.expovariate, rng.random
        while slot < end:
            slot_end = min((slot // _HOUR_MS + 1) * _HOUR_MS, end)
            if self.roster_changed:  # joins/leaves take effect from the next hour
                actors = [p for p in org.people if p.person_id in self.active]
                cum = _cumulative([p.activity for p in actors])
                self.roster_changed = False
            total = cum[-1] if cum else 0.0
            day, hour = divmod(slot // _HOUR_MS, 24)
            season = HOUR_PROFILE[hour] * (1.0 if (day + 3) % 7 < 5 else spec.weekend_factor)
            rate = total * per_ms * season
            t = float(slot)
            while rate > 0:
                t += expo(rate)
                ms = int(t)
                if ms >= slot_end:
                    break
                if self.scheduled and self.scheduled[0][0] <= ms:
                    yield from self._flush(ms)
                p = actors[min(bisect_right(cum, rand() * total), len(actors) - 1)]
                if p.person_id not in self.active:
                    continue  # left during this hour
                if p.unit == drop_unit and ms >= drop_ms and rand() >= drop_factor:
                    continue
                yield self.act(ms, p, camp_from <= ms < camp_to)
            if self.scheduled and self.scheduled[0][0] < slot_end:
                yield from self._flush(slot_end - 1)
            slot = slot_end

    def run_live(
        self, rate: float, clock: Callable[[], float], now: float
    ) -> Iterator[dict[str, Any]]:
        spec, org, rng = self.spec, self.org, self.rng
        people = [p for p in org.people]
        for p in people:
            self._add_member(p)
        cum = _cumulative([p.activity for p in people])
        total = cum[-1]
        drop_s = spec.drop_from.timestamp() if spec.drop_from is not None else 0.0
        campaign = spec.campaign is not None
        t = now
        while True:
            now = clock()
            t = min(max(t + rng.expovariate(rate), now), now + 1.0)
            ms = int(t * 1000)
            if self.scheduled and self.scheduled[0][0] <= ms:
                yield from self._flush(ms)
            p = people[min(bisect_right(cum, rng.random() * total), len(people) - 1)]
            if p.unit == spec.drop_unit and t >= drop_s and rng.random() >= spec.drop_factor:
                continue
            yield self.act(ms, p, campaign)

    # ---- scheduled events (joins, leaves, idea status changes) --------------------------------

    def _schedule(self, ms: int, kind: str, payload: Any) -> None:
        self.n_scheduled += 1
        heapq.heappush(self.scheduled, (ms, self.n_scheduled, kind, payload))

    def _flush(self, upto_ms: int) -> Iterator[dict[str, Any]]:
        """Emit scheduled events due at or before ``upto_ms``, in time order."""
        while self.scheduled and self.scheduled[0][0] <= upto_ms:
            ms, _, kind, payload = heapq.heappop(self.scheduled)
            if kind == "join":
                self.roster_changed = True
                self._add_member(payload)
                yield self._membership(ms, payload, "member_joined")
            elif kind == "leave":
                self.roster_changed = True
                self.active.discard(payload.person_id)
                members = self.members[payload.unit]
                # by identity: list.remove compares with the dataclass __eq__ (slow in big units)
                del members[next(i for i, q in enumerate(members) if q is payload)]
                yield self._membership(ms, payload, "member_left")
            else:
                yield self._status(ms, *payload)

    def _add_member(self, p: Person) -> None:
        self.active.add(p.person_id)
        self.members[p.unit].append(p)

    def _membership(self, ms: int, p: Person, kind: str) -> dict[str, Any]:
        space = _first(self.team_space[p.unit] or self.wide_spaces)
        return self._event(ms, kind, p, space)

    def _status(self, ms: int, idea: tuple[str, str, str], status: str) -> dict[str, Any]:
        rng = self.rng
        manager = self.org.campaign_managers[int(rng.random() * len(self.org.campaign_managers))]
        ev = self._event(ms, "idea_status_changed", manager, self.idea_space)
        ev["content_id"] = ev["root_content_id"] = idea[0]
        ev["idea_status"] = status
        gap = int(rng.expovariate(1.0) * self.delay_ms) + 1
        if status == "in_review":
            self._schedule(
                ms + gap, "status", (idea, "accepted" if rng.random() < 0.5 else "rejected")
            )
        elif status == "accepted" and rng.random() < 0.3:
            self._schedule(ms + 3 * gap, "status", (idea, "implemented"))
        return ev

    # ---- one action --------------------------------------------------------------------------

    def act(self, ms: int, p: Person, campaign: bool) -> dict[str, Any]:
        """One action of ``p`` at ``ms``: the event type from the persona's mix."""
        rand = self.rng.random
        if campaign and rand() < self.spec.idea_share:
            kinds, cum = self.idea_mix[p.persona]
        else:
            kinds, cum = self.mix[p.persona]
        kind = kinds[bisect_right(cum, rand() * cum[-1])]
        if kind == "post_created":
            return self._post(ms, p)
        if kind == "view":
            return self._view(ms, p)
        if kind == "mention":
            return self._mention(ms, p, self._side(p))
        if kind in ("reply_created", "reaction_added", "share"):
            return self._on_content(ms, p, kind)
        return self._idea(ms, p, kind)

    def _event(self, ms: int, kind: str, p: Person, space: Space | None) -> dict[str, Any]:
        self.n_events += 1
        ev: dict[str, Any] = {
            "schema_version": 1,
            "event_id": f"{self.prefix}{self.n_events:08d}",
            "event_type": kind,
            "occurred_at": self._iso(ms),
            "actor_id": p.person_id,
        }
        r = self.rng.random()
        if r >= self.omit:
            ev["actor_unit"] = p.unit
        elif r >= self.omit * 0.7:
            ev["actor_unit"] = None
        if space is not None:
            ev["space_id"] = space.space_id
            ev["platform"] = space.platform
        return ev

    def _target(self, ev: dict[str, Any], person_id: str, unit: str) -> None:
        ev["target_actor_id"] = person_id
        r = self.rng.random()
        if r >= self.omit:
            ev["target_unit"] = unit
        elif r >= self.omit * 0.7:
            ev["target_unit"] = None

    def _new_id(self, letter: str) -> str:
        self.n_contents += 1
        return f"{self.prefix}{letter}{self.n_contents}"

    def _space_for(self, p: Person) -> Space | None:
        rand = self.rng.random
        for cohort in p.cohorts:
            space = self.cohort_space.get(cohort)
            if space is not None and rand() < 0.5:
                return space
        team = self.team_space[p.unit]
        if team and (rand() < self.spec.team_space_share or not self.wide_spaces):
            return team[int(rand() * len(team))]
        if self.wide_spaces:
            return self.wide_spaces[int(rand() * len(self.wide_spaces))]
        return None

    def _side(self, p: Person) -> str:
        """Unit of an interaction's target: own unit with the unit's silo strength."""
        rand = self.rng.random
        if rand() < self.silo[p.unit]:
            return p.unit
        names, cum = self.others[p.unit]
        if not names:
            return p.unit
        return names[min(bisect_right(cum, rand() * cum[-1]), len(names) - 1)]

    def _recent(self, pool: list[_Content], avoid: str) -> _Content | None:
        """A recent content of ``pool`` (biased to the newest) not authored by ``avoid``."""
        if not pool:
            return None
        rand = self.rng.random
        m = min(len(pool), _POOL_CAP)
        for _ in range(4):
            c = pool[-1 - int(m * rand() * rand())]
            if c[2] != avoid:
                return c
        return None

    def _remember(self, p: Person, c: _Content, post: bool) -> None:
        for pool in (
            (self.posts[p.unit], self.contents[p.unit]) if post else (self.contents[p.unit],)
        ):
            pool.append(c)
            if len(pool) > 2 * _POOL_CAP:
                del pool[:_POOL_CAP]
        self.last_content[p.person_id] = c

    def _post(self, ms: int, p: Person) -> dict[str, Any]:
        space = self._space_for(p)
        ev = self._event(ms, "post_created", p, space)
        cid = self._new_id("p")
        ev["content_id"] = ev["root_content_id"] = cid
        sid, plat = (space.space_id, space.platform) if space else (None, None)
        self._remember(p, (cid, cid, p.person_id, p.unit, sid, plat), post=True)
        return ev

    def _view(self, ms: int, p: Person) -> dict[str, Any]:
        c = self._recent(self.contents[self._side(p)], p.person_id)
        if c is None:
            return self._event(ms, "view", p, self._space_for(p))
        ev = self._event(ms, "view", p, None)
        ev["space_id"], ev["platform"] = c[4], c[5]
        ev["content_id"], ev["root_content_id"] = c[0], c[1]
        return ev

    def _mention(self, ms: int, p: Person, unit: str) -> dict[str, Any]:
        members = self.members[unit]
        rand = self.rng.random
        for _ in range(4 if members else 0):
            target = members[int(rand() * len(members))]
            if target.person_id != p.person_id:
                ev = self._event(ms, "mention", p, self._space_for(p))
                self._target(ev, target.person_id, target.unit)
                return ev
        return self._post(ms, p)  # nobody else there to mention

    def _on_content(self, ms: int, p: Person, kind: str) -> dict[str, Any]:
        rand = self.rng.random
        c: _Content | None
        if rand() < self.spec.self_interaction_rate:
            c = self.last_content.get(p.person_id)  # rare: on one's own content
            unit = p.unit
        else:
            unit = self._side(p)
            use_posts = kind == "share" or (kind == "reply_created" and rand() < 0.75)
            c = self._recent((self.posts if use_posts else self.contents)[unit], p.person_id)
        if c is None:
            return self._mention(ms, p, unit)  # keeps the in/out choice of the interaction
        ev = self._event(ms, kind, p, None)
        ev["space_id"], ev["platform"] = c[4], c[5]
        self._target(ev, c[2], c[3])
        if kind == "reply_created":
            cid = self._new_id("r")
            ev["content_id"], ev["parent_content_id"], ev["root_content_id"] = cid, c[0], c[1]
            self._remember(p, (cid, c[1], p.person_id, p.unit, c[4], c[5]), post=False)
        else:
            ev["content_id"], ev["root_content_id"] = c[0], c[1]
        return ev

    def _idea(self, ms: int, p: Person, kind: str) -> dict[str, Any]:
        ideas = self.ideas
        idea: tuple[str, str, str] | None = None
        if kind != "idea_submitted" and ideas:
            m = min(len(ideas), _POOL_CAP)
            rand = self.rng.random
            for _ in range(4):
                cand = ideas[-1 - int(m * rand())]
                if cand[1] != p.person_id:
                    idea = cand
                    break
        if idea is None:
            ev = self._event(ms, "idea_submitted", p, self.idea_space)
            iid = self._new_id("i")
            ev["content_id"] = ev["root_content_id"] = iid
            ideas.append((iid, p.person_id, p.unit))
            if len(ideas) > 2 * _POOL_CAP:
                del ideas[:_POOL_CAP]
            if self.rng.random() < 0.8:
                gap = int(self.rng.expovariate(1.0) * self.delay_ms) + 1
                self._schedule(ms + gap, "status", ((iid, p.person_id, p.unit), "in_review"))
            return ev
        ev = self._event(ms, kind, p, self.idea_space)
        self._target(ev, idea[1], idea[2])
        if kind == "idea_commented":
            ev["content_id"] = self._new_id("c")
            ev["parent_content_id"] = ev["root_content_id"] = idea[0]
        else:
            ev["content_id"] = ev["root_content_id"] = idea[0]
        return ev

    def _iso(self, ms: int) -> str:
        """RFC 3339 UTC with milliseconds and ``Z``."""
        day, rest = divmod(ms, _DAY_MS)
        prefix = self.dates.get(day)
        if prefix is None:
            prefix = self.dates[day] = (date(1970, 1, 1) + timedelta(days=day)).isoformat() + "T"
        h, rest = divmod(rest, _HOUR_MS)
        m, rest = divmod(rest, 60_000)
        s, milli = divmod(rest, 1000)
        return f"{prefix}{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


# --------------------------------------------------------------------------------------------
# helpers


def _first(spaces: list[Space]) -> Space | None:
    return spaces[0] if spaces else None


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def _slug(name: str) -> str:
    table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", " ": "-"})
    return name.lower().translate(table)


def _cumulative(weights: list[float] | list[int]) -> list[float]:
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc)
    return out


def _table(mix: tuple[tuple[str, float], ...]) -> tuple[list[str], list[float]]:
    return [k for k, _ in mix], _cumulative([w for _, w in mix])


def _apportion(shares: tuple[tuple[str, float], ...], n: int) -> list[str]:
    """``n`` labels in the given shares exactly (largest remainder)."""
    total = sum(w for _, w in shares)
    quotas = [(name, w / total * n) for name, w in shares]
    counts = {name: math.floor(q) for name, q in quotas}
    left = n - sum(counts.values())
    for name, _ in sorted(quotas, key=lambda x: x[1] - math.floor(x[1]), reverse=True)[:left]:
        counts[name] += 1
    return [name for name, _ in shares for _ in range(counts[name])]


def _weighted_sample(rng: random.Random, weights: list[float], k: int) -> list[int]:
    """``k`` distinct indices drawn with probability proportional to ``weights``."""
    keys = sorted(
        range(len(weights)), key=lambda i: rng.random() ** (1.0 / weights[i]), reverse=True
    )
    return sorted(keys[:k])
