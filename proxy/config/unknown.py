"""Unknown setting names in the config file, refused with the name that was likely meant."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError


def no_unknown(path: Path, section: str, values: Mapping[str, str], known: frozenset[str]) -> None:
    """Refuse a section holding a name that is not a setting of it, naming the nearest."""
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting {', '.join(unknown)} in [{section}]"
            f"{_meant(unknown[0], known)}; known settings: {', '.join(sorted(known))}"
        )


def _meant(name: str, known: frozenset[str]) -> str:
    """The setting ``name`` was likely meant as, worded as the command line words a misspelt
    option; "" when none is near."""
    underscored = name.replace("-", "_")
    if underscored in known:  # written as its command-line option is (--read-only)
        return (
            f"; write it {underscored}: in the file, setting names have '_' where the command "
            "line has '-'"
        )
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
