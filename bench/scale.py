"""Teilhabe at real size (``make bench-scale``; not a test).

Generates one large organisation (``teilhabe generate --people ... --events ...``), then runs
``teilhabe backfill`` (which starts the embedded stack itself) over histories of growing
length, each a prefix of the same history, and prints side by side: events, wall seconds,
events/s and the peak RSS (``VmHWM``) of each process of the run, found as descendants of
the backfill process: the worker(s), the ClickHouse gateway (``pipeline.dev.chserver``), the
embedded broker and the backfill CLI itself. A worker holds only open windows, so its peak
RSS must not grow with the history's length: the ratio largest/smallest is printed.

Environment: BENCH_SCALE_SIZES (default 1000000,5000000), BENCH_SCALE_PEOPLE (100000),
BENCH_SCALE_WORKERS (1), BENCH_SCALE_DIR (default: a temporary directory, removed after).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEILHABE = Path(sys.executable).with_name("teilhabe")

SIZES = [int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "1000000,5000000").split(",") if s]
PEOPLE = int(os.environ.get("BENCH_SCALE_PEOPLE", "100000"))
WORKERS = int(os.environ.get("BENCH_SCALE_WORKERS", "1"))
EVENTS_PER_USER_DAY = 10.0
POLL_S = 0.2
SCRAPE_S = 2.0
ROLES = ("worker", "clickhouse gateway", "broker", "backfill CLI", "other")


def bench_env(root: Path) -> dict[str, str]:
    """Environment of a backfill run under ``root``: embedded stack, metrics on a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEILHABE_")}
    env.update(
        {
            "TEILHABE_DATA_DIR": str(root / "var"),
            "TEILHABE_CLICKHOUSE_DSN": f"chdb://{root / 'var' / 'clickhouse'}",
            "TEILHABE_PSEUDONYM_KEY": "bench-key-0123456789abcdef",
            "TEILHABE_METRICS_PORT": "0",
            "TEILHABE_LOG_LEVEL": "WARNING",
        }
    )
    return env


# --- processes ---------------------------------------------------------------------------


def children_of(root_pid: int) -> set[int]:
    """Every live descendant of ``root_pid`` (from /proc/<pid>/stat's parent pid)."""
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = [root_pid]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set of a process (kB), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def role_of(pid: int, backfill_pid: int) -> str:
    """What a process of the run is, from its command line."""
    if pid == backfill_pid:
        return "backfill CLI"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    if "pipeline.dev.chserver" in cmd:
        return "clickhouse gateway"
    if "worker" in cmd and ("pipeline.cli.main" in cmd or "teilhabe" in cmd):
        return "worker"
    if "tansu" in cmd or " broker " in f"{cmd} ":
        return "broker"
    return "other"


@dataclass
class Run:
    """One backfill's figures."""

    events: int
    seconds: float = 0.0
    startup: float = 0.0  # until the first worker process appeared (stack up)
    in_clickhouse: int = -1
    late: int = -1
    peak_kb: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM
    open_window_events: float = 0.0  # peak of the workers' teilhabe_open_window_events
    input_lag: float = 0.0  # peak consumer lag on the events topic (messages)
    activity_lag: float = 0.0  # peak consumer lag on the activity topic (messages)
    roles: dict[int, str] = field(default_factory=dict)

    def peak_mb(self, role: str) -> float:
        """Sum over the processes of ``role`` of their peak RSS (MB; one worker: its peak)."""
        return sum(kb for pid, kb in self.peak_kb.items() if self.roles[pid] == role) / 1024

    def count(self, role: str) -> int:
        return sum(1 for r in self.roles.values() if r == role)


def backfill(events: Path, directory: Path, n: int, root: Path) -> Run:
    """Run ``teilhabe backfill`` on ``events``; poll the peak RSS of its process tree."""
    run = Run(events=n)
    log = root / "backfill.log"
    cmd = [str(TEILHABE), "backfill", str(events), "--directory", str(directory)]
    cmd += ["--workers", str(WORKERS)]
    started = time.perf_counter()
    scraped = 0.0
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=bench_env(root), cwd=root, stdout=out, stderr=out)
        while proc.poll() is None:
            if time.perf_counter() - scraped >= SCRAPE_S:  # rarely: a scrape costs the worker
                scraped = time.perf_counter()
                workers = [pid for pid, role in run.roles.items() if role == "worker"]
                windows, input_lag, activity_lag = scrape_workers(root, workers)
                run.open_window_events = max(run.open_window_events, windows)
                run.input_lag = max(run.input_lag, input_lag)
                run.activity_lag = max(run.activity_lag, activity_lag)
            for pid in {proc.pid} | children_of(proc.pid):
                if pid not in run.roles:
                    run.roles[pid] = role_of(pid, proc.pid)
                    if run.roles[pid] == "worker" and not run.startup:
                        run.startup = time.perf_counter() - started
                kb = vm_hwm_kb(pid)
                if kb:  # a high-water mark: the last reading before the exit is the peak
                    run.peak_kb[pid] = max(run.peak_kb.get(pid, 0), kb)
            time.sleep(POLL_S)
    run.seconds = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"backfill of {n} events failed ({proc.returncode}):\n{text[-3000:]}")
    m = re.search(r"backfill done: (\d+) events in ClickHouse, \d+ window rows, (\d+) late", text)
    if m:
        run.in_clickhouse, run.late = int(m.group(1)), int(m.group(2))
    return run


