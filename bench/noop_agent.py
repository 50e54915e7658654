"""A no-op Faust agent for the benchmark baseline (b): counts messages, then exits.

Usage: python bench/noop_agent.py BOOTSTRAP TOPIC N  -> prints "elapsed_s=<float>"
"""

from __future__ import annotations

import os
import sys
import time

import faust


def main() -> None:
    bootstrap, topic_name, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = faust.App(
        "bench-noop",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6,
        broker_heartbeat_interval=2,
    )
    topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw", internal=False)
    state = {"n": 0, "t0": 0.0}

    @app.agent(topic)
    async def noop(stream):  # type: ignore[no-untyped-def]
        async for _value in stream:
            if state["n"] == 0:
                state["t0"] = time.perf_counter()
            state["n"] += 1
            if state["n"] >= expected:
                print(f"elapsed_s={time.perf_counter() - state['t0']:.4f}", flush=True)
                os._exit(0)  # the figure is out; no graceful stop needed for a benchmark

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
