"""SASL authentication once, by hand, on the preflight's connection (``pipeline.ops.preflight``).

Why not a client: kafka-python retries a refused SASL login until its bootstrap times out and
then says only "Unable to bootstrap". Here SaslHandshake (v1) and SaslAuthenticate (v0) are sent
as the clients send them (the SCRAM messages by kafka-python's own ``ScramClient``), and the
broker's answer becomes a message that names the setting to fix.
"""

from __future__ import annotations

import socket
import struct

from pipeline.errors import ConfigError
from pipeline.kafka_security import KafkaSecurity

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
CLIENT_ID = b"teilhabe-preflight"
MAX_FRAME = 1 << 20


def _string(value: bytes) -> bytes:
    return struct.pack(">h", len(value)) + value


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes; fewer only when the peer closed the connection."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def call(
    sock: socket.socket, api_key: int, version: int, body: bytes, correlation_id: int
) -> bytes:
    """One request (header v1) and its response body (header v0 stripped); b'' when the
    broker closed the connection instead of answering."""
    header = struct.pack(">hhi", api_key, version, correlation_id) + _string(CLIENT_ID)
    request = header + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    head = recv_exact(sock, 8)
    if len(head) < 8:
        return b""
    size, got = struct.unpack(">ii", head)
    if got != correlation_id or not 4 <= size <= MAX_FRAME:
        raise ConfigError(f"the broker answered SASL request {api_key} out of order")
    body_size = size - 4
    response = recv_exact(sock, body_size)
    return response if len(response) == body_size else b""


def _read_string(data: bytes, at: int) -> tuple[str | None, int]:
    (n,) = struct.unpack_from(">h", data, at)
    at += 2
    if n < 0:
        return None, at
    return data[at : at + n].decode("utf-8", "replace"), at + n


def handshake(sock: socket.socket, server: str, security: KafkaSecurity) -> None:
    """SaslHandshake: ConfigError naming TEILHABE_KAFKA_SASL_MECHANISM when the broker does
    not offer it (or no SASL at all)."""
    mechanism = str(security.sasl_mechanism)
    body = call(sock, SASL_HANDSHAKE, 1, _string(mechanism.encode()), 0x5A51)
    if not body:
        raise ConfigError(
            f"SASL with {server} failed: the broker closed the connection on SaslHandshake — "
            "does this listener use SASL? check TEILHABE_KAFKA_SECURITY_PROTOCOL and the port "
            "in TEILHABE_KAFKA_BOOTSTRAP"
        )
    error, count = struct.unpack_from(">hi", body, 0)
    offered, at = [], 6
    for _ in range(max(count, 0)):
        name, at = _read_string(body, at)
        offered.append(name or "")
    if error or mechanism not in offered:
        raise ConfigError(
            f"SASL with {server} failed: the broker offers {', '.join(offered) or 'nothing'}, "
            f"not {mechanism} — check TEILHABE_KAFKA_SASL_MECHANISM"
        )


def authenticate(sock: socket.socket, server: str, security: KafkaSecurity) -> None:
    """SaslHandshake, then the SASL exchange; ConfigError naming the SASL settings when the
    broker refuses (the password is never part of a message)."""
    handshake(sock, server, security)
    user, password = str(security.sasl_username), str(security.sasl_password)
    if security.sasl_mechanism == "PLAIN":
        _exchange(sock, server, security, b"\0" + user.encode() + b"\0" + password.encode(), 1)
        return
    from kafka.net.sasl.scram import ScramClient  # the clients' own SCRAM code

    scram = ScramClient(user, password, security.sasl_mechanism)
    server_first = _exchange(sock, server, security, scram.first_message(), 1)
    try:
        scram.process_server_first_message(server_first)
    except (ValueError, KeyError) as exc:
        raise _refused(server, security, f"unexpected SCRAM answer ({exc})") from None
    server_final = _exchange(sock, server, security, scram.final_message(), 2)
    try:
        scram.process_server_final_message(server_final)
    except (ValueError, KeyError) as exc:
        raise ConfigError(
            f"SASL with {server}: the broker's SCRAM proof is wrong ({exc}) — is this the "
            "broker you mean (TEILHABE_KAFKA_BOOTSTRAP)?"
        ) from None


def _exchange(
    sock: socket.socket, server: str, security: KafkaSecurity, token: bytes, step: int
) -> bytes:
    body = call(sock, SASL_AUTHENTICATE, 0, struct.pack(">i", len(token)) + token, 0x5A51 + step)
    if not body:
        raise _refused(server, security, "the broker closed the connection")
    (error,) = struct.unpack_from(">h", body, 0)
    message, at = _read_string(body, 2)
    if error:
        raise _refused(server, security, message or f"error code {error}")
    (n,) = struct.unpack_from(">i", body, at)
    return body[at + 4 : at + 4 + max(n, 0)]


def _refused(server: str, security: KafkaSecurity, why: str) -> ConfigError:
    return ConfigError(
        f"SASL authentication with {server} failed (user {security.sasl_username!r}, "
        f"mechanism {security.sasl_mechanism}): {why} — check TEILHABE_KAFKA_SASL_USERNAME, "
        "TEILHABE_KAFKA_SASL_PASSWORD_FILE and TEILHABE_KAFKA_SASL_MECHANISM"
    )
