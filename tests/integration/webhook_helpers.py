"""What the webhook tests share: secrets, HTTP and Slack-signing helpers, a running worker
with the endpoint on loopback, and a fake Kafka for in-process servers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.dev.devstack import DevStack
from pipeline.ops.exporter import PipelineMetrics
from pipeline.settings import Settings
from tests.conftest import TEST_KEY, configure

SIGNING_SECRET = "slack-signing-secret-for-the-test"
BEARER = "generic-bearer-token-0123"
MM_TOKEN = "mattermost-outgoing-token"
Reply = tuple[int, dict[str, str], Any]


def write_secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    os.chmod(path, 0o600)
    return path


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    """(status, headers, JSON body) of one request; 4xx and 5xx are answers, not errors."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    if body is None:
        req.method = "GET"
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, dict(resp.headers), orjson.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), orjson.loads(err.read() or b"null")


def signed(body: bytes, age_s: float = 0, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Slack's headers for ``body`` (signature computed as Slack documents it)."""
    ts = str(int(time.time() - age_s))
    mac = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={mac}",
    }


def callback(event_id: str, event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "event_callback", "team_id": "T0", "event_id": event_id, "event": event}


def wait_for_port(stack: DevStack, timeout_s: float = 90) -> int:
    """The webhook port the worker wrote once it serves."""
    proc = stack.workers[-1]
    path = stack.settings.data_dir / "run" / f"worker-{proc.pid}.webhook"
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            logs = (stack.log_dir / "worker-0.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the worker does not serve webhooks:\n{logs}")
        time.sleep(0.2)
    return int(path.read_text())


def worker_logs(stack: DevStack) -> str:
    return "\n".join(p.read_text(errors="replace") for p in stack.log_dir.glob("worker-*"))


@contextmanager
def webhook_worker(root: Path, **values: object) -> Iterator[tuple[DevStack, int]]:
    """A worker serving the endpoint on loopback with all three credentials and ``values``
    as further settings; (its stack, the port). Its stop hook must have run at the end."""
    secrets = root / "secrets"
    secrets.mkdir()
    mp = pytest.MonkeyPatch()
    try:
        settings = configure(
            mp,
            root,
            webhook_enabled=True,
            webhook_port=0,
            webhook_token_file=write_secret(secrets / "bearer", BEARER),
            slack_signing_secret_file=write_secret(secrets / "slack", SIGNING_SECRET),
            mattermost_token_file=write_secret(secrets / "mattermost", MM_TOKEN),
            **values,
        )
        with DevStack(settings) as stack:
            stack.start_worker()
            yield stack, wait_for_port(stack)
            stack.stop_workers()
            assert "webhooks stopped" in worker_logs(stack), "the stop hook did not run"
    finally:
        mp.undo()


def metrics_text(stack: DevStack) -> str:
    return "\n".join(
        urllib.request.urlopen(u, timeout=5).read().decode() for u in stack.worker_metrics_urls()
    )


# --- in-process: Kafka that does not confirm -----------------------------------------------
class FakeTopic:
    """A topic whose sends are confirmed only when ``confirm`` is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[bytes] = []
        self.confirm = True

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, value: bytes, **kwargs: Any) -> asyncio.Future[None]:
        self.sent.append(value)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.confirm:
            fut.set_result(None)
        return fut


def fake_runtime(settings: Settings) -> Any:
    from agents.delivery import Delivery

    metrics, deadletter_topic = PipelineMetrics.create(), FakeTopic("deadletter")
    return SimpleNamespace(
        settings=settings,
        metrics=metrics,
        pseudonymise=Pseudonymiser(TEST_KEY.encode()),
        events_topic=FakeTopic("events"),
        deadletter_topic=deadletter_topic,
        delivery=Delivery(metrics, settings.kafka_max_record_bytes, deadletter_topic),
    )
