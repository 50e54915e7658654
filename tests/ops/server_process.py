"""A server binary (Prometheus, Alertmanager) run on loopback by a test: its log, waiting for
a condition through its API, stopping it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class ServerProcess:
    """A server process writing to ``log``; ``wait`` fails at once with the log's tail if the
    process exits, and ``stop`` terminates it (then kills it if it hangs)."""

    poll_s = 1.0
    wait_s = 90.0

    def __init__(self, argv: Sequence[str], log: Path) -> None:
        self.name = Path(argv[0]).name
        self.log = log
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(list(argv), stdout=fh, stderr=subprocess.STDOUT)

    def wait(self, what: str, check: Callable[[], Any], timeout_s: float | None = None) -> Any:
        """``check()``'s first truthy result (an OSError counts as not yet)."""
        deadline = time.monotonic() + (self.wait_s if timeout_s is None else timeout_s)
        while True:
            assert self.proc.poll() is None, f"{self.name} exited:\n" + self.log.read_text()[-3000:]
            try:
                got = check()
            except OSError:
                got = None
            if got:
                return got
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(self.poll_s)

    def stop(self) -> None:
        """Terminate; kill if it has not exited within 20 s."""
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
