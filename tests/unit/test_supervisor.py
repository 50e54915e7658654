"""The demo's restart supervision (pipeline/dev/supervisor.py) with real short-lived
subprocesses and a hand-driven clock: backoff, restart count, giving up, streak reset."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.dev.supervisor import RestartPolicy, Supervised, SupervisionGaveUp, Supervisor

POLICY = RestartPolicy(backoff_s=1.0, max_backoff_s=3.0, quick_s=10.0, max_quick_failures=4)


class Clock:
    """A monotonic clock moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def spawner(
    code: str, log: Path, started: list[subprocess.Popen[bytes]]
) -> Callable[[], subprocess.Popen[bytes]]:
    """A spawn function running ``python -c code`` with output appended to ``log``."""

    def spawn() -> subprocess.Popen[bytes]:
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT
            )
        started.append(proc)
        return proc

    return spawn


def exited(slot: Supervised) -> None:
    """Wait (no clock involved) for the slot's current process to end."""
    assert slot.proc is not None
    slot.proc.wait(timeout=30)


def test_quick_failures_back_off_doubling_then_give_up_with_exit_code_and_log(
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker-0.log"
    started: list[subprocess.Popen[bytes]] = []
    code = "import sys; print('bad TEILHABE_SETTING', flush=True); sys.exit(3)"
    clock = Clock()
    slot = Supervised("worker-0", spawner(code, log, started), log, POLICY, clock)
    slot.start()
    delays: list[float] = []
    for _ in range(POLICY.max_quick_failures - 1):
        exited(slot)
        slot.check()  # notices the exit, schedules a restart
        assert slot.proc is None and slot.last_exit == 3
        waited = 0.0
        while slot.proc is None:
            clock.now += 0.25
            waited += 0.25
            slot.check()
        delays.append(waited)
    assert delays == [1.0, 2.0, 3.0]  # doubling, capped at max_backoff_s
    assert slot.restarts == POLICY.max_quick_failures - 1
    exited(slot)
    with pytest.raises(SupervisionGaveUp) as info:
        slot.check()
    message = str(info.value)
    assert "last exit code 3" in message and "bad TEILHABE_SETTING" in message
    assert len(started) == POLICY.max_quick_failures
    for _ in range(3):  # nothing else is started after giving up
        clock.now += 100
        slot.check()
    assert len(started) == POLICY.max_quick_failures and slot.proc is None


def test_a_long_run_resets_the_streak_and_a_kill_is_restarted(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    started: list[subprocess.Popen[bytes]] = []
    clock = Clock()
    slot = Supervised(
        "worker-0", spawner("import time; time.sleep(120)", log, started), log, POLICY, clock
    )
    group = Supervisor([slot])
    group.start()
    try:
        for i in range(POLICY.max_quick_failures + 2):  # more kills than quick failures allowed
            clock.now += POLICY.quick_s  # each run lasts long enough not to be quick
            assert slot.proc is not None
            slot.proc.kill()
            exited(slot)
            group.check()
            assert slot.quick_failures == 0 and slot.last_exit == -9
            assert group.status() == f"0/1 · restarts {i}"
            clock.now += POLICY.backoff_s
            group.check()
            assert group.alive == 1 and group.restarts == i + 1
        assert len({p.pid for p in started}) == len(started) == POLICY.max_quick_failures + 3
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_clean_exit_is_restarted_too(tmp_path: Path) -> None:
    clock = Clock()
    started: list[subprocess.Popen[bytes]] = []
    slot = Supervised("gen", spawner("pass", tmp_path / "log", started), None, POLICY, clock)
    slot.start()
    exited(slot)
    slot.check()
    clock.now += POLICY.backoff_s - 0.5
    slot.check()
    assert len(started) == 1  # backoff not over
    clock.now += 0.5
    slot.check()
    assert len(started) == 2 and slot.restarts == 1 and slot.last_exit == 0
    exited(slot)
