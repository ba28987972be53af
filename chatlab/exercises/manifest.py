"""``exercises/exercises.toml``, read and checked: the list of exercises, their files, hints and checks.

The file's format is described at its top. Everything is validated when it is
read, so a mistake in the manifest is reported once, with the exercise it is in,
instead of as a crash in the middle of a check.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

MANIFEST = "exercises.toml"


class ManifestError(Exception):
    """The manifest is missing or says something impossible."""


@dataclass(frozen=True)
class Check:
    """One check of an exercise: a callable (``call``) or a swarm run (``swarm``)."""

    name: str
    timeout: float = 120.0  #: seconds before the runner gives up on this check and names it as stuck
    call: str | None = None  #: "check.py:function" or "package.module:function"
    swarm: str | None = None  #: a scenario file, such as "bots/churn.py"
    server: str = "server.py:Server"  #: for swarm checks: the student's server class
    bots: int = 8
    duration: float = 1.0
    repeat: int = 1
    switch_interval: float | None = None
    server_options: dict[str, Any] = field(default_factory=dict)  #: keyword arguments for the server
    options: dict[str, Any] = field(default_factory=dict)  #: for call checks: every other key


@dataclass(frozen=True)
class Exercise:
    number: int  #: 1-based, in manifest order
    name: str
    folder: str
    edit: list[str]
    hints: list[str]
    checks: list[Check]

    @property
    def title(self) -> str:
        return f"{self.number}. {self.name}"


_SWARM_KEYS = {"name", "timeout", "swarm", "server", "bots", "duration", "repeat", "switch_interval", "options"}


def _check(entry: dict[str, Any], where: str) -> Check:
    if not isinstance(entry.get("name"), str):
        raise ManifestError(f"{where}: every check needs a name")
    if ("call" in entry) == ("swarm" in entry):
        raise ManifestError(f"{where}, check {entry['name']!r}: give exactly one of call = \"MODULE:FUNCTION\" or swarm = \"SCENARIO\"")
    if "call" in entry:
        if ":" not in str(entry["call"]):
            raise ManifestError(f"{where}, check {entry['name']!r}: call must look like \"check.py:function\"")
        options = {key: value for key, value in entry.items() if key not in ("name", "call", "timeout")}
        return Check(name=entry["name"], call=entry["call"], options=options, timeout=float(entry.get("timeout", 120.0)))
    unknown = set(entry) - _SWARM_KEYS
    if unknown:
        raise ManifestError(f"{where}, check {entry['name']!r}: unknown keys {sorted(unknown)}")
    return Check(
        name=entry["name"],
        timeout=float(entry.get("timeout", 120.0)),
        swarm=entry["swarm"],
        server=entry.get("server", "server.py:Server"),
        bots=int(entry.get("bots", 8)),
        duration=float(entry.get("duration", 1.0)),
        repeat=int(entry.get("repeat", 1)),
        switch_interval=entry.get("switch_interval"),
        server_options=dict(entry.get("options", {})),
    )


def load(directory: Path) -> list[Exercise]:
    """Read ``directory/exercises.toml``; raise ManifestError with a clear message if it is wrong."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ManifestError(f"no {MANIFEST} in {directory} (use --exercises DIR to point at the exercises folder)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path} is not valid TOML: {error}") from None
    exercises = []
    for number, entry in enumerate(data.get("exercise", []), start=1):
        where = f"{MANIFEST}, exercise {number}"
        for key in ("name", "folder", "edit", "hints", "check"):
            if key not in entry:
                raise ManifestError(f"{where}: missing {key!r}")
        checks = [_check(check, f"{where} ({entry['name']})") for check in entry["check"]]
        exercises.append(Exercise(number, entry["name"], entry["folder"], list(entry["edit"]), list(entry["hints"]), checks))
    if not exercises:
        raise ManifestError(f"{path} lists no [[exercise]]")
    return exercises
