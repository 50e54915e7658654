"""What the CLI and the producers consume: the live event stream and the JSON-lines files."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from pipeline.dev.generator.behaviour import Simulator
from pipeline.dev.generator.organisation import Organisation


def live_events(
    org: Organisation, rate_per_s: float, clock: Callable[[], float] = time.time
) -> Iterator[dict[str, Any]]:
    """Endless event stream stamped "now", at a mean of ``rate_per_s`` events per second.

    Event times advance by exponential gaps from ``clock()`` at the start, but never lag behind
    ``clock()`` nor run more than a second ahead of it: the caller paces the stream (e.g.
    ``produce_events(rate_per_s=...)``). Same behaviour model as ``Organisation.events``,
    without joins/leaves; the idea campaign runs whenever ``spec.campaign`` is set, with status
    changes after minutes instead of days; ``drop_unit`` is thinned from ``drop_from`` (or from
    the start when None). Randomness is seeded from the spec's seed and the start time.
    """
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be > 0")
    spec = org.spec
    now = clock()
    start_ms = int(now * 1000)
    sim = Simulator(
        org, random.Random(f"live:{spec.seed}:{start_ms}"), f"{org.tag}-L{start_ms:x}-", 120_000
    )
    return sim.run_live(rate_per_s, clock, now)


def write_jsonl(
    org: Organisation,
    events_path: Path | str,
    directory_path: Path | str,
    limit: int | None = None,
) -> tuple[int, int]:
    """Write the events and the directory as JSON lines; returns (events, people) written.

    ``limit`` stops after that many events (the first ``limit`` of the full history, so a
    shorter file is a prefix of a longer one). Streams: memory does not grow with the
    number of events, only with the organisation.
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    n_people = 0
    dumps = orjson.dumps
    with open(directory_path, "wb") as fh:
        chunk: list[bytes] = []
        for rec in org.directory_records():
            chunk.append(dumps(rec))
            n_people += 1
            if len(chunk) >= 4096:
                fh.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            fh.write(b"\n".join(chunk) + b"\n")
    n_events = 0
    events = org.events()
    if limit is not None:
        events = islice(events, limit)
    with open(events_path, "wb") as fh:
        chunk = []
        for ev in events:
            chunk.append(dumps(ev))
            if len(chunk) >= 4096:
                fh.write(b"\n".join(chunk) + b"\n")
                n_events += len(chunk)
                chunk = []
        if chunk:
            fh.write(b"\n".join(chunk) + b"\n")
            n_events += len(chunk)
    return n_events, n_people
