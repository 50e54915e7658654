"""Person ids are normalised before pseudonymising (Unicode NFC, trimmed, e-mail addresses
lower-cased), once, in ``Pseudonymiser``: every path that pseudonymises (ingest, imports, the
directory, webhooks) gives one person one pseudonym whatever the spelling. Checked against an
independent HMAC over the canonical spelling written out by hand."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contract.events import validate_event
from pipeline.contract.pseudonym import Pseudonymiser, normalise_person_id
from pipeline.metrics.enrich import enrich
from pipeline.sources.connectors.base import ImportContext, event, iso
from pipeline.sources.importer import prepare
from pipeline.sources.producer import directory_messages

KEY = b"n" * 32
P = Pseudonymiser(KEY)
NFC = unicodedata.normalize("NFC", "Jürgen")
NFD = unicodedata.normalize("NFD", "Jürgen")


def hmac_of(canonical: str) -> str:
    """The oracle: HMAC-SHA256 of the canonical spelling, 32 hex characters."""
    return hmac.new(KEY, canonical.encode(), hashlib.sha256).hexdigest()[:32]


def test_nfc_and_nfd_spellings_share_one_pseudonym() -> None:
    assert NFC != NFD  # two different strings for the same name
    assert P(NFC) == P(NFD) == hmac_of("J\u00fcrgen")


@pytest.mark.parametrize(
    "spelling",
    [
        "juergen.mueller@example.org",
        "Juergen.Mueller@Example.ORG",
        " juergen.mueller@example.org\n",
    ],
)
def test_email_addresses_ignore_case_and_surrounding_space(spelling: str) -> None:
    assert P(spelling) == hmac_of("juergen.mueller@example.org")


def test_an_umlaut_address_in_nfd_and_capitals_is_the_nfc_lower_case_one() -> None:
    assert P(f"  {NFD}@Example.org ") == hmac_of("j\u00fcrgen@example.org")


@pytest.mark.parametrize("platform_id", ["U024BE7LH", "@Anna", "Anna Schmidt", "Anna@"])
def test_ids_that_are_no_address_keep_their_case(platform_id: str) -> None:
    assert P(platform_id) == hmac_of(platform_id)
    assert P(platform_id) != P(platform_id.lower())


@given(st.text(min_size=1, max_size=40))
def test_normalising_is_idempotent_and_the_pseudonym_follows_it(raw: str) -> None:
    once = normalise_person_id(raw)
    assert normalise_person_id(once) == once
    assert Pseudonymiser(KEY)(raw) == Pseudonymiser(KEY)(once)


def test_ingest_import_and_directory_agree_on_spellings() -> None:
    """The directory written with one spelling, events arriving with others (ingest and
    import): every event finds the person's unit, with one pseudonym."""
    ((key, _),) = list(directory_messages([{"person_id": f"{NFC}@example.org", "unit": "IT"}], P))
    directory = {key.decode(): {"unit": "IT"}}
    raw = {
        "event_id": "e1",
        "event_type": "post_created",
        "occurred_at": "2027-01-15T08:00:00Z",
        "actor_id": f" {NFD}@EXAMPLE.org",
        "platform": "slack",
    }
    ingested = enrich(validate_event(raw, 1_800_000_000_000, 3_600_000), P, directory.get)
    assert ingested["actor_id"] == key.decode() and ingested["actor_unit"] == "IT"

    ctx = ImportContext()
    imported = event(
        "e2", "post_created", iso(1_700_000_000), f"{NFD}@Example.org", platform="mbox"
    )
    ((_, line),) = list(prepare([imported], ctx, P))
    assert orjson.loads(line)["actor_id"] == key.decode()
