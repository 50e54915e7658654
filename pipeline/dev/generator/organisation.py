"""The people and spaces of an ``OrgSpec``: units, personas, cohorts, activity levels, joiners
and leavers, and the directory records."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.dev.generator.behaviour import Simulator
from pipeline.dev.generator.spec import (
    DAY_MS,
    DEFAULT_COMMUNITIES,
    LOCATIONS,
    PERSONA_ACTIVITY,
    OrgSpec,
)


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
        sim = Simulator(
            self,
            random.Random(f"events:{spec.seed}"),
            f"{self.tag}-",
            round(spec.idea_decision_days * DAY_MS),
        )
        return sim.run_period()


def _slug(name: str) -> str:
    table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", " ": "-"})
    return name.lower().translate(table)


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
