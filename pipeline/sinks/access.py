"""Who may read which relation of the Teilhabe database: the one classification behind
``deploy/clickhouse/users.xml`` and the ``SQL SECURITY DEFINER`` migration (docs/privacy.md,
"Roles in ClickHouse").

Every table and view the migrations create is in exactly one of the three sets below;
tests/unit/test_access.py compares them with the migration files (a new relation cannot stay
unclassified) and with the grants of users.xml:

* ``AGGREGATE_VIEWS``: figures with groups smaller than k left out. The ``analyst`` user (Grafana,
  people with clickhouse-client) may read these and nothing else. They run with ``SQL SECURITY
  DEFINER`` (the migrating user, who reads everything), so an analyst needs no grant on what
  they read.
* ``PERSON_LEVEL``: pseudonymised per-person facts. Only ``data_steward`` (SELECT on the whole
  database) and the pipeline's own ``teilhabe_writer`` read them.
* ``INTERNAL``: the pipeline's state (settings, checkpoints, per-partition window partials
  before suppression, the migration log). Not for analysts either.
"""

from __future__ import annotations

#: k-suppressed views: ``GRANT SELECT ON teilhabe.<view> TO analyst`` for each, nothing more.
AGGREGATE_VIEWS: tuple[str, ...] = (
    "engagement_windows",
    "window_baseline_ratio",  # over engagement_windows, itself suppressed
    "daily_active_by_unit",
    "daily_active_by_space",
    "daily_active_by_platform",
    "daily_silo_matrix",
    "daily_ei_index",
    "daily_response",
    "daily_response_by_space",
    "participation_pyramid",
    "daily_baseline_ratio",
    "daily_stickiness",
    "daily_boundary_spanners",
    "daily_space_diversity",
    "daily_contribution_inequality",
    "persona_28d",
    "daily_growth",
    "daily_ideation",
    "idea_funnel",
    "daily_cohort_activity",
    "daily_community_health",
    "unit_headcount",
)

#: Pseudonymised rows about one person each (actor ids, locations, cohorts, posts).
PERSON_LEVEL: tuple[str, ...] = (
    "events",
    "user_day_facts",
    "interactions",
    "post_first_response",
    "directory_people",
)

#: The pipeline's own state; ``schema_migrations`` is created by pipeline/sinks/migrate.py.
INTERNAL: tuple[str, ...] = (
    "config",
    "stream_checkpoints",
    "engagement_window_partials",
    "schema_migrations",
)


def analyst_grants(database: str = "teilhabe") -> list[str]:
    """The analyst's grant queries, as users.xml must hold them (one per view, sorted)."""
    return [f"GRANT SELECT ON {database}.{view}" for view in sorted(AGGREGATE_VIEWS)]
