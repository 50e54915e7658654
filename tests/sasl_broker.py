"""A fake Kafka listener that speaks just enough of the protocol for the SASL preflight:
ApiVersions, SaslHandshake (v1) and SaslAuthenticate (v0) with PLAIN and SCRAM-SHA-256/512
(server side of RFC 5802/7677, written here independently of kafka-python's client side).
The embedded broker (Tansu) has no SASL users to log in with, so this stands in for a broker
that checks credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import threading
from types import TracebackType

HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class Scram:
    """Server side of one SCRAM exchange."""

    def __init__(self, mechanism: str, user: str, password: str) -> None:
        self.hash = HASHES[mechanism]
        self.user, self.password = user, password
        self.salt, self.iterations = os.urandom(16), 4096
        self.auth_message = b""
        self.salted = b""

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self.hash).digest()

    def first(self, client_first: bytes) -> bytes | None:
        bare = client_first.split(b",", 2)[2]  # after the GS2 header "n,,"
        fields = dict(f.split(b"=", 1) for f in bare.split(b","))
        if fields[b"n"].decode() != self.user:
            return None
        self.nonce = fields[b"r"] + base64.b64encode(os.urandom(12))
        server_first = (
            b"r=" + self.nonce + b",s=" + base64.b64encode(self.salt) + b",i=%d" % self.iterations
        )
        self.auth_message = bare + b"," + server_first
        name = self.hash().name
        self.salted = hashlib.pbkdf2_hmac(name, self.password.encode(), self.salt, self.iterations)
        return server_first

    def final(self, client_final: bytes) -> bytes | None:
        without_proof, _, proof = client_final.rpartition(b",p=")
        auth_message = self.auth_message + b"," + without_proof
        stored_key = self.hash(self._hmac(self.salted, b"Client Key")).digest()
        signature = self._hmac(stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if self.hash(client_key).digest() != stored_key:
            return None
        server_key = self._hmac(self.salted, b"Server Key")
        return b"v=" + base64.b64encode(self._hmac(server_key, auth_message))


class SaslBroker:
    """``with SaslBroker({"PLAIN"}, "user", "secret") as b: b.port``."""

    def __init__(self, mechanisms: set[str], user: str, password: str) -> None:
        self.mechanisms, self.user, self.password = sorted(mechanisms), user, password
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.logins: list[str] = []  # mechanisms of successful logins
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        mechanism, scram, step = "", None, 0
        with conn:
            try:
                while True:
                    (size,) = struct.unpack(">i", _recv(conn, 4))
                    frame = _recv(conn, size)
                    key, _version, corr, n = struct.unpack_from(">hhih", frame, 0)
                    body = frame[10 + max(n, 0) :]
                    if key == 18:  # ApiVersions v0: no error, no APIs listed
                        out = struct.pack(">hi", 0, 0)
                    elif key == 17:
                        (m,) = struct.unpack_from(">h", body, 0)
                        mechanism = body[2 : 2 + m].decode()
                        error = 0 if mechanism in self.mechanisms else 33
                        out = struct.pack(">hi", error, len(self.mechanisms))
                        out += b"".join(_string(x) for x in self.mechanisms)
                        if mechanism in HASHES:
                            scram = Scram(mechanism, self.user, self.password)
                    elif key == 36:
                        (t,) = struct.unpack_from(">i", body, 0)
                        answer = self._login(mechanism, scram, step, body[4 : 4 + t])
                        step += 1
                        if answer is None:
                            failed = "Authentication failed: Invalid username or password"
                            out = struct.pack(">h", 58) + _string(failed) + struct.pack(">i", 0)
                            conn.sendall(struct.pack(">ii", len(out) + 4, corr) + out)
                            return
                        out = struct.pack(">h", 0) + _string(None)
                        out += struct.pack(">i", len(answer)) + answer
                    else:
                        return
                    conn.sendall(struct.pack(">ii", len(out) + 4, corr) + out)
            except (ConnectionError, OSError, struct.error):
                return

    def _login(self, mechanism: str, scram: Scram | None, step: int, token: bytes) -> bytes | None:
        if mechanism == "PLAIN":
            ok = token == b"\0" + self.user.encode() + b"\0" + self.password.encode()
            if ok:
                self.logins.append(mechanism)
            return b"" if ok else None
        assert scram is not None
        if step == 0:
            return scram.first(token)
        answer = scram.final(token)
        if answer is not None:
            self.logins.append(mechanism)
        return answer

    def __enter__(self) -> SaslBroker:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.listener.close()
