"""Hostile input on the real embedded broker (Tansu) and chDB, one worker at log level DEBUG.

A seeded organisation (one day) with the known-bad corpus interleaved (inside envelopes beside
good events, and as whole messages, among them one above ``TEILHABE_MAX_MESSAGE_BYTES``) and
malformed directory records. Every bad message or event must land in the dead-letter topic
with its original bytes and its reason; the good events must all reach ClickHouse (figure by
figure equal to the oracle); the worker must keep running; the dead-letter counts in /metrics
must match; and no log line of the run, at any level, may carry a raw person id or the key.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.contract.records import Envelope
from pipeline.metrics.enrich import directory_headcounts
from pipeline.ops.exporter import INVALID_REASONS
from pipeline.sources.producer import envelopes, make_producer, read_jsonl
from tests.conftest import TEST_KEY
from tests.faults.harness import (
    Dataset,
    FaultRun,
    Figures,
    Report,
    assert_equal_to_oracle,
    make_dataset,
    metric_value,
    oracle,
    read_records,
)
from tests.unit.test_hostile_input import CORPUS, MALFORMED_DIRECTORY, nested

pytestmark = pytest.mark.integration

MAX_BYTES = 8192
ENVELOPE_SIZE = 10
DAY0 = 9  # 2026-02-09, a Monday
INLINE_LIMIT = 1000  # corpus items up to this size travel inside envelopes

#: One dead letter as the test expects it: reason, original bytes, inside an envelope or not.
Dead = tuple[str, bytes, bool]


def hostile_directory_people() -> list[tuple[str, bytes]]:
    """(raw person id, malformed directory value) for people that also act in the input."""
    return [(f"hostile-dir-{name}@example.org", raw) for name, raw in MALFORMED_DIRECTORY.items()]


def hostile_directory_events() -> list[dict[str, Any]]:
    """Valid events (no units) of the people whose directory records are malformed."""
    people = [person for person, _ in hostile_directory_people()]
    when = datetime(2026, 2, DAY0, 12, 0, tzinfo=UTC)
    return [
        {
            "event_id": f"hostile-dir-ev-{i}",
            "event_type": "reply_created",
            "occurred_at": (when + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "actor_id": person,
            "target_actor_id": people[(i + 1) % len(people)],
        }
        for i, person in enumerate(people)
    ]


def bad_inputs() -> tuple[list[bytes], list[bytes | None], list[Dead]]:
    """(bad lines to interleave with good ones, whole messages to send alone, expected dead)."""
    corpus = dict(CORPUS)
    base = {"event_id": "b-1", "event_type": "view", "actor_id": "oversize@example.org"}
    # a day ahead of the wall clock the worker validates against
    soon = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    corpus["future_beyond_tolerance"] = (
        orjson.dumps({**base, "occurred_at": soon}),
        "future_timestamp",
    )
    over = orjson.dumps({**base, "occurred_at": "2026-02-09T10:00:00Z"})
    corpus["above_max_message_bytes"] = (over + b" " * (MAX_BYTES + 1 - len(over)), "oversized")
    corpus["nested_at_the_limit"] = (nested(1022, b"{}"), "not_an_object")
    inline: list[bytes] = []
    whole: list[bytes | None] = [None]  # a message without a value
    dead: list[Dead] = [("empty", b"", False)]
    for value, reason in corpus.values():
        if len(value) > MAX_BYTES:
            reason = "oversized"
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
            is_json = False
        else:
            is_json = True
        envelope_level = isinstance(doc, dict) and "events" in doc
        if is_json and len(value) <= INLINE_LIMIT and not envelope_level:
            inline.append(value)
            dead.append((reason, value, True))
            if len(inline) % 4 == 0:  # some also alone: the single-message path
                whole.append(value)
                dead.append((reason, value, False))
        else:
            whole.append(value)
            dead.append((reason, value, False))
    return inline, whole, dead


def event_time(ev: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(ev["occurred_at"].replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return make_dataset(tmp_path_factory.mktemp("hostile-data"), seed=23, days=1, day0=DAY0)


@pytest.fixture(scope="module")
def run(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One pipeline run over the dataset with the hostile input; what it left behind."""
    started = time.monotonic()
    inline, whole, expected_dead = bad_inputs()
    good = list(zip(read_jsonl(dataset.events_path), dataset.events, strict=True))
    good += [(orjson.dumps(ev), ev) for ev in hostile_directory_events()]
    good.sort(key=lambda pair: event_time(pair[1]))  # in time order: nothing is late
    good_lines = [line for line, _ in good]
    lines: list[bytes] = []
    queue = list(inline)
    step = max(1, len(good_lines) // (len(inline) + 1))
    for i, line in enumerate(good_lines):
        lines.append(line)
        if queue and i % step == step - 1:
            lines.append(queue.pop(0))  # beside good events in the same envelope
    lines += queue
    biggest = max(len(e.value) for e in envelopes(lines, ENVELOPE_SIZE) if isinstance(e, Envelope))
    assert biggest <= MAX_BYTES, f"an envelope of the good input is already {biggest} bytes"

    root = tmp_path_factory.mktemp("hostile")
    with FaultRun(root, dataset, max_message_bytes=MAX_BYTES, log_level="DEBUG") as fault_run:
        s = fault_run.settings
        pseudonymise = Pseudonymiser(s.read_pseudonym_key())
        producer = make_producer(fault_run.stack.bootstrap, tansu=s.tansu)
        malformed: list[tuple[bytes, bytes]] = [
            (pseudonymise(person).encode(), raw) for person, raw in hostile_directory_people()
        ]
        malformed += [(b"", b'{"unit": "IT"}')]  # no person
        malformed += [(b"\xff\xfe", b'{"unit": "IT"}')]  # a key that is not UTF-8
        for key, raw in malformed:
            producer.send(s.topic_directory, key=key, value=raw).get(timeout=30)
        worker = fault_run.start_worker()
        for value in whole:
            key = b"no-value" if value is None else None  # Kafka needs a key or a value
            producer.send(s.topic_events, key=key, value=value).get(timeout=30)
        producer.close()
        fault_run.produce(lines, envelope_size=ENVELOPE_SIZE)
        try:
            fault_run.wait_drained(timeout_s=60)
        except RuntimeError as exc:  # the worker died: show why
            raise AssertionError(f"{exc}: {crashes(fault_run.logs())}") from None
        except TimeoutError as exc:  # show which partitions are behind
            raise AssertionError(f"{exc}: {lagging(fault_run)}") from None
        metrics = fault_run.metrics_text()
        deadline = time.monotonic() + 8  # the headcount timer runs every 5 s
        while "teilhabe_directory_headcount{" not in metrics and time.monotonic() < deadline:
            time.sleep(0.5)
            metrics = fault_run.metrics_text()
        alive = worker.poll() is None
        figures = fault_run.figures()
        dead = read_dead_letters(fault_run.stack.bootstrap, s.topic_deadletter)
        units = unit_rows(fault_run, [pseudonymise(p) for p, _ in hostile_directory_people()])
        log_dir = fault_run.stack.log_dir
    return {
        "alive": alive,
        "exit": worker.returncode,
        "crashes": crashes(fault_run.logs()),
        "expected_dead": expected_dead,
        "dead": dead,
        "metrics": metrics,
        "figures": figures,
        "units": units,
        "log_files": sorted(p for p in log_dir.rglob("*") if p.is_file()),
        "seconds": time.monotonic() - started,
    }


def lagging(run: FaultRun) -> list[str]:
    """``topic[partition] committed/end`` of every partition the group has not finished."""
    return [
        f"{topic}[{partition}] {committed}/{end}"
        for (topic, partition), (committed, end) in sorted(run.group_offsets().items())
        if committed < end
    ]


def crashes(log: str) -> list[str]:
    """Lines of a worker log that say why Faust crashed."""
    return [line for line in log.splitlines() if "Crashed reason=" in line]


def read_dead_letters(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of the dead-letter topic: value and headers."""
    return [
        {"value": m.value or b"", **{k: v.decode(errors="replace") for k, v in (m.headers or [])}}
        for m in read_records(bootstrap, topic)
    ]


def unit_rows(run: FaultRun, actors: list[str]) -> Counter[tuple[str, str]]:
    """(actor_unit, target_unit) of the events of ``actors`` in ClickHouse."""
    from pipeline.sinks.clickhouse import get_client

    assert all(re.fullmatch("[0-9a-f]{32}", a) for a in actors)  # safe to quote as they are
    listed = ",".join(f"'{a}'" for a in actors)
    client = get_client(run.settings)
    try:
        rows = client.query(
            f"SELECT actor_unit, target_unit, count() FROM {run.settings.clickhouse_database}"
            f".events FINAL WHERE actor_id IN ({listed}) GROUP BY 1, 2"
        ).result_rows
    finally:
        client.close()
    return Counter({(str(a), str(t)): int(n) for a, t, n in rows})


def test_worker_survives(run: dict[str, Any]) -> None:
    assert run["alive"] and not run["crashes"], f"worker exit {run['exit']}: {run['crashes']}"


def test_every_bad_input_is_a_dead_letter_with_its_bytes_and_reason(run: dict[str, Any]) -> None:
    got: Counter[Dead] = Counter(
        (d["reason"], d["value"], "envelope_index" in d) for d in run["dead"]
    )
    expected = Counter(run["expected_dead"])
    missing, extra = expected - got, got - expected
    assert not missing and not extra, (
        f"missing: {[(r, v[:80], e) for r, v, e in missing]}\n"
        f"unexpected: {[(r, v[:80], e) for r, v, e in extra]}"
    )
    assert all(re.fullmatch(r"teilhabe\.events\[\d+\]@\d+", d["source"]) for d in run["dead"])
    assert all(
        0 <= int(d["envelope_index"]) < ENVELOPE_SIZE for d in run["dead"] if "envelope_index" in d
    )


def test_all_good_events_reach_clickhouse(run: dict[str, Any], dataset: Dataset) -> None:
    good = dataset.events + hostile_directory_events()
    figures: Figures = run["figures"]
    by_reason = Counter(d["reason"] for d in run["dead"])
    report = Report("hostile input", faults=len(run["dead"]), events_in=len(good))
    report.notes.append(
        "dead_letters=" + ",".join(f"{r}:{n}" for r, n in sorted(by_reason.items()))
    )
    report.print(figures, oracle(good, dataset.units))
    assert figures.facts == figures.distinct == len(good)
    assert_equal_to_oracle(oracle(good, dataset.units), figures)


def test_malformed_directory_records_mean_unknown_units(run: dict[str, Any]) -> None:
    n = len(hostile_directory_events())
    assert run["units"] == {("unknown", "unknown"): n}


def test_metrics_count_dead_letters_by_reason(run: dict[str, Any]) -> None:
    text = run["metrics"]
    expected = Counter(reason for reason, _, _ in run["expected_dead"])
    topic = Counter(d["reason"] for d in run["dead"])
    for reason in INVALID_REASONS:
        scraped = metric_value(text, "teilhabe_events_invalid_total", f'reason="{reason}"')
        assert scraped == expected[reason] == topic[reason], reason
    assert metric_value(text, "teilhabe_dead_letters_total") == len(run["expected_dead"])


def test_headcount_leaves_malformed_directory_records_out(
    run: dict[str, Any], dataset: Dataset
) -> None:
    expected = Counter(dataset.units.values())
    records = [(p.encode(), orjson.dumps({"unit": u})) for p, u in dataset.units.items()]
    records += [(p.encode(), raw) for p, raw in hostile_directory_people()]
    assert directory_headcounts(records) == expected  # the pure helper, on the same records
    text = run["metrics"]
    got = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^teilhabe_directory_headcount\{unit="(.*)"\} (\S+)$', text, re.M)
    }
    assert got == {unit: float(n) for unit, n in expected.items()}


def test_no_raw_id_nor_the_key_in_any_log(run: dict[str, Any], dataset: Dataset) -> None:
    secrets = {TEST_KEY}
    for ev in dataset.events + hostile_directory_events():
        secrets.add(ev["actor_id"])
        if ev.get("target_actor_id"):
            secrets.add(ev["target_actor_id"])
    secrets |= set(dataset.units)  # person ids of the directory
    secrets |= {person for person, _ in hostile_directory_people()}
    secrets |= {"anna@example.org", "jonas@example.org", "oversize@example.org"}  # bad input
    files: list[Path] = run["log_files"]
    worker_logs = [p.read_text(errors="replace") for p in files if p.name.startswith("worker-")]
    assert worker_logs and all("level=DEBUG" in text for text in worker_logs), "not at DEBUG"
    found = {
        f"{p.name}: {secret}"
        for p in files
        for text in [p.read_text(errors="replace")]
        for secret in secrets
        if secret in text
    }
    assert not found, sorted(found)[:20]
