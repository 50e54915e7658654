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

Modules: ``spec`` (``OrgSpec``, defaults), ``organisation`` (people, spaces, directory),
``behaviour`` (the model above), ``output`` (live stream, JSON-lines files). The names below
are the generator's public API (``from pipeline.dev import generator as gen``).
"""

from pipeline.dev.generator.organisation import Organisation
from pipeline.dev.generator.output import live_events, write_jsonl
from pipeline.dev.generator.spec import (
    DEFAULT_UNITS,
    IDEA_STATUSES,
    PERSONAS,
    OrgSpec,
    scaled_units,
)

__all__ = [
    "DEFAULT_UNITS",
    "IDEA_STATUSES",
    "PERSONAS",
    "OrgSpec",
    "Organisation",
    "live_events",
    "scaled_units",
    "write_jsonl",
]
