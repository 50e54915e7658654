"""Restart supervision for the demo's child processes (``teilhabe demo``).

A process that exits is started again after a short backoff. A run shorter than
``RestartPolicy.quick_s`` counts as a quick failure; the backoff doubles with every quick
failure in a row, and after ``max_quick_failures`` of them supervision gives up with
``SupervisionGaveUp`` (exit code and the last lines of the process's log), so a worker that
dies at once on a configuration error stops the demo instead of looping. A run that lasted
longer resets the count. Driven by polling (``check``) from the caller's loop: no threads.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import TeilhabeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart and when to give up."""

    backoff_s: float = 1.0  # delay before the first restart
    max_backoff_s: float = 30.0  # the doubling stops here
    quick_s: float = 30.0  # a run shorter than this is a quick failure
    max_quick_failures: int = 5  # quick failures in a row before giving up
    log_lines: int = 20  # log lines quoted when giving up

    def delay_s(self, quick_failures: int) -> float:
        """Backoff before the next start after ``quick_failures`` quick failures in a row."""
        return min(self.backoff_s * 2 ** max(quick_failures - 1, 0), self.max_backoff_s)


class SupervisionGaveUp(TeilhabeError):  # noqa: N818 - reads better at raise sites
    """A supervised process failed quickly too many times in a row."""


def tail(path: Path | None, lines: int) -> str:
    """The last ``lines`` lines of a log file ('' if there is none)."""
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(fh.tell() - 64 * 1024, 0))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


class Supervised:
    """One supervised slot: the current process, its restarts and its failure streak."""

    def __init__(
        self,
        name: str,
        spawn: Callable[[], subprocess.Popen[bytes]],
        log_path: Path | None = None,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.spawn = spawn
        self.log_path = log_path
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.quick_failures = 0
        self.last_exit: int | None = None
        self._started = 0.0
        self._next_start: float | None = None

    @property
    def alive(self) -> bool:
        """Whether the current process is running."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """First start."""
        self._launch(first=True)

    def _launch(self, first: bool) -> None:
        self.proc = self.spawn()
        self._started = self.clock()
        self._next_start = None
        if not first:
            self.restarts += 1
            log.warning(
                "%s restarted (pid %s, restart %d)", self.name, self.proc.pid, self.restarts
            )

    def check(self) -> None:
        """Notice an exit (schedule a restart or give up); start a restart that is due."""
        now = self.clock()
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                if now - self._started >= self.policy.quick_s:
                    self.quick_failures = 0
                return
            ran = now - self._started
            self.last_exit = code
            self.proc = None
            self.quick_failures = self.quick_failures + 1 if ran < self.policy.quick_s else 0
            if self.quick_failures >= self.policy.max_quick_failures:
                raise SupervisionGaveUp(
                    f"{self.name} exited {self.quick_failures} times in a row within "
                    f"{self.policy.quick_s:g} s of starting (last exit code {code}); not "
                    f"restarting. Last lines of {self.log_path}:\n"
                    + tail(self.log_path, self.policy.log_lines)
                )
            delay = self.policy.delay_s(self.quick_failures)
            self._next_start = now + delay
            log.warning(
                "%s exited with code %s after %.1f s; restart in %.1f s",
                self.name,
                code,
                ran,
                delay,
            )
        if self._next_start is not None and now >= self._next_start:
            self._launch(first=False)


class Supervisor:
    """A group of supervised slots, checked together."""

    def __init__(self, slots: Sequence[Supervised]) -> None:
        self.slots = list(slots)

    def start(self) -> None:
        """Start every slot."""
        for slot in self.slots:
            slot.start()

    def check(self) -> None:
        """``Supervised.check`` on every slot; raises ``SupervisionGaveUp``."""
        for slot in self.slots:
            slot.check()

    @property
    def alive(self) -> int:
        """Slots whose process is running."""
        return sum(1 for slot in self.slots if slot.alive)

    @property
    def restarts(self) -> int:
        """Restarts over all slots."""
        return sum(slot.restarts for slot in self.slots)

    def status(self) -> str:
        """``alive a/n · restarts r`` for a live view."""
        return f"{self.alive}/{len(self.slots)} · restarts {self.restarts}"
