"""The report's sections: for each, its plots and the plain-language text around them.

Reference values are cited as docs/metrics.md cites them; the text never names a unit, space or
number that the rows (already k-suppressed) do not hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from pipeline.contract.events import CONTRIBUTION_TYPES, EVENT_TYPES, INTERACTION_TYPES
from pipeline.report import heatmaps, plots
from pipeline.report.coverage import types_by_platform
from pipeline.report.figures import ReportData

#: What a platform's export cannot say when a type is missing (coverage section).
MISSING_MEANS = {
    "view": "nobody who only reads is seen, so observers are undercounted",
    "reaction_added": "reactions are not counted as interactions or as activity",
    "reply_created": "no response times and fewer cross-unit ties",
    "post_created": "no posts, so no response figures",
    "member_joined": "no new members in growth",
    "idea_submitted": "no ideation figures",
}


@dataclass
class Section:
    """One section of the report (its HTML id, title, paragraphs, plots, source line)."""

    key: str
    title: str
    text: list[str]
    plots: list[str | None]
    feeds: str
    empty: str = ""
    extra_html: list[str] = field(default_factory=list)


def _types(types: frozenset[str] | set[str]) -> str:
    return ", ".join(f"<code>{t}</code>" for t in sorted(types))


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def adoption(d: ReportData) -> Section:
    reach = d.tables["reach_by_unit"]
    text = [
        "Each line is a unit: the share of its people (its headcount in the directory, "
        "<code>unit_headcount</code>) who did anything on the platforms that day. The bars "
        "show how many were active on a mean day, in the 7 days and in the 28 days up to the "
        "period's end (the 7 and 28-day windows of Viva Engage's active users, "
        "docs/metrics.md).",
        "Stickiness is daily active / 28-day active people (<code>daily_stickiness</code>): "
        "how many of those who use the platforms at all use them on a given day. Good looks "
        "like a 28-day reach that grows towards the whole unit and a stickiness that holds or "
        "rises; compare a unit with its own past and with the other units rather than with a "
        "fixed target.",
    ]
    if reach:
        best = max(reach, key=lambda r: r["stickiness"])
        text.append(
            f"Highest mean stickiness over the period: {escape(best['unit'])} "
            f"({_pct(best['stickiness'])})."
        )
    return Section(
        "adoption",
        "Adoption: who is active",
        text,
        [plots.adoption_daily(d.tables["daily_active_by_unit"]), plots.adoption_reach(reach)],
        f"Every event type counts as activity ({_types(EVENT_TYPES)}). Views: "
        "<code>daily_active_by_unit</code>, <code>daily_stickiness</code>, "
        "<code>unit_headcount</code>.",
        empty="No unit had at least k active people on any day of the period.",
    )


def participation(d: ReportData) -> Section:
    pyr = d.tables["participation_pyramid"]
    tot = {c: sum(r[c] for r in pyr) for c in ("observers", "contributors", "heavy_contributors")}
    all_ = sum(tot.values())
    heavy = int(d.config.get("heavy_contributions", "5") or 5)
    text = [
        "Every active person of a day is an observer (only viewed, reacted, voted or joined), "
        f"a contributor (1 to {heavy - 1} contributions that day) or a heavy contributor "
        f"({heavy} or more). Nielsen's participation inequality "
        '(Nielsen, J. 2006, "Participation Inequality: The 90-9-1 Rule") finds about 90% '
        "observers, 9% contributors and 1% heavy contributors in typical online communities: "
        "more contributors than that means broader participation. Bars count person-days.",
        "The personas (after SWOOP Analytics, <code>persona_28d</code>) describe the 28 days up "
        "to each unit's last day shown: catalysts get much more response than they give, "
        "responders mostly reply and react, broadcasters mostly post, engagers balance both. "
        "A healthy community has catalysts and responders, not only broadcasters.",
    ]
    if all_:
        text.append(
            "Over the units shown: "
            f"{_pct(tot['observers'] / all_)} observers, {_pct(tot['contributors'] / all_)} "
            f"contributors, {_pct(tot['heavy_contributors'] / all_)} heavy contributors "
            "(of the person-days)."
        )
    return Section(
        "participation",
        "Participation: who contributes",
        text,
        [
            plots.stacked_shares(
                "pyramid",
                "Participation tiers (share of active person-days)",
                pyr,
                [
                    ("observers", "observers"),
                    ("contributors", "contributors"),
                    ("heavy_contributors", "heavy contributors"),
                ],
            ),
            plots.stacked_shares(
                "personas",
                "Personas over the last 28 days",
                d.tables["persona_28d"],
                [
                    ("observers", "observers"),
                    ("engagers", "engagers"),
                    ("catalysts", "catalysts"),
                    ("responders", "responders"),
                    ("broadcasters", "broadcasters"),
                ],
            ),
        ],
        f"Contributions: {_types(CONTRIBUTION_TYPES)}; every other type makes an observer. "
        "Views: <code>participation_pyramid</code>, <code>persona_28d</code> (made and received: "
        "posts, replies, reactions).",
        empty="No unit had at least k active people on any day of the period.",
    )


def cross_silo(d: ReportData) -> Section:
    org = [r for r in d.tables["ei_index"] if r["unit"] == "*"]
    i = sum(r["internal"] for r in org)
    e = sum(r["external"] for r in org)
    text = [
        "The matrix counts replies, reactions, mentions and shares from people of one unit "
        "(row) to people of another (column); the diagonal stays inside a unit. Grey cells are "
        "empty or hidden (fewer than k people, or left out so that no hidden cell can be "
        "worked out from the totals).",
        "The E-I index (Krackhardt, D. & Stern, R. N. 1988, Social Psychology Quarterly 51(2)) "
        "is (external - internal) / (external + internal) ties: -1 when every tie stays inside "
        "the unit, +1 when all go to other units. Most organisations sit below 0; a line "
        "moving towards 0 means more exchange across units, a falling organisation line means "
        "silos are growing. Boundary spanners are people who interacted with at least "
        f"{escape(d.config.get('boundary_spanner_units', '3'))} other units in a day.",
    ]
    if i + e:
        text.append(f"Organisation over the period: E-I = {(e - i) / (e + i):+.2f}.")
    return Section(
        "cross-silo",
        "Cross-silo collaboration",
        text,
        [
            heatmaps.silo_heatmap(d.tables["silo_matrix"]),
            plots.ei_lines(d.tables["ei_index"]),
            plots.spanners(d.tables["boundary_spanners"]),
        ],
        f"Interactions: {_types(INTERACTION_TYPES)} with a target person other than the actor. "
        "Views: <code>daily_silo_matrix</code> (summed over the period), "
        "<code>daily_ei_index</code>, <code>daily_boundary_spanners</code>.",
        empty="No interactions between groups of at least k people in the period.",
    )


def communities(d: ReportData) -> Section:
    rows = d.tables["response_by_space"]
    target = escape(d.config.get("response_target_h", "24"))
    text = [
        "Per community (space): its posts, how many got a first reply by someone else within "
        f"the target of {target} hours, later, or not at all. The time to first response is "
        'the CHAOSS metric "Time to First Response" (docs/metrics.md); the label gives its '
        "median. Good: most posts answered within the target and few left unanswered.",
        escape(d.response_note),
    ]
    extra = []
    worst = sorted((r for r in rows if r["unanswered"]), key=lambda r: -r["unanswered"])[:10]
    if worst:
        items = "".join(
            f"<tr><td>{escape(r['space_id'])}</td><td>{escape(r['platform'])}</td>"
            f"<td class=num>{r['unanswered']:,}</td><td class=num>{r['posts']:,}</td></tr>"
            for r in worst
        )
        extra.append(
            "<h3>Most unanswered posts</h3><table><thead><tr><th>space</th><th>platform</th>"
            f"<th>unanswered</th><th>posts</th></tr></thead><tbody>{items}</tbody></table>"
        )
    if d.units:
        text.append("Spaces have no unit: this section shows every space, whatever --unit says.")
    return Section(
        "communities",
        "Communities: are posts answered?",
        text,
        [plots.response_spaces(rows)],
        "Posts (<code>post_created</code>) and replies (<code>reply_created</code>) to them. "
        "View: <code>daily_response_by_space</code> (posts left out where fewer than k people "
        "authored them).",
        empty="No community had posts of at least k authors on any day of the period.",
        extra_html=extra,
    )


def growth(d: ReportData) -> Section:
    return Section(
        "growth",
        "Growth and retention",
        [
            "Per day, over the units shown: people active that day who were also active in the "
            "28 days before (returning), people active in the 28 days before the last 28 but "
            'not since (dormant; CHAOSS "Inactive Contributors"), people who joined a '
            "community and people whose first contribution it was (CHAOSS growth metrics, "
            "docs/metrics.md). Good: returning people stay high and dormant people few.",
            "Cohorts (from the directory, e.g. a community of digitisers) show the share of "
            "their members active per day.",
        ],
        [
            plots.growth_lines(d.tables["daily_growth"]),
            plots.cohort_lines(d.tables["daily_cohort_activity"]),
        ],
        "Any event counts as activity; <code>member_joined</code> makes a new member; "
        f"contributions ({_types(CONTRIBUTION_TYPES)}) a first-time contributor. Views: "
        "<code>daily_growth</code>, <code>daily_cohort_activity</code>.",
        empty="No growth figures for groups of at least k people in the period.",
    )


def ideation(d: ReportData) -> Section:
    votes = sum(r["votes"] for r in d.tables["daily_ideation"])
    comments = sum(r["comments"] for r in d.tables["daily_ideation"])
    text = [
        "Ideas submitted in the period and how many of them reached each status since "
        "(whenever the status changed). A funnel that narrows only at the decision and still "
        "leads to implemented ideas shows an ideation process that listens; many ideas with "
        "no status at all mean ideas are not being reviewed.",
    ]
    if votes or comments:
        text.append(f"On the units' ideas: {votes:,} votes and {comments:,} comments.")
    return Section(
        "ideation",
        "Ideation",
        text,
        [plots.funnel(d.tables["idea_funnel"])],
        "<code>idea_submitted</code>, <code>idea_status_changed</code>, <code>idea_voted</code>, "
        "<code>idea_commented</code>. Views: <code>idea_funnel</code>, "
        "<code>daily_ideation</code>.",
        empty="No ideas from groups of at least k authors in the period.",
    )


def coverage(d: ReportData) -> Section:
    cov = d.coverage
    assert cov is not None
    if cov.denied:
        return Section(
            "coverage",
            "Coverage: what the data can say",
            [],
            [],
            "counts of events, read from the events themselves.",
            empty=cov.denied,
        )
    types = sorted(EVENT_TYPES)
    text = [
        "What the sources delivered: events per type and platform. A platform without a type "
        "cannot say what that type measures; read the other sections with that in mind.",
    ]
    if cov.absent_types:
        means = [MISSING_MEANS[t] for t in cov.absent_types if t in MISSING_MEANS]
        text.append(
            f"No {_types(set(cov.absent_types))} events in the period"
            + (f": {'; '.join(means)}." if means else ".")
        )
    by_platform = types_by_platform(cov)
    shown_anywhere = set().union(*by_platform.values()) if by_platform else set()
    unseen = sorted(EVENT_TYPES - shown_anywhere - set(cov.absent_types))
    if unseen:
        text.append(f"Not shown for any platform (fewer than k people): {_types(set(unseen))}.")
    for p, seen in sorted(by_platform.items()):
        missing = shown_anywhere - seen
        if not missing:
            continue
        name = escape(p or "(no platform)")
        note = (
            " Its readers appear only when they act, so observers are undercounted."
            if "view" in missing
            else ""
        )
        text.append(f"{name} shows no {_types(missing)} events.{note}")
    if cov.hidden_cells:
        text.append(
            f"{cov.hidden_cells} day/type/platform cell(s) are left out of the sums: fewer "
            "than k people that day, or left out so that they cannot be worked out from the "
            "others."
        )
    if cov.unknown_share is not None:
        days = (
            f" (over the days on which they come from at least k people; "
            f"{cov.unknown_days_hidden} day(s) left out)"
            if cov.unknown_days_hidden
            else ""
        )
        text.append(
            f"{100 * cov.unknown_share:.1f}% of the events have no known unit{days}: neither "
            "the event nor the directory names one, so they count under <code>unknown</code>."
        )
    if d.units:
        text.append("Coverage is about the sources: it always shows the whole organisation.")
    return Section(
        "coverage",
        "Coverage: what the data can say",
        text,
        [heatmaps.coverage_heatmap(cov.cells, types)],
        "All event types, read from the events themselves (counts of events, not people); a "
        "day's cell counts only when its events come from at least k people "
        "(<code>pipeline/report/coverage.py</code>).",
        empty="No events in the period.",
    )


def glance(d: ReportData) -> list[tuple[str, str]]:
    """Headline figures (value, what it is), each a ratio of sums of rows the views show."""
    out = []
    reach = [r for r in d.tables["reach_by_unit"] if r["headcount"]]
    if reach:
        share = sum(r["mau"] for r in reach) / sum(r["headcount"] for r in reach)
        out.append((_pct(share), "of the people of the units shown active in 28 days"))
    pyr = d.tables["participation_pyramid"]
    days = sum(r["observers"] + r["contributors"] + r["heavy_contributors"] for r in pyr)
    if days:
        contrib = sum(r["contributors"] + r["heavy_contributors"] for r in pyr) / days
        out.append((_pct(contrib), "of active person-days with a contribution"))
    org = [r for r in d.tables["ei_index"] if r["unit"] == "*"]
    ties = sum(r["internal"] + r["external"] for r in org)
    if ties:
        ei = sum(r["external"] - r["internal"] for r in org) / ties
        out.append((f"{ei:+.2f}", "E-I index of the organisation (-1 silo, +1 open)"))
    posts = sum(r["posts"] for r in d.tables["response_by_space"])
    if posts:
        answered = sum(r["answered_within_target"] for r in d.tables["response_by_space"])
        target = escape(d.config.get("response_target_h", "24"))
        out.append((_pct(answered / posts), f"of community posts answered within {target} h"))
    return out


def all_sections(d: ReportData) -> list[Section]:
    return [
        adoption(d),
        participation(d),
        cross_silo(d),
        communities(d),
        growth(d),
        ideation(d),
        coverage(d),
    ]
