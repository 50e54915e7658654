"""What the embedded broker's one-record-per-batch setting costs (``make bench-batches``).

The dev path sets Faust's ``producer_max_batch_size=1`` and kafka-python's ``batch_size=1``
for the embedded Tansu broker (its ListOffsets quirk, docs/design.md); Apache Kafka gets
full batches. This sends the same events to the embedded broker through aiokafka, as
envelopes of 500 and as single events, each with one record per batch and with 16 KB
batches, and prints wall time, the client's CPU time and events/s side by side. An envelope
is larger than a 16 KB batch anyway, so for envelopes the setting costs next to nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throughput import create, event_lines  # noqa: E402
from pipeline.contract.records import Envelope  # noqa: E402
from pipeline.dev.broker import EmbeddedBroker  # noqa: E402
from pipeline.sources.producer import envelopes  # noqa: E402

N_EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))
N_SINGLE = int(os.environ.get("BENCH_SINGLE", "20000"))


async def send(
    bootstrap: str, topic: str, values: list[bytes], batch_bytes: int
) -> tuple[float, float]:
    """(wall s, client CPU s) to send ``values`` and have each confirmed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        max_batch_size=batch_bytes,
        linger_ms=5,
        max_request_size=2_000_000,
    )
    await producer.start()
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        sent = [await producer.send(topic, value) for value in values]
        await asyncio.gather(*sent)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await producer.stop()


def main() -> None:
    lines = event_lines(N_EVENTS)
    packed = [e.value for e in envelopes(iter(lines), 500) if isinstance(e, Envelope)]
    single = lines[:N_SINGLE]
    cases = (
        ("envelopes of 500, 1 record/batch", packed, N_EVENTS, 1),
        ("envelopes of 500, 16 KB batches", packed, N_EVENTS, 16_384),
        ("single events, 1 record/batch", single, N_SINGLE, 1),
        ("single events, 16 KB batches", single, N_SINGLE, 16_384),
    )
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(Path(tmp)) as broker:
        for i, (label, values, events, batch_bytes) in enumerate(cases):
            topic = f"bench.batches.{i}"
            create(broker.bootstrap, topic, 4)
            wall, cpu = asyncio.run(send(broker.bootstrap, topic, values, batch_bytes))
            print(
                f"{label:36} wall {wall:6.2f} s  client CPU {cpu:6.2f} s  "
                f"{events / wall:>10,.0f} events/s",
                flush=True,
            )


if __name__ == "__main__":
    main()
