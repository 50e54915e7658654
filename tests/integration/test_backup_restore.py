"""The backup SQL of docs/operations.md, run on the embedded ClickHouse (chDB) with the
backups disk of the doc's config snippet: ``BACKUP DATABASE`` (full and incremental),
``RESTORE DATABASE`` after the database was renamed aside or dropped, and ``teilhabe
migrate`` on the restored database (the recorded checksums come back with it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import migrated_clickhouse

pytestmark = pytest.mark.integration

BACKUPS_XML = """<clickhouse>
  <storage_configuration>
    <disks>
      <backups>
        <type>local</type>
        <path>{path}/</path>
      </backups>
    </disks>
  </storage_configuration>
  <backups>
    <allowed_disk>backups</allowed_disk>
    <allowed_path>{path}/</allowed_path>
  </backups>
</clickhouse>
"""

#: Runs in its own process: chDB admits one session per data directory and per process.
SCRIPT = """
import json, sys
from chdb import session
s = session.Session(sys.argv[1] + "?config-file=" + sys.argv[2])
def q(sql):
    return s.query(sql, "TSV").bytes().decode().strip()
FIGURES = (
    "SELECT (SELECT count() FROM teilhabe.events FINAL),"
    " (SELECT groupArray((partition, offset)) FROM (SELECT partition, offset"
    "  FROM teilhabe.stream_checkpoints FINAL ORDER BY partition)),"
    " (SELECT count() FROM system.tables WHERE database = 'teilhabe')"
)
out = {"at_backup": q(FIGURES)}
q("BACKUP DATABASE teilhabe TO Disk('backups', 'full')")
q("INSERT INTO teilhabe.events (event_id, event_type, ts_ms, actor_id, actor_unit, is_late,"
  " version) SELECT 'later-' || toString(number), 'post_created', 1767225600000 + number, 'a',"
  " 'IT', 0, 1 FROM numbers(5)")
q("INSERT INTO teilhabe.stream_checkpoints (consumer_group, topic, partition, offset, state)"
  " VALUES ('teilhabe', 'teilhabe.activity', 0, 999, '{}')")
out["changed"] = q(FIGURES)
q("BACKUP DATABASE teilhabe TO Disk('backups', 'incremental')"
  " SETTINGS base_backup = Disk('backups', 'full')")
q("RENAME DATABASE teilhabe TO teilhabe_before_restore")
q("RESTORE DATABASE teilhabe FROM Disk('backups', 'full')")
out["restored_full"] = q(FIGURES)
q("DROP DATABASE teilhabe SYNC")
q("RESTORE DATABASE teilhabe FROM Disk('backups', 'incremental')")
out["restored_incremental"] = q(FIGURES)
q("DROP DATABASE teilhabe SYNC")
q("RESTORE DATABASE teilhabe FROM Disk('backups', 'full')")
q("DROP DATABASE teilhabe_before_restore SYNC")
s.close()
print(json.dumps(out))
"""


def test_backup_and_restore_of_the_database_on_chdb(tmp_path: Path) -> None:
    with migrated_clickhouse(tmp_path) as client:
        client.command(
            "INSERT INTO teilhabe.events (event_id, event_type, ts_ms, actor_id, actor_unit,"
            " is_late, version) SELECT toString(number), 'post_created',"
            " 1764547200000 + number * 1000, toString(number % 7), 'IT', 0, 1 FROM numbers(1000)"
        )
        client.command(
            "INSERT INTO teilhabe.stream_checkpoints (consumer_group, topic, partition, offset,"
            " state) VALUES ('teilhabe', 'teilhabe.activity', 0, 120, '{}'),"
            " ('teilhabe', 'teilhabe.activity', 1, 80, '{}')"
        )
        tables = int(
            client.command("SELECT count() FROM system.tables WHERE database = 'teilhabe'")
        )
    backups = tmp_path / "backups"
    backups.mkdir()
    config = tmp_path / "backups.xml"
    config.write_text(BACKUPS_XML.format(path=backups))
    data = tmp_path / "var" / "clickhouse"
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data), str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    at_backup = f"1000\t[(0,120),(1,80)]\t{tables}"
    assert out["at_backup"] == at_backup
    assert out["changed"] == f"1005\t[(0,999),(1,80)]\t{tables}"  # the check can fail
    assert out["restored_full"] == at_backup
    assert out["restored_incremental"] == out["changed"]
    assert (backups / "full").is_dir() and (backups / "incremental").is_dir()

    with migrated_clickhouse(tmp_path) as client:  # migrate accepts the restored database
        assert client.command("SELECT count() FROM teilhabe.events FINAL") == 1000
        assert client.command("SELECT count() FROM teilhabe.schema_migrations FINAL") >= 3
