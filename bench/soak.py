"""Soak run (``make soak``; opt-in, not in ``make test``).

On the embedded broker and chDB: measure the pipeline's maximum rate with one worker, then run
generated load at half that rate for SOAK_MINUTES (default 30) with a ``kill -9`` of the worker
every SOAK_KILL_EVERY_S (default 300) seconds and an immediate restart. Every SOAK_SAMPLE_S
(default 30) it prints the worker's RSS, the consumer lag (offsets not yet committed over the
input and activity topics) and the events sent. At the end it marks the end of the input,
waits until everything is committed and compares ClickHouse with a streaming oracle (a plain
recomputation over the events sent), figure by figure.

Memory is judged per worker lifetime: RSS one minute after a (re)start against RSS just before
its kill. Flat = no growth once the first windows have closed.
Variables: SOAK_MINUTES, SOAK_KILL_EVERY_S, SOAK_SAMPLE_S, SOAK_RATE (events/s; skips the
measurement), SOAK_DIR (keep the run's data there; default a temporary directory).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.contract.pseudonym import Pseudonymiser  # noqa: E402
from pipeline.dev import generator as gen  # noqa: E402
from pipeline.dev.devstack import DevStack, consumed_fraction, wait_until_drained  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from pipeline.sources.producer import (  # noqa: E402
    make_producer,
    produce_directory,
    produce_end_of_input,
    produce_events,
)
from tests.faults.harness import (  # noqa: E402
    GRACE_S,
    WINDOW_S,
    WindowOracle,
    differences,
    read_figures,
    rss_kb,
)

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
KILL_EVERY_S = float(os.environ.get("SOAK_KILL_EVERY_S", "300"))
SAMPLE_S = float(os.environ.get("SOAK_SAMPLE_S", "30"))
FIXED_RATE = float(os.environ.get("SOAK_RATE", "0"))
MEASURE_EVENTS = 60_000
ENV = {"TEILHABE_IDLE_CLOSE_MODE": "end_of_input", "TEILHABE_SINK_FLUSH_INTERVAL_S": "1"}


def organisation() -> gen.Organisation:
    """A busy organisation over years of event time (the soak never runs out of events)."""
    # event time from ~700 days ago up to yesterday: inside the facts' retention (730 days)
    # and never in the future (the contract rejects that)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    spec = gen.OrgSpec(
        seed=99, start=today - timedelta(days=700), days=699, events_per_user_day=100
    )
    return gen.Organisation(spec)


def lines_until(
    events: Iterator[dict[str, Any]], stop: threading.Event, oracle: WindowOracle
) -> Iterator[bytes]:
    """Event lines until ``stop`` is set, each counted by the oracle as it is sent."""
    for ev in events:
        if stop.is_set():
            return
        oracle.add(ev)
        yield orjson.dumps(ev)


def settings_for(root: Path) -> Any:
    """Settings of a soak run under ``root`` (also exported for the worker processes)."""
    values = {
        "TEILHABE_DATA_DIR": str(root / "var"),
        "TEILHABE_CLICKHOUSE_DSN": f"chdb://{root / 'var' / 'clickhouse'}",
        "TEILHABE_PSEUDONYM_KEY": "soak-key-0123456789abcdef0123456789",
        "TEILHABE_WINDOW_S": str(WINDOW_S),
        "TEILHABE_GRACE_S": str(GRACE_S),
        "TEILHABE_MIN_GROUP_SIZE": "1",
        "TEILHABE_METRICS_PORT": "0",
    }
    for key in [k for k in os.environ if k.startswith("TEILHABE_")]:
        del os.environ[key]
    os.environ.update(values)
    return load_settings()


def send_directory(bootstrap: str, settings: Any, org: gen.Organisation) -> Any:
    """A producer for the run, after it has sent the organisation's directory."""
    producer = make_producer(bootstrap, tansu=settings.tansu)
    produce_directory(
        producer,
        settings.topic_directory,
        org.directory_records(),
        Pseudonymiser(settings.read_pseudonym_key()),
    )
    return producer


def measure_max_rate(root: Path) -> float:
    """Events/s one worker processes end to end (produce a burst, time until committed)."""
    settings = settings_for(root)
    org = organisation()
    events = org.events()
    warmup = [orjson.dumps(ev) for ev, _ in zip(events, range(2_000), strict=False)]
    lines = [orjson.dumps(ev) for ev, _ in zip(events, range(MEASURE_EVENTS), strict=False)]
    with DevStack(settings, extra_env=ENV) as stack:
        producer = send_directory(stack.bootstrap, settings, org)
        stack.start_worker()
        produce_events(producer, settings.topic_events, warmup, envelope_size=100)
        # warm: the worker has started, joined and processed something (its windows stay
        # open, so wait for the input offsets only)
        while consumed_fraction(stack.bootstrap, settings)[0] < 2_000 // 100:
            time.sleep(0.2)
        started = time.monotonic()
        produce_events(producer, settings.topic_events, lines, envelope_size=100)
        produce_end_of_input(producer, settings.topic_events)
        producer.close()
        wait_until_drained(stack.bootstrap, settings, 900, workers=stack.workers)
        return len(lines) / (time.monotonic() - started)


