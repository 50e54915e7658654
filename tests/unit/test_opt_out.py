"""Opt-out: the file's parsing, the pure filter (pipeline.metrics.enrich) and the reloading
list (pipeline.sources.optout). End to end: tests/integration/test_opt_out.py."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import pytest

from pipeline.contract.pseudonym import PSEUDONYM_HEX_CHARS, Pseudonymiser
from pipeline.errors import ConfigError
from pipeline.metrics.enrich import (
    OPTED_OUT_TARGET,
    apply_opt_out,
    enrich,
    opt_out_pseudonyms,
    parse_opt_out,
)
from pipeline.sinks.erasure import FORGOTTEN
from pipeline.sources.optout import OptOutList

KEY = b"0123456789abcdef0123456789abcdef"


def independent_pseudonym(canonical: str) -> str:
    """HMAC-SHA256 of the canonical spelling, hex, cut to the pseudonym's length."""
    return hmac.new(KEY, canonical.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]


def test_parse_skips_blank_lines_and_comments_and_trims() -> None:
    text = "# people who opted out\n\n  anna@example.org  \nu-17\n   # indented comment\nb#c\n"
    assert parse_opt_out(text) == ["anna@example.org", "u-17", "b#c"]
    assert parse_opt_out("") == [] and parse_opt_out("\n# only\n") == []


def test_pseudonyms_are_of_the_normalised_ids() -> None:
    p = Pseudonymiser(KEY)
    got = opt_out_pseudonyms(parse_opt_out(" Anna@Example.ORG \n"), p)
    assert got == {p("anna@example.org")} == {independent_pseudonym("anna@example.org")}


def event(actor: str, target: str | None = None) -> dict[str, object]:
    ev: dict[str, object] = {
        "event_id": "e1",
        "event_type": "reply_created" if target else "view",
        "occurred_at": "2026-01-05T10:00:00Z",
        "actor_id": actor,
    }
    if target:
        ev["target_actor_id"] = target
    return ev


def directory(pseudonym: str) -> dict[str, object] | None:
    return {"unit": "Sales"}


def test_filter_drops_the_actor_and_anonymises_the_target() -> None:
    p = Pseudonymiser(KEY)
    out = opt_out_pseudonyms(["anna@example.org"], p)
    mine = enrich(event("ANNA@example.org"), p, directory)
    assert apply_opt_out(mine, out) is False
    theirs = enrich(event("jonas@example.org", "anna@example.org"), p, directory)
    assert apply_opt_out(theirs, out) is True
    assert theirs["target_actor_id"] == OPTED_OUT_TARGET == FORGOTTEN
    assert theirs["target_unit"] == "Sales", "the target unit stays"
    assert theirs["actor_id"] == p("jonas@example.org")
    other = enrich(event("jonas@example.org", "lea@example.org"), p, directory)
    before = dict(other)
    assert apply_opt_out(other, out) is True and other == before
    assert apply_opt_out(other, frozenset()) is True


def test_list_reloads_when_the_file_changes(tmp_path: Path) -> None:
    p = Pseudonymiser(KEY)
    path = tmp_path / "opt-out.txt"
    path.write_text("anna@example.org\n")
    lst = OptOutList(path, p)
    assert lst.pseudonyms == {p("anna@example.org")}
    assert lst.reload_if_changed() is False, "unchanged: not read again"
    path.write_text("anna@example.org\njonas@example.org\n")
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    assert lst.reload_if_changed() is True
    assert lst.pseudonyms == {p("anna@example.org"), p("jonas@example.org")}
    path.unlink()  # vanished (being replaced): the last list stays
    assert lst.reload_if_changed() is False
    assert lst.pseudonyms == {p("anna@example.org"), p("jonas@example.org")}
    path.write_text("# nobody\n")
    assert lst.reload_if_changed() is True and lst.pseudonyms == frozenset()


def test_no_file_means_nobody_and_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    p = Pseudonymiser(KEY)
    assert OptOutList(None, p).pseudonyms == frozenset()
    assert OptOutList(None, p).reload_if_changed() is False
    with pytest.raises(ConfigError, match="TEILHABE_OPT_OUT_FILE"):
        OptOutList(tmp_path / "missing.txt", p)
