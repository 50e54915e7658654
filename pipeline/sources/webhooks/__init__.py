"""Live ingest over HTTP, the pure part: credentials, rate limits, de-duplication, and Slack
Events API / Mattermost outgoing webhook payloads as contract v1 events.

``agents.webhooks`` serves it from the worker. Message text is read here only to find
mentions: it never leaves the mapping functions (not in events, logs or dead letters).

Person keys: on Slack the user id (``U…``; the Events API has no e-mail: an export imported
alongside must use ``person_key="id"``), on Mattermost the username, lower-cased (the outgoing
webhook names mentioned people by username only, so the author is keyed the same way for a
mention to tie two people; a renamed user counts as a new person). Ids of events and content
come from the platform's ids, never a person's: ``slack:{channel}:{ts}`` for a message (as the
export reader, so an overlap counts once), ``slack:{event_id}`` for a reaction or a join,
``mattermost:{post_id}``, ``{content}:mention:{n}``; a delivery that arrives twice is counted
once downstream too.

Modules: ``credentials`` (tokens, Slack signatures), ``ratelimit``, ``dedup`` (delivery ids),
``payload`` (what all mappings share), ``slack``, ``mattermost``, ``generic`` (what goes to
Kafka: validation, pseudonymised envelopes, redacted dead letters), ``metrics``, ``server``
(aiohttp's server hardened: access log, timeouts, connection cap, JSON errors) and ``logs``
(a log a client cannot flood).
"""
