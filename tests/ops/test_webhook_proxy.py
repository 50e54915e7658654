"""The webhook endpoint's TLS proxy (deploy/caddy/Caddyfile) with the real Caddy (Debian's
package, installed by ``make test``): ``caddy validate`` accepts the shipped file, and the same
file run on loopback terminates TLS, forwards only the ingest routes and refuses bodies above
the limit before they reach the worker.

For the run, three things differ from production, and only these: the site is
``https://localhost`` on free ports with Caddy's internal CA instead of ACME, the upstream is a
test server instead of the ``worker`` DNS name, and the admin API is off.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
CADDY = shutil.which("caddy")
needs_caddy = pytest.mark.skipif(CADDY is None, reason="make test installs Debian's caddy")
ENV = {"WEBHOOK_DOMAIN": "teilhabe.example.org", "WEBHOOK_MAX_BODY": "1048576"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def caddy_env(root: Path, **extra: str) -> dict[str, str]:
    """Caddy's environment: its data and config (certificates, CA) under ``root``."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(root),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CONFIG_HOME": str(root / "config"),
        **ENV,
        **extra,
    }


def validate(config: Path, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CADDY), "validate", "--adapter", "caddyfile", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=caddy_env(root),
    )


@needs_caddy
def test_caddy_validates_the_shipped_caddyfile(tmp_path: Path) -> None:
    out = validate(CADDYFILE, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Valid configuration" in out.stdout + out.stderr


@needs_caddy
def test_caddy_validate_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "Caddyfile"
    broken.write_text(CADDYFILE.read_text().replace("max_size", "max_sise", 1))
    assert validate(broken, tmp_path).returncode != 0


def loopback_caddyfile(upstream: str, https_port: int, http_port: int) -> str:
    """The shipped Caddyfile for a loopback run (see the module docstring)."""
    text = CADDYFILE.read_text()
    text = text.replace(
        "{\n\tservers {",
        f"{{\n\tadmin off\n\tskip_install_trust\n\thttp_port {http_port}\n"
        f"\thttps_port {https_port}\n\tservers {{",
        1,
    )
    text, sites = re.subn(
        r"^\{\$WEBHOOK_DOMAIN:[^}]*\} \{$",
        f"https://localhost:{https_port} {{\n\ttls internal",
        text,
        flags=re.M,
    )
    text, upstreams = re.subn(r"dynamic a \{[^}]*\}", f"to {upstream}", text)
    assert sites == 1 and upstreams == 1 and "admin off" in text, "the Caddyfile changed shape"
    return text


class Upstream:
    """Stands in for the worker's webhook port: answers 202, keeps (method, path, body size)."""

    def __init__(self) -> None:
        seen: list[tuple[str, str, int]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append((self.command, self.path, len(body)))
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"accepted":1}')

            do_POST = do_GET = answer  # noqa: N815 - http.server's names

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext, Upstream]]:
    upstream = Upstream()
    https_port, http_port = free_port(), free_port()
    config = tmp_path / "Caddyfile"
    config.write_text(loopback_caddyfile(upstream.address, https_port, http_port))
    log = tmp_path / "caddy.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(CADDY), "run", "--adapter", "caddyfile", "--config", str(config)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=caddy_env(tmp_path),
        )
    root_ca = tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    deadline = time.monotonic() + 60
    while not root_ca.exists() or not port_open(https_port):
        assert proc.poll() is None, "caddy exited:\n" + log.read_text()[-3000:]
        assert time.monotonic() < deadline, "caddy did not start:\n" + log.read_text()[-3000:]
        time.sleep(0.2)
    context = ssl.create_default_context(cafile=str(root_ca))
    try:
        yield f"https://localhost:{https_port}", context, upstream
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        upstream.server.shutdown()
        upstream.server.server_close()


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def call(url: str, context: ssl.SSLContext, method: str = "POST", body: bytes = b"{}") -> int:
    req = urllib.request.Request(
        url, data=body if method == "POST" else None, method=method, headers={"Host": "localhost"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def declared(base: str, path: str, context: ssl.SSLContext, length: int) -> int:
    """Status of a POST that declares ``length`` bytes and waits for the answer before
    sending any (the proxy decides on the header alone)."""
    host, port = base.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


@needs_caddy
def test_the_proxy_terminates_tls_and_forwards_only_the_ingest_routes(
    proxy: tuple[str, ssl.SSLContext, Upstream],
) -> None:
    base, context, upstream = proxy
    for route in ("/v1/events", "/v1/slack/events", "/v1/mattermost"):
        assert call(base + route, context) == 202, route
    # not ingest: answered by the proxy, never forwarded
    assert call(base + "/healthz", context, method="GET") == 404
    assert call(base + "/metrics", context, method="GET") == 404
    assert call(base + "/v1/events", context, method="GET") == 404
    assert call(base + "/v1/other", context) == 404
    # above TEILHABE_WEBHOOK_MAX_BYTES: 413 from the proxy, the worker never sees it
    assert declared(base, "/v1/events", context, 1_048_576 + 1) == 413
    assert declared(base, "/v1/slack/events", context, 50_000_000) == 413
    assert call(base + "/v1/events", context, body=b"x" * 1_048_576) == 202
    assert upstream.seen == [
        ("POST", "/v1/events", 2),
        ("POST", "/v1/slack/events", 2),
        ("POST", "/v1/mattermost", 2),
        ("POST", "/v1/events", 1_048_576),
    ]
    # the certificate is checked: a client that does not trust the CA is refused
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        call(base + "/v1/events", ssl.create_default_context())
