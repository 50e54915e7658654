"""Unknown ``TEILHABE_*`` variables stop the start (``pipeline.settings.load_settings``): a
misspelt setting would be ignored otherwise. The message names the closest valid setting."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import ConfigError

PREFIX = "TEILHABE_"

#: ``TEILHABE_*`` variables that are read outside ``Settings`` on purpose: the path of the env
#: file itself, and the knobs of the fault tests (docs/reliability.md). Every other
#: ``TEILHABE_*`` name must be a setting.
NOT_SETTINGS = frozenset(
    {
        "TEILHABE_ENV_FILE",
        "TEILHABE_FAULTS_KILLS",
        "TEILHABE_FAULTS_OUTAGE_S",
        "TEILHABE_FAULTS_STALL_S",
    }
)


def check_known(names: Iterable[str], valid: list[str], where: str = "") -> None:
    """ConfigError for each ``TEILHABE_*`` name in ``names`` (any case) that is neither in
    ``valid`` nor in ``NOT_SETTINGS``, with the closest valid name; ``where`` says where it
    was found."""
    known = set(valid) | NOT_SETTINGS
    suffixes = [v.removeprefix(PREFIX) for v in valid]  # the prefix would make all look close
    lines = []
    for name in sorted({n.upper() for n in names if n.upper().startswith(PREFIX)} - known):
        close = difflib.get_close_matches(name.removeprefix(PREFIX), suffixes, n=1)
        hint = (
            f"did you mean {PREFIX}{close[0]}?"
            if close
            else "`teilhabe config --markdown` lists them"
        )
        lines.append(f"unknown setting {name}{where}; {hint}")
    if lines:
        raise ConfigError("\n".join(lines))


def env_file_names(env_file: object) -> list[str]:
    """Variable names in the env file(s) the settings read (none when there is none)."""
    from dotenv import dotenv_values

    files = env_file if isinstance(env_file, list | tuple) else [env_file]
    names: list[str] = []
    for file in files:
        if file is not None and Path(str(file)).is_file():
            names.extend(dotenv_values(Path(str(file)), encoding="utf-8"))
    return names
