"""What defines a synthetic organisation: the default units, personas and their action mixes,
the weekly season, ``OrgSpec`` and ``scaled_units``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

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

DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000


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
        return self.start_ms + round(self.days * DAY_MS)

    def silo(self, unit: str) -> float:
        """Probability that an interaction of someone in ``unit`` targets their own unit."""
        return self.unit_silo.get(unit, self.silo_strength)


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
