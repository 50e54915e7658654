"""Find user mentions in message text; only the mentioned ids leave, the text is discarded.

* Slack writes a user mention as ``<@U123ABC>`` or ``<@U123ABC|name>``; ``<!here>``,
  ``<!channel>``, ``<!subteam^...>`` are not person mentions.
* Mattermost writes ``@username`` (case-insensitive, letters, digits, ``.``, ``-``, ``_``);
  ``@channel``, ``@here``, ``@all`` and names that are no known user (groups, typos, the
  ``@`` of an e-mail address) are not person mentions. A trailing ``.``, ``-`` or ``_`` is
  dropped when the name with it is unknown (``@anna.`` at the end of a sentence).

Both return each mentioned id once, in order of first appearance. Nothing here logs, stores
or raises with the text.
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Final

_SLACK_MENTION: Final = re.compile(r"<@([A-Z0-9]{2,32})(?:\|[^>]{0,200})?>")
# not preceded by a character that makes it part of a word or an e-mail address
_AT_MENTION: Final = re.compile(r"(?<![\w@.+\-])@([a-z0-9][a-z0-9._\-]{0,63})", re.IGNORECASE)
#: Mattermost's channel-wide mentions (not a person).
SPECIAL_MENTIONS: Final = frozenset({"channel", "here", "all"})


def slack_mentions(text: object) -> list[str]:
    """Slack user ids mentioned in ``text`` (``<@U…>``), distinct, in order of appearance.

    >>> slack_mentions("hi <@U01ABC>, <@W02XYZ|jo> and <@U01ABC> <!here>")
    ['U01ABC', 'W02XYZ']
    """
    if not isinstance(text, str) or "<@" not in text:
        return []
    return list(dict.fromkeys(m.group(1) for m in _SLACK_MENTION.finditer(text)))


def at_mentions(text: object, known: Container[str] | None) -> list[str]:
    """Usernames mentioned as ``@name`` in ``text`` (lower-cased), distinct, in order.

    ``known``: the usernames of the export; others are no person mention. None (a webhook,
    which knows no user list): every name, its trailing ``.``, ``-`` or ``_`` dropped.

    >>> at_mentions("@Anna and @jonas. cc @all, mail bob@example.org @ghost", {"anna", "jonas"})
    ['anna', 'jonas']
    >>> at_mentions("@Anna and @jonas. cc @all, mail bob@example.org @ghost", None)
    ['anna', 'jonas', 'ghost']
    """
    if not isinstance(text, str) or "@" not in text:
        return []
    found: dict[str, None] = {}
    for m in _AT_MENTION.finditer(text):
        name = m.group(1).lower()
        while name and (known is None or name not in known) and name[-1] in "._-":
            name = name[:-1]
        if name and name not in SPECIAL_MENTIONS and (known is None or name in known):
            found.setdefault(name)
    return list(found)