def main() -> None:
    base = Path(os.environ.get("SOAK_DIR") or tempfile.mkdtemp(prefix="teilhabe-soak-"))
    print(f"soak: data under {base}", flush=True)
    if FIXED_RATE:
        max_rate = FIXED_RATE * 2
    else:
        max_rate = measure_max_rate(base / "measure")
        print(f"measured maximum: {max_rate:,.0f} events/s (1 worker, {MEASURE_EVENTS} events)")
    rate = max_rate / 2
    settings = settings_for(base / "run")
    org = organisation()
    units = {r["person_id"]: r["unit"] for r in org.directory_records()}
    oracle = WindowOracle(units, dedup=False)  # generated ids are unique
    stop = threading.Event()
    print(f"soak: {MINUTES:.0f} min at {rate:,.0f} events/s, kill -9 every {KILL_EVERY_S:.0f} s")
    with DevStack(settings, extra_env=ENV) as stack:
        producer = send_directory(stack.bootstrap, settings, org)
        sender = threading.Thread(
            target=produce_events,
            args=(producer, settings.topic_events, lines_until(org.events(), stop, oracle)),
            kwargs={"envelope_size": 100, "rate_per_s": rate},
            daemon=True,
        )
        started = time.monotonic()
        sender.start()
        worker = stack.start_worker()
        worker_started = started
        lifetimes: list[tuple[int, int]] = []  # (RSS at 60 s, RSS before the kill) in kB
        rss_60 = 0
        next_sample = started + SAMPLE_S
        next_kill = started + KILL_EVERY_S
        end = started + MINUTES * 60
        print(" elapsed_s  worker_rss_mb  clickhouse_rss_mb  lag_offsets  events_sent")
        while time.monotonic() < end:
            time.sleep(1)
            now = time.monotonic()
            if worker.poll() is not None:
                tail = (stack.log_dir / f"worker-{len(stack.workers) - 1}.log").read_text()
                print(f"worker exited on its own (code {worker.returncode}):\n{tail[-2000:]}")
                sys.exit(2)
            if not rss_60 and now - worker_started >= 60:
                rss_60 = rss_kb(worker.pid)
            if now >= next_sample:
                next_sample += SAMPLE_S
                done, total = consumed_fraction(stack.bootstrap, settings)
                ch_pid = stack.clickhouse.pid if stack.clickhouse else 0
                print(
                    f"{now - started:10.0f}  {rss_kb(worker.pid) / 1024:13.0f}  "
                    f"{rss_kb(ch_pid) / 1024:17.0f}  {total - done:11d}  {oracle.n:11d}",
                    flush=True,
                )
            if now >= next_kill and now < end - 60:
                next_kill += KILL_EVERY_S
                lifetimes.append((rss_60, rss_kb(worker.pid)))
                worker.send_signal(signal.SIGKILL)
                worker.wait(30)
                print(f"{now - started:10.0f}  kill -9 worker pid={worker.pid}; restarting")
                worker = stack.start_worker()
                worker_started, rss_60 = time.monotonic(), 0
        stop.set()
        sender.join(120)
        produce_end_of_input(producer, settings.topic_events)
        producer.close()
        print(f"input ended after {oracle.n:,} events; waiting until everything is committed")
        wait_until_drained(stack.bootstrap, settings, 1800, workers=stack.workers)
        lifetimes.append((rss_60, rss_kb(worker.pid)))
        peak = rss_kb(worker.pid, "VmHWM")
        actual = read_figures(settings)
    expected = oracle.figures()
    diff = differences(expected, actual, limit=10**9)
    print("\nRSS per worker lifetime (MB at 60 s -> before kill/end):")
    for i, (a, b) in enumerate(lifetimes):
        print(f"  lifetime {i}: {a / 1024:.0f} -> {b / 1024:.0f}")
    print(f"peak RSS of the last worker: {peak / 1024:.0f} MB")
    print(
        f"oracle: events sent {oracle.n:,}, in ClickHouse {actual.facts:,} facts and "
        f"{actual.total_events():,} in windows, differences {len(diff)}"
    )
    for line in diff[:20]:
        print("  " + line)
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
