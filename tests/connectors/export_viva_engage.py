"""Write contract events of the synthetic organisation as a Viva Engage network data export.

``write_viva_engage_export`` lays the events out as Microsoft documents the export (a ZIP of
one CSV per model): ``Users.csv`` (everyone, ``department`` = unit, ``joined_at`` /
``deleted_at`` for people who join or leave in the period), ``Groups.csv`` (one group per
space), ``Messages.csv`` (rows shuffled: the export is not ordered), plus ``log.txt`` and
``request.txt``. ``viva_engage_expressible`` gives the events such an export can express, in
the form ``pipeline.sources.connectors.viva_engage.read`` gives them back: the reader's oracle. Both
come from one plan:

* ``post_created`` -> a message without ``replied_to_id``; ``reply_created`` -> a message with
  ``replied_to_id`` = the parent and ``thread_id`` = the root (target = the parent's sender)
* ``mention`` -> a new message whose body holds ``[[user:ID]]``: read back as ``post_created``
  plus ``mention``, also when the person mentions themself (the reader keeps self-mentions)
* ``member_joined`` / ``member_left`` -> ``joined_at`` / ``deleted_at`` (space lost)
* views, reactions, shares and idea events are dropped (the export has no such thing)
* times lose their milliseconds (the export writes seconds)

Every message body carries ``SECRET`` so that a privacy test can look for it in the events.
"""

from __future__ import annotations

import csv
import io
import random
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.sources.connectors.base import iso

PLATFORM = "viva-engage"
SECRET = "GEHEIM"
MESSAGE_COLUMNS = (
    "id",
    "replied_to_id",
    "thread_id",
    "conversation_id",
    "group_id",
    "group_name",
    "participants",
    "in_private_group",
    "in_private_conversation",
    "sender_id",
    "sender_type",
    "sender_name",
    "sender_email",
    "body",
    "api_url",
    "attachments",
    "deleted_by_id",
    "deleted_by_type",
    "created_at",
    "deleted_at",
)
USER_COLUMNS = (
    "id",
    "name",
    "email",
    "job_title",
    "location",
    "department",
    "api_url",
    "deleted_by_id",
    "deleted_by_type",
    "joined_at",
    "deleted_at",
    "suspended_by_id",
    "suspended_by_type",
    "suspended_at",
    "guid",
    "state",
)
GROUP_COLUMNS = (
    "id",
    "name",
    "description",
    "private",
    "deleted",
    "creator_id",
    "creator_type",
    "created_at",
    "updated_at",
    "api_url",
)
FIRST_MESSAGE = 4_000_000_001
FIRST_USER = 1_500_000_001
FIRST_GROUP = 90_001


def _second(ts: str) -> datetime:
    """A contract time cut to whole seconds (what the export keeps)."""
    return datetime.fromisoformat(ts).replace(microsecond=0).astimezone(UTC)


def _stamp(ts: datetime, n: int) -> str:
    """Both documented time forms, alternating: ``... UTC`` and ISO 8601 with ``Z``."""
    if n % 3 == 0:
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class VivaPlan:
    """The export as rows and the events it expresses."""

    users: list[dict[str, str]] = field(default_factory=list)
    groups: list[dict[str, str]] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    expected: list[dict[str, Any]] = field(default_factory=list)


