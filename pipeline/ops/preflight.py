"""Kafka preflight: before any Kafka client starts, one connection to each bootstrap server with
the clients' own TLS context and SASL credentials, so that a wrong CA, a refused client
certificate, a port without TLS or bad credentials end the start at once with a message that
names the setting to check, instead of a client retrying until "Unable to bootstrap".

Run by ``ensure_topics`` (worker start, dev stack) and ``producer_for`` (produce, generate,
import, backfill). A server that does not accept TCP connections is left to the clients (they
wait for a broker that is still starting and report it themselves).
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct

from pipeline.errors import ConfigError
from pipeline.kafka_security import KafkaSecurity, kafka_security
from pipeline.ops.brokerprobe import _request
from pipeline.ops.saslcheck import authenticate, recv_exact
from pipeline.settings import Settings

log = logging.getLogger("teilhabe.preflight")

#: TLS errors that mean: the broker does not accept (or wants) our client certificate.
_CLIENT_CERT_REASONS = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "ACCESS_DENIED",
    "CERTIFICATE_EXPIRED",
    "UNSUPPORTED_CERTIFICATE",
    "DECRYPT_ERROR",
)
#: TLS errors that mean: nothing speaks TLS on that port.
_NOT_TLS_REASONS = ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF", "RECORD_LAYER", "PACKET_LENGTH")
_HOSTNAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_CERT_EXPIRED = 10


def bootstrap_servers(bootstrap: str) -> list[tuple[str, int]]:
    """(host, port) of each ``host:port`` in a bootstrap list (port 9092 when missing)."""
    servers = []
    for server in filter(None, (s.strip() for s in bootstrap.split(","))):
        host, sep, port = server.rpartition(":")
        if not sep or "]" in port:  # no port (or an IPv6 address without one)
            host, port = server, "9092"
        try:
            servers.append((host.strip("[]") or "localhost", int(port)))
        except ValueError:
            raise ConfigError(f"TEILHABE_KAFKA_BOOTSTRAP: {server!r} is not host:port") from None
    return servers


def preflight(bootstrap: str, settings: Settings, timeout_s: float = 10.0) -> KafkaSecurity:
    """Check that the clients of ``settings`` can connect to ``bootstrap``; returns their
    security. ConfigError naming the setting when TLS or SASL fails; nothing when no server
    accepts TCP connections (the clients' own retries report that)."""
    security = kafka_security(settings)  # the files: missing, unreadable, readable by others
    if settings.embedded_broker:
        return security  # our own PLAINTEXT broker
    for host, port in bootstrap_servers(bootstrap):
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            log.info("preflight: %s:%s not reachable (%s); left to the clients", host, port, exc)
            continue
        with sock:
            _check_server(sock, host, port, security, timeout_s)
    return security


def _check_server(
    sock: socket.socket, host: str, port: int, security: KafkaSecurity, timeout_s: float
) -> None:
    """TLS handshake (when TLS), one ApiVersions round trip and (SASL) the authentication
    on ``sock``."""
    server = f"{host}:{port}"
    sock.settimeout(timeout_s)
    if not security.tls:
        answer = _api_versions(sock, server, security)
        tls_record = answer[:1] in (b"\x15", b"\x16") and answer[1:2] == b"\x03"
        if answer == CLOSED or tls_record:
            what = "answered with TLS" if tls_record else "closed the connection unanswered"
            raise ConfigError(
                f"the broker at {server} {what}: does it expect TLS? "
                f"TEILHABE_KAFKA_SECURITY_PROTOCOL is {security.protocol}; set it to SSL (or "
                "SASL_SSL), with TEILHABE_KAFKA_SSL_CAFILE when its CA is not a system CA"
            )
        if security.sasl and _answered(answer):
            _sasl(sock, server, security, timeout_s)
        return
    assert security.ssl_context is not None
    try:
        tls = security.ssl_context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raise ConfigError(_verify_failed(server, host, exc)) from None
    except ssl.SSLError as exc:
        raise ConfigError(_tls_failed(server, exc, security, "handshake")) from None
    except TimeoutError:
        raise ConfigError(
            f"TLS handshake with {server} failed: no answer within {timeout_s:.0f} s — does "
            "this port speak TLS? check TEILHABE_KAFKA_SECURITY_PROTOCOL and the port in "
            "TEILHABE_KAFKA_BOOTSTRAP"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"TLS handshake with {server} failed: the connection ended ({exc}) — does this "
            "port speak TLS? check TEILHABE_KAFKA_SECURITY_PROTOCOL and TEILHABE_KAFKA_BOOTSTRAP"
        ) from None
    with tls:
        try:
            answer = _api_versions(tls, server, security)
            if security.sasl and _answered(answer):
                _sasl(tls, server, security, timeout_s)
        except ssl.SSLError as exc:  # TLS 1.3: a refused client certificate shows here
            raise ConfigError(_tls_failed(server, exc, security, "session")) from None
    if answer == CLOSED:  # after the handshake: what a refused client certificate looks like
        if security.client_cert:
            hint = (
                "did it refuse the client certificate? check TEILHABE_KAFKA_SSL_CERTFILE and "
                "TEILHABE_KAFKA_SSL_KEYFILE (a certificate signed by a CA the broker trusts)"
            )
        else:
            hint = (
                "does it require a client certificate (mutual TLS)? set "
                "TEILHABE_KAFKA_SSL_CERTFILE and TEILHABE_KAFKA_SSL_KEYFILE"
            )
        raise ConfigError(f"the broker at {server} ended the TLS session unanswered: {hint}")


CORRELATION_ID = 0x7E11AB


def _answered(answer: bytes) -> bool:
    """True when ``answer`` (from ``_api_versions``) is the broker's answer to ApiVersions."""
    return len(answer) == 8 and struct.unpack(">ii", answer)[1] == CORRELATION_ID


def _sasl(sock: socket.socket, server: str, security: KafkaSecurity, timeout_s: float) -> None:
    """``saslcheck.authenticate``, its network failures also as a ConfigError."""
    try:
        authenticate(sock, server, security)
    except TimeoutError:
        raise ConfigError(
            f"SASL with {server} failed: no answer within {timeout_s:.0f} s — does this "
            "listener use SASL? check TEILHABE_KAFKA_SECURITY_PROTOCOL and "
            "TEILHABE_KAFKA_SASL_MECHANISM"
        ) from None
    except (ConnectionError, struct.error) as exc:
        raise ConfigError(
            f"SASL authentication with {server} failed ({type(exc).__name__}: {exc}) — check "
            "TEILHABE_KAFKA_SASL_USERNAME, TEILHABE_KAFKA_SASL_PASSWORD_FILE and "
            "TEILHABE_KAFKA_SASL_MECHANISM"
        ) from None


#: What ``_api_versions`` returns when the server closed the connection before answering, and
#: when it did not answer in time or the connection failed (left to the clients).
CLOSED = b""
NO_ANSWER = b"?"


def _api_versions(sock: socket.socket, server: str, security: KafkaSecurity) -> bytes:
    """Send ApiVersions; the first 8 bytes of the answer (``CLOSED`` when the server closed
    the connection without a byte, ``NO_ANSWER`` when it did not answer in time)."""
    correlation_id = CORRELATION_ID
    try:
        sock.sendall(_request(correlation_id))
        head = recv_exact(sock, 8)
        if len(head) == 8:
            size, got = struct.unpack(">ii", head)
            if got == correlation_id and 4 <= size <= 1 << 20:
                recv_exact(sock, size - 4)  # the rest of the answer: the connection goes on
    except ssl.SSLError:
        raise  # the caller names the setting
    except TimeoutError:
        log.warning("preflight: %s did not answer ApiVersions in time", server)
        return NO_ANSWER
    except (ConnectionResetError, BrokenPipeError) as exc:
        log.warning("preflight: %s ended the connection (%s)", server, exc)
        return CLOSED
    except OSError as exc:
        log.warning("preflight: %s: %s", server, exc)
        return NO_ANSWER
    if len(head) == 8 and struct.unpack(">ii", head)[1] != correlation_id:
        log.warning("preflight: unexpected ApiVersions answer from %s", server)
    return head


def _verify_failed(server: str, host: str, exc: ssl.SSLCertVerificationError) -> str:
    what = f"TLS handshake with {server} failed: certificate verify failed: {exc.verify_message}"
    if exc.verify_code in _HOSTNAME_MISMATCH:
        return (
            f"{what} — the broker's certificate is not valid for {host!r}: connect by a name "
            "the certificate holds (TEILHABE_KAFKA_BOOTSTRAP, and the broker's advertised "
            "listeners) or have it issued for this name"
        )
    if exc.verify_code == _CERT_EXPIRED:
        return f"{what} — the broker's certificate has expired; renew it on the broker"
    return (
        f"{what} — check TEILHABE_KAFKA_SSL_CAFILE: it must hold the CA that signed the "
        "broker's certificate (unset: the system's CAs)"
    )


def _tls_failed(server: str, exc: ssl.SSLError, security: KafkaSecurity, stage: str) -> str:
    reason = str(exc.reason or exc)
    what = f"TLS {stage} with {server} failed: {reason}"
    if any(r in reason.upper() for r in _CLIENT_CERT_REASONS):
        if security.client_cert:
            return (
                f"{what} — the broker refused the client certificate: check "
                "TEILHABE_KAFKA_SSL_CERTFILE and TEILHABE_KAFKA_SSL_KEYFILE (a certificate "
                "signed by a CA the broker trusts)"
            )
        return (
            f"{what} — the broker requires a client certificate (mutual TLS): set "
            "TEILHABE_KAFKA_SSL_CERTFILE and TEILHABE_KAFKA_SSL_KEYFILE"
        )
    if isinstance(exc, ssl.SSLEOFError) or any(r in reason.upper() for r in _NOT_TLS_REASONS):
        return (
            f"{what} — does this port speak TLS? check TEILHABE_KAFKA_SECURITY_PROTOCOL and "
            "the port in TEILHABE_KAFKA_BOOTSTRAP"
        )
    return (
        f"{what} — check TEILHABE_KAFKA_SECURITY_PROTOCOL, TEILHABE_KAFKA_SSL_CAFILE and "
        "(mutual TLS) TEILHABE_KAFKA_SSL_CERTFILE / TEILHABE_KAFKA_SSL_KEYFILE"
    )


def sasl_error(bootstrap: str, security: KafkaSecurity, exc: BaseException) -> ConfigError | None:
    """The ConfigError for a client's SASL failure ``exc`` (None: not a SASL failure)."""
    name = type(exc).__name__
    who = f"user {security.sasl_username!r}, mechanism {security.sasl_mechanism}"
    if name == "UnsupportedSaslMechanismError":
        return ConfigError(
            f"SASL with {bootstrap} failed: {exc} — check TEILHABE_KAFKA_SASL_MECHANISM"
        )
    if name in ("SaslAuthenticationFailedError", "AuthenticationFailedError"):
        return ConfigError(
            f"SASL authentication with {bootstrap} failed ({who}): {exc} — check "
            "TEILHABE_KAFKA_SASL_USERNAME, TEILHABE_KAFKA_SASL_PASSWORD_FILE and "
            "TEILHABE_KAFKA_SASL_MECHANISM"
        )
    if "Authorization" in name:
        return ConfigError(
            f"the broker at {bootstrap} refused {who}: {exc} — the user needs the ACLs to "
            "describe the cluster (TEILHABE_KAFKA_SASL_USERNAME)"
        )
    return None
