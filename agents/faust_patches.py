"""Every internal of faust-streaming, mode-streaming and aiokafka the agents patch or rely on.

The pipeline's delivery guarantees (docs/design.md "Faust and at-least-once",
docs/reliability.md) depend on a few overrides of Faust internals. They are exact to the
versions pinned in pyproject.toml, so each one is listed here with the upstream code it
replaces or relies on, why, the upstream issue, and a fingerprint of that upstream code as
installed. ``tests/unit/test_faust_patches.py`` recomputes every fingerprint (a canary per
entry), checks the installed versions against the pins, and checks that every override in our
subclasses of Faust/mode classes, and every upstream private the agents touch, is listed here.

The patch code stays where it is used (``agents.consumer``, ``agents.app``, ...); entries name
it by dotted path. When a canary fails after an upgrade, read the upstream diff of the
``sources``, re-check the ``recheck`` note, adapt the patch (or drop it when upstream fixed the
defect), then put the new fingerprint here (``python -m agents.faust_patches`` prints them).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import io
import textwrap
import tokenize
from dataclasses import dataclass
from typing import Any

#: The distributions whose internals are patched; pyproject.toml pins each exactly.
PINNED = ("faust-streaming", "mode-streaming", "aiokafka")

FAUST_ISSUES = "https://github.com/faust-streaming/faust/issues/"
FAUST_PULLS = "https://github.com/faust-streaming/faust/pull/"


@dataclass(frozen=True)
class Patch:
    """One patched or relied-on upstream internal."""

    name: str
    #: ``override`` (a subclass method replacing upstream's), ``install`` (our class put in
    #: place of upstream's), ``relies-on`` (a private we read or call), ``avoids`` (an upstream
    #: API we deliberately do not use because of a defect)
    kind: str
    target: str  # dotted path of the upstream object
    ours: tuple[str, ...]  # dotted paths of our code that patches or relies on it
    why: str
    upstream_issue: str  # link, or "no upstream issue filed: <the defect>"
    sources: tuple[str, ...]  # upstream objects whose source the fingerprint covers
    fingerprint: str  # ``fingerprint(sources)`` with the pinned versions installed
    recheck: str  # what to verify when the fingerprint changes
    #: upstream private names (``_x``) our code reads, calls or sets under this entry
    privates: tuple[str, ...] = ()


_CONSUMER = "faust.transport.consumer.Consumer"
_AIOKAFKA_DRIVER = "faust.transport.drivers.aiokafka"

PATCHES: tuple[Patch, ...] = (
    Patch(
        name="consumer-getmany",
        kind="override",
        target=f"{_CONSUMER}.getmany",
        ours=("agents.consumer.NoDropConsumer.getmany",),
        why="Upstream stops handing out a fetched batch (flow suspended, generation changed, "
        "partition inactive) after aiokafka's position moved past it and never seeks back: "
        "those records are never processed. Ours seeks back to the first record not handed out.",
        upstream_issue="no upstream issue filed for the mid-batch break: getmany breaks out of "
        "a fetched batch without seeking back (only a batch fetched with the flow inactive is "
        f"sought back, {FAUST_PULLS}256); closest: {FAUST_ISSUES}88 (closed: fixed only for "
        "buffered partitions)",
        sources=(f"{_CONSUMER}.getmany",),
        fingerprint="5e5d42f3fea04c29",
        recheck="Does upstream still break out of the batch without a seek? Our getmany is a "
        "rewrite of it: port any new upstream logic (scheduler, generation check, monitor).",
    ),
    Patch(
        name="consumer-callback",
        kind="override",
        target=f"{_CONSUMER}._drain_messages",
        ours=("agents.consumer.NoDropConsumer.__init__",),
        why="The drain loop races the delivery against suspend_flow, cancels the loser and "
        "still marks its offset read (gap tracking then commits past it). Ours wraps "
        "self.callback to remember a cancelled delivery; getmany seeks back to it.",
        upstream_issue="no upstream issue filed: _drain_messages calls set_read_offset after "
        "wait_first(callback(message), suspend_flow.wait()) even when the callback was "
        f"cancelled; related: {FAUST_ISSUES}229 (the same wait_first call, a hang)",
        sources=(f"{_CONSUMER}._drain_messages", f"{_CONSUMER}.__init__"),
        fingerprint="d146ec565eaf4c02",
        recheck="Is self.callback still read once at the start of _drain_messages (so the "
        "wrapper set in __init__ is the one called), still raced against suspend_flow, and "
        "the offset still marked read after a cancelled delivery?",
        privates=("_drain_messages",),
    ),
    Patch(
        name="consumer-wait-next-records",
        kind="relies-on",
        target=f"{_CONSUMER}._wait_next_records",
        ours=("agents.consumer.NoDropConsumer.getmany",),
        why="Our getmany fetches through this private, as upstream's getmany does.",
        upstream_issue="no upstream issue filed: private API, no public way to fetch a batch",
        sources=(f"{_CONSUMER}._wait_next_records",),
        fingerprint="09e9c52377e8393b",
        recheck="Same signature and return value (records by TP, active partitions or None)?",
        privates=("_wait_next_records",),
    ),
    Patch(
        name="consumer-buffered-partitions",
        kind="relies-on",
        target=f"{_CONSUMER}._buffered_partitions",
        ours=("agents.consumer.NoDropConsumer.getmany",),
        why="Records of a partition paused for a full stream buffer are still handed out, as "
        "upstream's getmany does.",
        upstream_issue=f"{FAUST_ISSUES}88 (why upstream has the set)",
        sources=(f"{_CONSUMER}._get_active_partitions", f"{_CONSUMER}._reset_state"),
        fingerprint="4b746e71ac543a85",
        recheck="Is the set still maintained by _get_active_partitions and reset on restart?",
        privates=("_buffered_partitions",),
    ),
    Patch(
        name="consumer-to-message",
        kind="relies-on",
        target=f"{_AIOKAFKA_DRIVER}.Consumer._to_message",
        ours=("agents.consumer.NoDropConsumer.getmany",),
        why="Our getmany converts aiokafka records to Faust messages as upstream's does.",
        upstream_issue="no upstream issue filed: private API",
        sources=(f"{_AIOKAFKA_DRIVER}.Consumer._to_message",),
        fingerprint="741ba341cb80bed9",
        recheck="Same signature (tp, record) -> ConsumerMessage?",
        privates=("_to_message",),
    ),
    Patch(
        name="consumer-generation-id",
        kind="relies-on",
        target="faust.types.app.AppT.consumer_generation_id",
        ours=("agents.consumer.NoDropConsumer.getmany",),
        why="A rebalance during a hand-out ends it (as upstream's getmany does); set by the "
        "rebalance listener.",
        upstream_issue=f"{FAUST_PULLS}234 (why upstream's getmany compares it)",
        sources=(f"{_AIOKAFKA_DRIVER}.ConsumerRebalanceListener.on_partitions_assigned",),
        fingerprint="9feb52893c894cf6",
        recheck="Is app.consumer_generation_id still set when partitions are assigned?",
    ),
    Patch(
        name="consumer-fetch-trace",
        kind="relies-on",
        target="aiokafka.consumer.consumer.AIOKafkaConsumer._subscription",
        ours=("agents.consumer.NoDropConsumer._trace_fetch",),
        why="DEBUG only: the fetch state (position, high watermark, paused) of each assigned "
        "partition, read via the consumer thread's aiokafka consumer.",
        upstream_issue="no upstream issue filed: aiokafka exposes no per-partition fetch state",
        sources=(
            f"{_AIOKAFKA_DRIVER}.AIOKafkaConsumerThread._ensure_consumer",
            "aiokafka.consumer.consumer.AIOKafkaConsumer.assignment",
            "aiokafka.consumer.subscription_state.SubscriptionState.subscription",
            "aiokafka.consumer.subscription_state.Assignment.state_value",
        ),
        fingerprint="d9ecbfb6ec40a3a7",
        recheck="_thread._ensure_consumer()._subscription.subscription.assignment.state_value"
        "(tp) still there (a failure only costs the trace: it is caught)?",
        privates=("_thread", "_ensure_consumer", "_subscription"),
    ),
    Patch(
        name="transport-consumer-class",
        kind="install",
        target="faust.transport.base.Transport.Consumer",
        ours=("agents.app.create_app", "agents.consumer.NoDropConsumer"),
        why="app.transport.Consumer = NoDropConsumer: the transport builds its consumer from "
        "this class attribute.",
        upstream_issue="no upstream issue filed: no setting for the consumer class",
        sources=("faust.transport.base.Transport.create_consumer",),
        fingerprint="36e0a346bb2176ff",
        recheck="Does create_consumer still instantiate self.Consumer?",
    ),
    Patch(
        name="flow-control-resume",
        kind="override",
        target="mode.utils.queues.FlowControlEvent.resume",
        ours=("agents.consumer.KeepQueuesFlowControl.resume",),
        why="resume() clears every stream queue; table recovery resumes twice at start, so the "
        "second resume dropped events already delivered and marked read. Ours clears only when "
        "the flow was suspended.",
        upstream_issue=f"{FAUST_ISSUES}596",
        sources=(
            "mode.utils.queues.FlowControlEvent.__init__",
            "mode.utils.queues.FlowControlEvent.resume",
            "mode.utils.queues.FlowControlEvent.is_active",
            "faust.tables.recovery.Recovery._resume_streams",
            "faust.tables.recovery.Recovery.on_recovery_completed",
        ),
        fingerprint="4b67fbf9238d91e0",
        recheck="Still _resume/_suspend events, is_active() = not suspended, and recovery "
        "resuming the flow more than once? If upstream stopped clearing on an unsuspended "
        "resume, drop KeepQueuesFlowControl.",
        privates=("_resume",),
    ),
    Patch(
        name="app-flow-control",
        kind="override",
        target="faust.app.base.App.flow_control",
        ours=("agents.app.TeilhabeApp.flow_control",),
        why="Installs KeepQueuesFlowControl as the app's flow control event.",
        upstream_issue=f"{FAUST_ISSUES}596",
        sources=("faust.app.base.App.flow_control",),
        fingerprint="c1147595dbd7a454",
        recheck="Is app.flow_control still a cached FlowControlEvent built with loop=?",
    ),
    Patch(
        name="app-on-stop",
        kind="override",
        target="faust.app.base.App.on_stop",
        ours=("agents.app.TeilhabeApp.on_stop",),
        why="Flushes partial batches and closed windows and commits while agents, consumer and "
        "producer still run; relies on mode calling on_stop before stopping the children.",
        upstream_issue="no upstream issue filed: on_stop is the documented hook (call super); "
        "the ordering is mode's Service.stop",
        sources=("faust.app.base.App.on_stop", "mode.services.Service.stop"),
        fingerprint="0bdbe90a80cf3a89",
        recheck="Does Service.stop still await on_stop before _stop_children, and App.on_stop "
        "still stop the consumer first?",
    ),
    Patch(
        name="app-consumer-private",
        kind="relies-on",
        target="faust.app.base.App._consumer",
        ours=(
            "agents.app.TeilhabeApp._finish_work",
            "agents.leader.Leadership._holds_partition_0",
        ),
        why="The consumer if it exists: the public app.consumer would create one.",
        upstream_issue="no upstream issue filed: no public accessor that does not create it",
        sources=("faust.app.base.App.consumer",),
        fingerprint="3659b73e7a985f25",
        recheck="Is the consumer still cached in App._consumer (None until created)?",
        privates=("_consumer",),
    ),
    Patch(
        name="globaltable-changelog-name",
        kind="override",
        target="faust.tables.base.Collection._changelog_topic_name",
        ours=("agents.app.DirectoryTable._changelog_topic_name",),
        why="The assignor looks a global table's changelog up by the conventional name even "
        "with changelog_topic set: assignment fails silently, the worker hangs before ready.",
        upstream_issue=f"{FAUST_ISSUES}296",
        sources=(
            "faust.tables.base.Collection._changelog_topic_name",
            "faust.assignor.partition_assignor.PartitionAssignor._global_table_standby_assignments",
        ),
        fingerprint="934263b6eba49a00",
        recheck="Does the assignor still call table._changelog_topic_name()? If it uses "
        "changelog_topic_name (the real topic), drop the override.",
        privates=("_changelog_topic_name",),
    ),
    Patch(
        name="globaltable-apply-changelog-batch",
        kind="override",
        target="faust.tables.base.Collection.apply_changelog_batch",
        ours=("agents.app.DirectoryTable.apply_changelog_batch",),
        why="Reports the keys of each changelog batch to the directory mirror after applying "
        "it as upstream does.",
        upstream_issue="no upstream issue filed: Faust has no change callback for a table fed "
        "by its changelog",
        sources=(
            "faust.tables.base.Collection.apply_changelog_batch",
            "faust.stores.memory.Store.apply_changelog_batch",
        ),
        fingerprint="d9ffe5542adef625",
        recheck="Is every changelog record (live ones too) still applied through this method?",
    ),
    Patch(
        name="conf-globaltable-class",
        kind="install",
        target="faust.app.base.App.GlobalTable",
        ours=("agents.app.create_app", "agents.app.DirectoryTable"),
        why="app.conf.GlobalTable = DirectoryTable: app.GlobalTable builds the directory table "
        "from this setting.",
        upstream_issue="no upstream issue filed: a public setting, listed for the override",
        sources=("faust.app.base.App.GlobalTable",),
        fingerprint="bf19c59398888987",
        recheck="Does App.GlobalTable still instantiate conf.GlobalTable?",
    ),
    Patch(
        name="stream-take-events",
        kind="avoids",
        target="faust.streams.Stream.take_events",
        ours=("agents.batching.EventBatcher",),
        why="take_events/noack_take's background buffer let events slip between two batches "
        "(offsets 100-106 never processed); our batcher has no background buffer.",
        upstream_issue="no upstream issue filed: events arriving while take_events/noack_take "
        f"hands a batch on are lost; related: {FAUST_ISSUES}189",
        sources=("faust.streams.Stream.take_events", "faust.streams.Stream.noack_take"),
        fingerprint="1f28469f5a19f28b",
        recheck="Does upstream's buffering still lose events between batches? If fixed, "
        "EventBatcher could go back to take_events.",
    ),
    Patch(
        name="topic-send-attach",
        kind="avoids",
        target="faust.topics.Topic.send",
        ours=("agents.delivery.Delivery",),
        why="Without force=True a send inside an agent is attached to the stream's current "
        "event and published at its commit: another partition's offset could be committed "
        "first (agents/ingest.py).",
        upstream_issue="no upstream issue filed: attachments tie a send to one input "
        "partition's offset while a batch spans several",
        sources=("faust.topics.Topic.send",),
        fingerprint="ee33def0815dc68b",
        recheck="Does force=True still bypass the attachments?",
    ),
)


def resolve(dotted: str) -> Any:
    """The object at ``dotted`` (module path, then attributes; class attributes unbound)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            owner = obj
            obj = inspect.getattr_static(owner, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _function_of(obj: Any) -> Any:
    """The function behind a property, mode's cached_property or a static/class method."""
    for attr in ("fget", "_cached_property__get", "__func__"):
        inner = getattr(obj, attr, None)
        if inner is not None:
            return inner
    return obj


def normalised_source(obj: Any) -> str:
    """Source of ``obj`` as its tokens: comments, blank lines and layout do not count."""
    return normalise(inspect.getsource(_function_of(obj)))


def normalise(source: str) -> str:
    """The tokens of ``source`` joined by single spaces (no comments, indentation, newlines)."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    readline = io.StringIO(textwrap.dedent(source)).readline
    return " ".join(
        t.string
        for t in tokenize.generate_tokens(readline)
        if t.type not in skip and t.type != tokenize.ENDMARKER
    )


def fingerprint_of(named_sources: dict[str, str]) -> str:
    """sha256 (first 16 hex digits) over the normalised sources, keyed by dotted path."""
    digest = hashlib.sha256()
    for path in sorted(named_sources):
        digest.update(f"{path}\n{normalise(named_sources[path])}\n".encode())
    return digest.hexdigest()[:16]


def fingerprint(sources: tuple[str, ...]) -> str:
    """The fingerprint of the installed upstream code at ``sources``."""
    return fingerprint_of({p: inspect.getsource(_function_of(resolve(p))) for p in sources})


def check(patch: Patch, actual: str | None = None) -> str | None:
    """None when the upstream code is as patched; else what to re-check."""
    actual = fingerprint(patch.sources) if actual is None else actual
    if actual == patch.fingerprint:
        return None
    return (
        f"upstream code under the patch {patch.name!r} changed "
        f"(fingerprint {actual}, registered {patch.fingerprint}): {patch.target} is "
        f"{patch.kind} by {', '.join(patch.ours)}. Read the upstream diff of "
        f"{', '.join(patch.sources)}. Re-check: {patch.recheck} Then update the fingerprint "
        "in agents/faust_patches.py (python -m agents.faust_patches)."
    )


if __name__ == "__main__":
    for entry in PATCHES:
        print(f"{entry.name}: {fingerprint(entry.sources)}")
