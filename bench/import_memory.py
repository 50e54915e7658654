"""Import benchmark (``make bench-import``; not a test): is ``teilhabe import`` streaming?

Writes the same seeded organisation at two sizes (BENCH_IMPORT_DAYS and four times as many
days) as a Slack export ZIP and as an mbox, and runs the read phase of the import (reader,
units, pseudonymisation, the external sort by event time) in a fresh process for each. Prints
events, export size, events/s and peak RSS, and the ratio of the peak RSS of the large run to
the small one (a reader that loads its export grows with it; a streaming one stays flat once
the sort spills its runs). The baseline is the small run of the same format in this run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAYS = float(os.environ.get("BENCH_IMPORT_DAYS", "28"))
KEY = "bench-import-key-0123456789abcdef"

READ = """
import sys, time
from pathlib import Path
from rich.console import Console
from pipeline.sources.importer import ImportRun
from pipeline.settings import load_settings
fmt, source = sys.argv[1], Path(sys.argv[2])
run = ImportRun(load_settings(), fmt, source, Console(quiet=True))
t = time.perf_counter()
with run.sorted:
    n = run.read()
    sent = sum(1 for _ in run.sorted.merged())
seconds = time.perf_counter() - t
assert n == sent, (n, sent)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
print(n, seconds, int(hwm) // 1024)
"""


def write_exports(root: Path, days: float) -> dict[str, Path]:
    """The organisation of ``days`` days as a Slack ZIP and an mbox under ``root``."""
    from pipeline.dev import generator as gen
    from tests.connectors.export_mbox import write_mbox
    from tests.connectors.export_slack import write_slack_export

    spec = gen.OrgSpec(seed=7, start=datetime(2026, 1, 5, tzinfo=UTC), days=days)
    org = gen.Organisation(spec)
    events = list(org.events())
    people = {r["person_id"]: r["unit"] for r in org.directory_records()}
    root.mkdir(parents=True)
    return {
        "slack": write_slack_export(events, people, root / "slack.zip"),
        "mbox": write_mbox(events, root / "list.mbox"),
    }


def measure(fmt: str, source: Path) -> tuple[int, float, int]:
    """(events, seconds, peak RSS MB) of the read phase in a fresh process."""
    env = dict(os.environ, TEILHABE_PSEUDONYM_KEY=KEY, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", READ, fmt, str(source)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    return int(out[0]), float(out[1]), int(out[2])


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="teilhabe-bench-import-") as tmp:
        sizes = {"small": DAYS, "large": DAYS * 4}
        exports = {name: write_exports(Path(tmp) / name, d) for name, d in sizes.items()}
        print(
            f"{'format':8} {'size':6} {'days':>5} {'events':>9} {'export MB':>10} "
            f"{'events/s':>9} {'peak RSS MB':>12}"
        )
        peaks: dict[tuple[str, str], int] = {}
        for fmt in ("slack", "mbox"):
            for name, days in sizes.items():
                source = exports[name][fmt]
                n, seconds, rss = measure(fmt, source)
                peaks[fmt, name] = rss
                mb = source.stat().st_size / 1e6
                print(
                    f"{fmt:8} {name:6} {days:5.0f} {n:9,} {mb:10.1f} {n / seconds:9,.0f} {rss:12,}"
                )
        for fmt in ("slack", "mbox"):
            ratio = peaks[fmt, "large"] / peaks[fmt, "small"]
            print(f"{fmt}: peak RSS large / small = {ratio:.2f} for 4x the events")
    print(f"bench done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
