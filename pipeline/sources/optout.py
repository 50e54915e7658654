"""The opt-out file (``TEILHABE_OPT_OUT_FILE``) as a set of pseudonyms, re-read when it changes.

One person per line as the platform knows them (e-mail address, user id); blank lines and
``#`` comments are skipped (``pipeline.metrics.enrich.parse_opt_out``). Each id is pseudonymised
with the worker's key at load, so raw ids stay in the file only. The ingest agent asks
``reload_if_changed`` on a timer (docs/privacy.md, "Opt-out").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.errors import ConfigError
from pipeline.metrics.enrich import opt_out_pseudonyms, parse_opt_out

log = logging.getLogger("teilhabe.optout")


class OptOutList:
    """The opted-out pseudonyms of one file (empty without a file).

    A missing or unreadable file at start is a ConfigError; later, the last list read stays in
    force (a file being replaced must not let people back in) and a warning is logged.
    """

    def __init__(self, path: Path | None, pseudonymise: Pseudonymiser) -> None:
        self.path = path
        self._pseudonymise = pseudonymise
        self.pseudonyms: frozenset[str] = frozenset()
        self._stamp: tuple[int, int, int] | None = None
        self._failing = False
        if path is not None:
            try:
                self._load(self._stat(path))
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"TEILHABE_OPT_OUT_FILE {path}: {exc}") from exc

    @staticmethod
    def _stat(path: Path) -> tuple[int, int, int]:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _load(self, stamp: tuple[int, int, int]) -> None:
        assert self.path is not None
        text = self.path.read_text(encoding="utf-8")
        self.pseudonyms = opt_out_pseudonyms(parse_opt_out(text), self._pseudonymise)
        self._stamp = stamp
        log.info("opt-out list loaded from %s: %d people", self.path, len(self.pseudonyms))

    def reload_if_changed(self) -> bool:
        """Re-read the file when its mtime, size or inode changed; True when it was re-read."""
        if self.path is None:
            return False
        try:
            stamp = self._stat(self.path)
            if stamp == self._stamp:
                return False
            self._load(stamp)
        except (OSError, UnicodeDecodeError) as exc:
            if not self._failing:
                log.warning(
                    "opt-out file %s unreadable (%s): the last list (%d people) stays in force",
                    self.path,
                    exc,
                    len(self.pseudonyms),
                )
            self._failing = True
            return False
        self._failing = False
        return True
