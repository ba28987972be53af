"""The bug zoo and the bug hunt: one planted bug per server, a command line, and the hunt's check.

That the autograder catches every zoo bug is in ``tests/test_grade.py``; here, that
each zoo server really is the keeper with one change, and that the bug-hunt check
tells a starter from a solution.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chatlab.grade.checks import CATEGORIES
from chatlab.zoo import CORRECT, ZOO, ZooServer, server_class
from chatlab.zoo.__main__ import main
from chatlab.zoo.hunt import check

EXERCISE = Path(__file__).resolve().parent.parent / "exercises" / "10_bug_hunt"


def own_methods(cls: type) -> list[str]:
    return [name for name, value in vars(cls).items() if inspect.isfunction(value)]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_each_zoo_server_changes_exactly_one_method_of_the_keeper(name):
    cls = ZOO[name]
    assert cls.__bases__ == (ZooServer,)
    assert len(own_methods(cls)) == 1, own_methods(cls)
    assert cls.category in CATEGORIES
    source = inspect.getsource(cls)
    assert source.count("BUG") >= 1 and "Caught by:" in source  # the bug is marked and documented


def test_the_zoo_holds_the_bugs_it_promises():
    assert {"unlocked-roster", "no-line-buffer", "racy-names", "send-under-lock", "silent-reset",
            "leaky-private", "no-sanitizer"} <= set(ZOO)
    assert server_class(CORRECT) is ZooServer
    with pytest.raises(KeyError):
        server_class("no-such-bug")


def test_list_names_every_zoo_server_and_its_category(capsys):
    assert main(["--list"]) == 0
    listing = capsys.readouterr().out
    for name, cls in ZOO.items():
        assert name in listing and cls.category in listing


def test_an_unknown_zoo_server_is_a_usage_error(capsys):
    assert main(["no-such-bug"]) == 2
    assert "--list shows them" in capsys.readouterr().err
    assert main([]) == 2


def test_a_zoo_server_runs_and_stops_on_sigterm():
    process = subprocess.Popen([sys.executable, "-m", "chatlab.zoo", "echo", "--port", "0"],
                               stderr=subprocess.PIPE, text=True)
    try:
        first = process.stderr.readline()  # type: ignore[union-attr]
        assert "Echo listening on 127.0.0.1:" in first
    finally:
        process.terminate()
        assert process.wait(10) == 0
        process.stderr.close()  # type: ignore[union-attr]


# The bugs on which the starter and the solution are compared: the starter's one
# plain chatter catches the echo, and nothing that needs whispers, resets or pieces.
HUNT_SAMPLE = ["echo", "leaky-private", "silent-reset"]


def test_the_hunt_starter_catches_fewer_and_says_which_got_away():
    # That the solution catches all of them is tested with every exercise's solution,
    # through the runner, in test_exercises.py.
    starter = check(EXERCISE, bugs=HUNT_SAMPLE)
    assert not starter.passed
    assert len(starter.caught) < len(HUNT_SAMPLE)
    assert starter.score == f"caught {len(starter.caught)} of {len(HUNT_SAMPLE)}"
    failed = [requirement for requirement in starter.requirements if not requirement.passed]
    assert [requirement.name for requirement in failed] == ["catches every bug"]
    for missed in starter.missed:
        assert missed in failed[0].message


def test_a_scenario_that_cries_wolf_catches_nothing(tmp_path):
    (tmp_path / "hunt.py").write_text(
        "from chatlab.swarm import Bot, Scenario, poisson, task\n"
        "class Shouter(Bot):\n"
        "    wait_time = poisson(4.0)\n"
        "    @task()\n"
        "    def shout(self):\n"
        "        self.send_raw(b'no tag here\\n', 'an untagged line')\n"
        "scenario = Scenario(mix={Shouter: 1}, bots=3, duration=1.0)\n",
        encoding="utf-8",
    )
    result = check(tmp_path, bugs=["echo"])
    assert not result.passed
    alarm = next(requirement for requirement in result.requirements if requirement.name == "no false alarm")
    assert not alarm.passed and "correct server" in alarm.message
    assert result.caught == []


def test_a_broken_hunt_file_is_a_failed_requirement_not_a_crash(tmp_path):
    shutil.copy(EXERCISE / "README.md", tmp_path / "README.md")
    (tmp_path / "hunt.py").write_text("this is not python\n", encoding="utf-8")
    result = check(tmp_path)
    assert not result.passed
    assert result.requirements[0].name == "hunt.py defines a scenario"
    assert "failed to load" in result.requirements[0].message
