"""Logging as ``key=value`` lines; never a person id (ids are pseudonymised before logging)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once for a Teilhabe process."""
    root = logging.getLogger()
    if getattr(root, "_teilhabe", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kafka", "aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    root._teilhabe = True  # type: ignore[attr-defined]