def scrape_workers(root: Path, pids: list[int]) -> tuple[float, float, float]:
    """(events held in open windows, consumer lag on the events and on the activity topic)
    summed over the workers' /metrics (ports from the stack's port files); 0 when not up."""
    windows = input_lag = activity_lag = 0.0
    for pid in pids:
        try:
            port = (root / "var" / "run" / f"worker-{pid}.metrics").read_text().strip()
            url = f"http://127.0.0.1:{port}/metrics"
            text = urllib.request.urlopen(url, timeout=2).read().decode()
        except (OSError, ValueError):
            continue
        for line in text.splitlines():
            if line.startswith("teilhabe_open_window_events"):
                windows += float(line.rsplit(" ", 1)[1])
            elif line.startswith("teilhabe_consumer_lag_messages{"):
                value = float(line.rsplit(" ", 1)[1])
                if "activity" in line:
                    activity_lag += value
                else:
                    input_lag += value
    return windows, input_lag, activity_lag


# --- input -------------------------------------------------------------------------------


def generate(root: Path, n: int) -> tuple[Path, Path, float]:
    """The largest history: ``n`` events of ``PEOPLE`` people; returns (events, directory, s)."""
    days = math.ceil(n / (PEOPLE * EVENTS_PER_USER_DAY) * 1.5) + 2  # weekends are quieter
    events, directory = root / f"events-{n}.jsonl", root / "directory.jsonl"
    cmd = [str(TEILHABE), "generate", "--out", str(events), "--directory-out", str(directory)]
    cmd += ["--seed", "5", "--people", str(PEOPLE), "--days", str(days), "--events", str(n)]
    started = time.perf_counter()
    subprocess.run(cmd, env=bench_env(root), cwd=root, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    lines = _count_lines(events)
    if lines != n:
        raise SystemExit(f"generate wrote {lines} events, not {n}")
    return events, directory, seconds


def prefix(source: Path, n: int, target: Path) -> Path:
    """The first ``n`` lines of ``source`` (the same history, shorter), streamed."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        for i, line in enumerate(src):
            if i >= n:
                break
            dst.write(line)
    return target


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            n += block.count(b"\n")
    return n


# --- report ------------------------------------------------------------------------------


def table(runs: list[Run]) -> str:
    """The runs side by side."""
    width = 14
    rows: list[tuple[str, list[str]]] = [
        ("events", [f"{r.events:,}" for r in runs]),
        ("in ClickHouse (late)", [f"{r.in_clickhouse:,} ({r.late})" for r in runs]),
        ("wall seconds", [f"{r.seconds:,.1f}" for r in runs]),
        ("events/s (wall)", [f"{r.events / r.seconds:,.0f}" for r in runs]),
        ("  of which stack start s", [f"{r.startup:,.1f}" for r in runs]),
        ("events/s after start", [f"{r.events / (r.seconds - r.startup):,.0f}" for r in runs]),
    ]
    rows.append(("peak events in open windows", [f"{r.open_window_events:,.0f}" for r in runs]))
    rows.append(("peak input lag (messages)", [f"{r.input_lag:,.0f}" for r in runs]))
    rows.append(("peak activity lag (messages)", [f"{r.activity_lag:,.0f}" for r in runs]))
    for role in ROLES:
        if any(r.count(role) for r in runs):
            label = f"peak RSS {role} MB"
            if role == "worker" and WORKERS > 1:
                label = f"peak RSS {WORKERS} workers MB"
            rows.append((label, [f"{r.peak_mb(role):,.0f}" for r in runs]))
    out = [f"{'':<34}" + "".join(f"{r.events:>{width},}" for r in runs)]
    out += [f"{label:<34}" + "".join(f"{v:>{width}}" for v in values) for label, values in rows]
    return "\n".join(out)


def main() -> None:
    sizes = sorted(set(SIZES))
    keep = os.environ.get("BENCH_SCALE_DIR")
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="teilhabe-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        largest = sizes[-1]
        print(f"generating {largest:,} events of {PEOPLE:,} people ...", flush=True)
        events, directory, gen_s = generate(root, largest)
        size_mb = events.stat().st_size / 1e6
        print(
            f"generate: {largest:,} events ({size_mb:,.0f} MB) in {gen_s:.1f} s "
            f"= {largest / gen_s:,.0f} events/s",
            flush=True,
        )
        runs = []
        for n in sizes:
            path = events if n == largest else prefix(events, n, root / f"events-{n}.jsonl")
            run_root = root / f"run-{n}"
            run_root.mkdir(exist_ok=True)
            print(f"backfill of {n:,} events ...", flush=True)
            runs.append(backfill(path, directory, n, run_root))
            print(
                f"  {runs[-1].seconds:.1f} s, {n / runs[-1].seconds:,.0f} events/s, "
                f"worker peak RSS {runs[-1].peak_mb('worker'):,.0f} MB",
                flush=True,
            )
            if path != events:
                path.unlink()
            shutil.rmtree(run_root / "var", ignore_errors=True)
        print()
        print(table(runs))
        if len(runs) > 1:
            small, big = runs[0], runs[-1]
            ratio = big.peak_mb("worker") / small.peak_mb("worker")
            print(
                f"worker peak RSS {big.events:,}/{small.events:,} = {ratio:.2f} "
                f"(history {big.events / small.events:.0f}x as long; target: ~1, it holds "
                "only open windows)"
            )
        missing = [r.events for r in runs if r.in_clickhouse not in (-1, r.events)]
        if missing:
            print(f"WARNING: not every event reached ClickHouse in the runs of {missing}")
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
