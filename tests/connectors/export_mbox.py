"""Write contract events of the synthetic organisation as a mailing-list archive (mbox).

``write_mbox`` writes one mail per event it can express, in event order (archives are
chronological), as ``mailbox.mbox`` would (``From `` lines in bodies escaped as ``>From ``).
``mbox_expressible`` gives what ``pipeline.sources.connectors.mbox.read`` reads back: the reader's
oracle. Both come from one plan:

* a space is a list ``<space>@lists.example.org`` (``List-Id: <space.lists.example.org>``,
  ``List-Post``); a post or reply goes ``To`` the list only; no space: ``To`` nobody
* ``post_created`` -> a new thread; ``reply_created`` -> ``In-Reply-To: <parent>``,
  ``References: <root> [<parent>]`` (target = the parent's sender, who wrote earlier)
* ``mention`` -> a new thread with the mentioned person in ``Cc``: read back as
  ``post_created`` plus ``mention``
* everything else (views, reactions, shares, ideas, membership) is dropped
* times lose their milliseconds (``Date`` has seconds)

Display names carry umlauts (RFC 2047 encoded) and every subject and body ``SECRET``.
"""

from __future__ import annotations

import email.charset
import email.utils
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.message import Message
from pathlib import Path
from typing import Any

from pipeline.sources.connectors.base import iso

PLATFORM = "mail"
LIST_DOMAIN = "lists.example.org"
ID_DOMAIN = "mail.example.org"
SECRET = "GEHEIM"
_QP_UTF8 = email.charset.Charset("utf-8")
_QP_UTF8.body_encoding = email.charset.QP  # readable bodies, so ">From " escaping shows


def _cid(message_id: str) -> str:
    return "mbox:" + hashlib.sha256(message_id.encode()).hexdigest()[:24]


@dataclass
class MboxPlan:
    """The mails (as Message) and the events they express."""

    mails: list[Message] = field(default_factory=list)
    expected: list[dict[str, Any]] = field(default_factory=list)


def plan_mbox(events: Iterable[dict[str, Any]]) -> MboxPlan:
    """Mails of the archive and the events read back, from one pass over ``events``."""
    plan = MboxPlan()
    n = 0
    for e in events:
        kind = e["event_type"]
        if kind not in ("post_created", "reply_created", "mention"):
            continue
        n += 1
        actor, space = e["actor_id"], e.get("space_id")
        ts = datetime.fromisoformat(e["occurred_at"]).replace(microsecond=0).astimezone(UTC)
        own = f"{e['event_id'] if kind == 'mention' else e['content_id']}@{ID_DOMAIN}"
        msg = Message()  # compat32: fast, and what mailbox.mbox / Perceval parse into
        msg["From"] = email.utils.formataddr((f"Jörg Müller {n}", actor), "utf-8")
        if space:
            msg["To"] = f"{space}@{LIST_DOMAIN}"
            msg["List-Id"] = f"Liste {space} <{space}.{LIST_DOMAIN}>"
            msg["List-Post"] = f"<mailto:{space}@{LIST_DOMAIN}>"
            msg["Precedence"] = "list"
        msg["Date"] = email.utils.format_datetime(ts)
        msg["Message-ID"] = f"<{own}>"
        re = "Re: " if kind == "reply_created" else ""
        msg["Subject"] = f"{re}{SECRET} Betreff {n}"
        cid = _cid(own)
        where = f"{space}.{LIST_DOMAIN}" if space else "mbox"
        base = {"occurred_at": iso(ts), "actor_id": actor, "platform": PLATFORM}
        base["space_id"] = where
        if kind == "reply_created":
            parent = f"{e['parent_content_id']}@{ID_DOMAIN}"
            root = f"{e['root_content_id']}@{ID_DOMAIN}"
            msg["In-Reply-To"] = f"<{parent}>"
            msg["References"] = f"<{root}>" if root == parent else f"<{root}> <{parent}>"
            plan.expected.append(
                {
                    **base,
                    "event_type": "reply_created",
                    "target_actor_id": e["target_actor_id"],
                    "content_id": cid,
                    "parent_content_id": _cid(parent),
                    "root_content_id": _cid(root),
                }
            )
        else:
            plan.expected.append(
                {**base, "event_type": "post_created", "content_id": cid, "root_content_id": cid}
            )
        if kind == "mention":
            msg["Cc"] = email.utils.formataddr((f"Grüße an {n}", e["target_actor_id"]), "utf-8")
            plan.expected.append(
                {
                    **base,
                    "event_type": "mention",
                    "target_actor_id": e["target_actor_id"],
                    "content_id": cid,
                    "root_content_id": cid,
                }
            )
        msg.set_payload(
            f"{SECRET} Text {n} äöü\n\nFrom the desk of {SECRET}: a line that must be escaped\n",
            _QP_UTF8,
        )
        plan.mails.append(msg)
    return plan


def write_mbox(events: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write the archive of ``events`` to ``path`` (mboxo, as ``mailbox.mbox`` writes it:
    ``From `` separator, body lines starting with ``From `` escaped, a blank line between
    messages); returns ``path``."""
    plan = plan_mbox(events)
    with open(path, "wb") as fh:
        for i, msg in enumerate(plan.mails):
            sender = email.utils.parseaddr(str(msg["From"]))[1]
            when = email.utils.parsedate_to_datetime(str(msg["Date"]))
            if i:
                fh.write(b"\n")
            fh.write(f"From {sender} {time.asctime(when.timetuple())}\n".encode())
            BytesGenerator(fh, mangle_from_=True).flatten(msg)
    return path


def mbox_expressible(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events the archive of ``events`` expresses, as the reader returns them (no ids)."""
    return plan_mbox(events).expected
