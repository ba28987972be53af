"""The bug hunt: run a student's bot scenario against every zoo server and count the bugs it catches.

The exercise (``exercises/10_bug_hunt``) asks for a scenario file, ``hunt.py``, whose
bots make every planted bug of the zoo show. :func:`check` runs it:

1. against the correct zoo server, where the swarm's checker must find nothing (a
   scenario that cries wolf catches nothing: its alarms mean nothing);
2. against each zoo server, where a bug counts as *caught* when the checker finds a
   violation, or when the server disconnected a bot that had done nothing wrong, or
   answered ``/users`` without the asker. A bug missed in the first run gets a second
   run with another seed (races do not show every time); the correct server must
   pass both runs.

The result says which requirement passed, which failed and why, and the score,
"caught k of n"::

    from chatlab.zoo.hunt import check
    result = check("exercises/10_bug_hunt")
    result.passed, result.score, result.caught, result.missed
    for requirement in result.requirements:
        print(requirement.passed, requirement.name, requirement.message)

The zoo servers run in their own processes with a tiny thread switch interval
(races show up in seconds), a 64 KiB outbox and a 16 KiB kernel send buffer per
client (a client that stops reading fills them in a fraction of a second).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from chatlab.grade.checks import describe_violations, unexpected_disconnects, users_answers_without_asker
from chatlab.grade.grader import GradeError, ServerProcess
from chatlab.swarm import checker
from chatlab.swarm.engine import ScenarioError, load_scenario, run_bots
from chatlab.swarm.scenario import Scenario
from chatlab.zoo import CORRECT, ZOO

SCENARIO_FILE = "hunt.py"
MAX_BOTS = 40  # a hunt may not ask for more bots than this...
MAX_DURATION = 4.0  # ...or more seconds of steady phase, so that a check stays quick
SERVER_OPTIONS = "--outbox 65536 --send-buffer 16384"
PARALLEL = 3  # zoo servers hunted at the same time


@dataclass(frozen=True)
class Requirement:
    """One thing the exercise asks for, and whether the student's file does it."""

    name: str  #: short, e.g. "catches every bug"
    passed: bool
    message: str  #: what was expected and what happened, in plain words


@dataclass
class HuntResult:
    """The verdict on one hunt: the requirements, and the bugs caught and missed."""

    requirements: list[Requirement] = field(default_factory=list)
    caught: list[str] = field(default_factory=list)  #: zoo names whose bug the scenario caught
    missed: list[str] = field(default_factory=list)  #: zoo names whose bug went unnoticed
    findings: dict[str, str] = field(default_factory=dict)  #: zoo name (or "correct") -> what the checker said

    @property
    def passed(self) -> bool:
        """True when every requirement passed."""
        return bool(self.requirements) and all(requirement.passed for requirement in self.requirements)

    @property
    def score(self) -> str:
        """``"caught k of n"``."""
        return f"caught {len(self.caught)} of {len(self.caught) + len(self.missed)}"


def hunt_one(scenario: Scenario, name: str, seed: int) -> str | None:
    """Run ``scenario`` against the zoo server ``name``; what was found, or None if nothing."""
    server = ServerProcess(f"{{python}} -m chatlab.zoo {name} --port {{port}} {SERVER_OPTIONS}")
    try:
        server.start()
        raw = run_bots(scenario, server.address, seed=seed)
    except GradeError as error:
        return f"the zoo server {name} did not start: {error}"
    finally:
        server.stop()
        server.close()
    result = checker.check(raw.events, drain_end_ns=raw.drain_end_ns)
    problems = describe_violations(result, examples=3) + unexpected_disconnects(raw.events)
    problems += users_answers_without_asker(raw.events)
    return "\n".join(problems) if problems else None


def check(exercise_dir: str | Path, *, bugs: list[str] | None = None, seed: int = 1) -> HuntResult:
    """Run ``exercise_dir/hunt.py`` against the correct server and every zoo server.

    ``bugs`` limits the hunt to some zoo servers (default: all of them). Never
    raises for a broken scenario file: that is a failed requirement with its reason.
    """
    result = HuntResult()
    path = Path(exercise_dir) / SCENARIO_FILE
    try:
        scenario = load_scenario(path)
    except ScenarioError as error:
        result.requirements.append(Requirement("hunt.py defines a scenario", False, str(error)))
        return result
    scenario = dataclasses.replace(
        scenario, bots=min(scenario.bots, MAX_BOTS), duration=min(scenario.duration, MAX_DURATION),
        ramp_up=min(scenario.ramp_up, 1.0), drain=min(scenario.drain, 3.0),
    )
    if len(scenario.population()) > MAX_BOTS + 10:
        result.requirements.append(Requirement(
            "hunt.py defines a scenario", False, f"the scenario has {len(scenario.population())} bots; keep it under {MAX_BOTS + 10}"))
        return result
    result.requirements.append(Requirement("hunt.py defines a scenario", True, f"{len(scenario.population())} bots, "
                                           f"{scenario.duration:g} s of steady phase"))
    names = bugs if bugs is not None else list(ZOO)
    unknown = [name for name in names if name not in ZOO]
    if unknown:
        raise ValueError(f"no zoo server called {unknown[0]!r}")
    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="hunt") as pool:
        verdicts = dict(zip([CORRECT, *names], pool.map(lambda name: hunt_one(scenario, name, seed), [CORRECT, *names]), strict=True))
        # A race does not show in every run: a bug that went unnoticed gets another run,
        # with another seed (and so does the correct server, which must pass both).
        again = [name for name in names if verdicts[name] is None]
        if again and verdicts[CORRECT] is None:
            second = [CORRECT, *again]
            for name, verdict in zip(second, pool.map(lambda name: hunt_one(scenario, name, seed + 1), second), strict=True):
                verdicts[name] = verdicts[name] or verdict
    false_alarm = verdicts.pop(CORRECT)
    if false_alarm is not None:
        result.findings[CORRECT] = false_alarm
        result.requirements.append(Requirement(
            "no false alarm", False,
            "against the correct server your scenario should find nothing, but the checker found:\n" + false_alarm
            + "\nA bug only counts as caught when the same scenario passes on the correct server."))
        result.missed = names
        result.requirements.append(Requirement("catches every bug", False, "caught 0: fix the false alarm first"))
        return result
    result.requirements.append(Requirement("no false alarm", True, "the correct server passes your scenario"))
    for name, finding in verdicts.items():
        if finding is None:
            result.missed.append(name)
        else:
            result.caught.append(name)
            result.findings[name] = finding
    if result.missed:
        hints = "\n".join(f"  {name}: {ZOO[name].description} (hint: think about {ZOO[name].category})"
                          for name in result.missed)
        message = f"{result.score}; these bugs went unnoticed:\n{hints}"
    else:
        message = f"{result.score}: every planted bug made the checker complain"
    result.requirements.append(Requirement("catches every bug", not result.missed, message))
    return result
