"""The flow-control fix: Faust's table recovery resumes stream flow twice at start; the second
resume must not drop events that were already delivered to a stream's queue."""

from __future__ import annotations

import asyncio

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from agents.consumer import KeepQueuesFlowControl


def queue_after(flow: FlowControlEvent, steps: list[str]) -> int:
    """Put 3 events into a queue managed by ``flow`` after ``steps``; return what is left."""

    async def run() -> int:
        q: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        for step in steps:
            if step == "put":
                for i in range(3):
                    q.put_nowait(i)
            else:
                getattr(flow, step)()
        return q.qsize()

    return asyncio.run(run())


def test_resume_while_flowing_keeps_delivered_events() -> None:
    steps = ["resume", "put", "resume"]  # recovery: resume, events flow, resume again
    assert queue_after(FlowControlEvent(), steps) == 0, "Faust's own event drops them"
    assert queue_after(KeepQueuesFlowControl(), steps) == 3


def test_resume_after_a_suspension_still_clears_stale_events() -> None:
    steps = ["resume", "put", "suspend", "resume"]  # a rebalance: old events are stale
    assert queue_after(KeepQueuesFlowControl(), steps) == 0
    flow = KeepQueuesFlowControl()
    assert not flow.is_active(), "starts suspended, as Faust's"
    flow.resume()
    assert flow.is_active()
