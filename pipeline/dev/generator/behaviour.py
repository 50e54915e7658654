"""The behaviour model (see the package docstring), shared by the history generator and the
live stream: who acts when, what they do and on whose content."""

from __future__ import annotations

import heapq
import random
from bisect import bisect_right
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pipeline.dev.generator.spec import (
    ACTION_MIX,
    DAY_MS,
    HOUR_MS,
    HOUR_PROFILE,
    IDEA_MIX,
    PERSONAS,
)

if TYPE_CHECKING:
    from pipeline.dev.generator.organisation import Organisation, Person, Space

_POOL_CAP: Final = 300  # recent contents per unit that replies/reactions choose from

# A piece of content: (content_id, root_content_id, author_id, author_unit, space_id, platform)
_Content = tuple[str, str, str, str, str | None, str | None]


class Simulator:
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
        per_ms = spec.events_per_user_day / DAY_MS * norm
        actors: list[Person] = []
        cum: list[float] = []
        slot = start
        expo, rand = rng.expovariate, rng.random
        while slot < end:
            slot_end = min((slot // HOUR_MS + 1) * HOUR_MS, end)
            if self.roster_changed:  # joins/leaves take effect from the next hour
                actors = [p for p in org.people if p.person_id in self.active]
                cum = _cumulative([p.activity for p in actors])
                self.roster_changed = False
            total = cum[-1] if cum else 0.0
            day, hour = divmod(slot // HOUR_MS, 24)
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
        day, rest = divmod(ms, DAY_MS)
        prefix = self.dates.get(day)
        if prefix is None:
            prefix = self.dates[day] = (date(1970, 1, 1) + timedelta(days=day)).isoformat() + "T"
        h, rest = divmod(rest, HOUR_MS)
        m, rest = divmod(rest, 60_000)
        s, milli = divmod(rest, 1000)
        return f"{prefix}{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


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
