-- The analyst reads the k-suppressed views only (docs/privacy.md, "Roles in ClickHouse";
-- the list: pipeline/sinks/access.py, AGGREGATE_VIEWS). A view runs with its invoker's rights
-- by default, so an analyst without SELECT on `events` could not read a view over it: these
-- views run as their definer, the user applying the migrations (teilhabe_writer on a server,
-- whose ALTER grant includes ALTER VIEW MODIFY SQL SECURITY; chDB's only user `default` on the
-- embedded engine). A later migration that re-creates one of these views (CREATE OR REPLACE
-- VIEW) resets this and must repeat its line (tests/unit/test_access.py checks it).
ALTER TABLE {db}.engagement_windows MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.window_baseline_ratio MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_active_by_unit MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_active_by_space MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_active_by_platform MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_silo_matrix MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_ei_index MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_response MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.participation_pyramid MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_baseline_ratio MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_stickiness MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_boundary_spanners MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_space_diversity MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_contribution_inequality MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.persona_28d MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_growth MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_ideation MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.idea_funnel MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_cohort_activity MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_community_health MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.unit_headcount MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