def plan_viva_engage(events: Iterable[dict[str, Any]], people: dict[str, str]) -> VivaPlan:
    """Rows of the export and the events read back, from one pass over ``events``."""
    events = list(events)
    plan = VivaPlan()
    persons = sorted(set(people) | {e["actor_id"] for e in events})
    uid = {p: str(FIRST_USER + i) for i, p in enumerate(persons)}
    spaces = sorted({e["space_id"] for e in events if e.get("space_id")})
    gid = {s: str(FIRST_GROUP + i) for i, s in enumerate(spaces)}
    joined: dict[str, datetime] = {}
    left: dict[str, datetime] = {}
    mid: dict[str, str] = {}  # generator content id -> message id
    n = 0

    def expect(kind: str, actor: str, ts: datetime, **fields: Any) -> None:
        row = {"event_type": kind, "occurred_at": iso(ts), "actor_id": actor, "platform": PLATFORM}
        row.update((k, v) for k, v in fields.items() if v is not None)
        plan.expected.append(row)

    for e in events:
        kind, actor = e["event_type"], e["actor_id"]
        ts = _second(e["occurred_at"])
        if kind == "member_joined":
            joined.setdefault(actor, ts)
            expect(kind, actor, ts)
            continue
        if kind == "member_left":
            left.setdefault(actor, ts)
            expect(kind, actor, ts)
            continue
        if kind not in ("post_created", "reply_created", "mention"):
            continue
        n += 1
        message_id = str(FIRST_MESSAGE + n)
        space = e.get("space_id")
        cid = f"{PLATFORM}:{message_id}"
        row = {
            "id": message_id,
            "group_id": gid.get(space, "") if space else "",
            "group_name": space or "",
            "participants": f"user:{uid[actor]}",
            "in_private_group": "false",
            "in_private_conversation": "false" if space else "true",
            "sender_id": uid[actor],
            "sender_type": "user",
            "sender_name": f"Person {uid[actor]}",
            "sender_email": actor,
            "body": f'{SECRET} {n}: "Zitat", Komma; Umlaute äöü\nzweite Zeile',
            "api_url": f"https://www.yammer.com/api/v1/messages/{message_id}",
            "attachments": f"uploadedfile:{n}" if n % 7 == 0 else "",
            "created_at": _stamp(ts, n),
        }
        if kind == "reply_created":
            parent, root = mid[e["parent_content_id"]], mid[e["root_content_id"]]
            row.update(replied_to_id=parent, thread_id=root, conversation_id=root)
            expect(
                kind,
                actor,
                ts,
                space_id=space,
                target_actor_id=e["target_actor_id"],
                content_id=cid,
                parent_content_id=f"{PLATFORM}:{parent}",
                root_content_id=f"{PLATFORM}:{root}",
            )
        else:
            row.update(thread_id=message_id, conversation_id=message_id)
            expect("post_created", actor, ts, space_id=space, content_id=cid, root_content_id=cid)
        if kind == "mention":
            target = e["target_actor_id"]
            row["body"] = f"{SECRET} {n} Hallo [[user:{uid[target]}]], schau mal"
            expect(
                "mention",
                actor,
                ts,
                space_id=space,
                target_actor_id=target,
                content_id=cid,
                root_content_id=cid,
            )
        else:
            mid[e["content_id"]] = message_id
        plan.messages.append(row)
    for p in persons:
        row = {
            "id": uid[p],
            "name": f"Person {uid[p]}",
            "email": p,
            "job_title": "Fachkraft",
            "location": "Hamburg",
            "department": people.get(p, ""),
            "api_url": f"https://www.yammer.com/api/v1/users/{uid[p]}",
            "guid": f"guid-{uid[p]}",
            "state": "active",
        }
        if p in joined:
            row["joined_at"] = _stamp(joined[p], 1)
        if p in left:
            row.update(deleted_at=_stamp(left[p], 0), deleted_by_type="User", state="soft_delete")
        plan.users.append(row)
    for s in spaces:
        plan.groups.append({"id": gid[s], "name": s, "private": "false", "deleted": "false"})
    random.Random(1).shuffle(plan.messages)  # Messages.csv is not ordered
    return plan


def _csv(columns: tuple[str, ...], rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return buf.getvalue().encode("utf-8-sig")


def write_viva_engage_export(
    events: Iterable[dict[str, Any]], people: dict[str, str], path: Path
) -> Path:
    """Write the export ZIP of ``events`` (``people``: person id -> unit); returns ``path``."""
    plan = plan_viva_engage(events, people)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Messages.csv", _csv(MESSAGE_COLUMNS, plan.messages))
        zf.writestr("Users.csv", _csv(USER_COLUMNS, plan.users))
        zf.writestr("Groups.csv", _csv(GROUP_COLUMNS, plan.groups))
        zf.writestr("log.txt", f"Messages: {len(plan.messages)}\nUsers: {len(plan.users)}\n")
        zf.writestr("request.txt", "since=2026-01-01T00:00:00+00:00\ninclude=csv\n")
    return path


def viva_engage_expressible(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events the export of ``events`` expresses, as the reader returns them (no ids)."""
    return plan_viva_engage(events, {}).expected
