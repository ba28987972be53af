"""The exercises cannot rot: every starter fails its checks, every solution passes them.

Each test works on a temporary copy of the exercises folder, so nothing in the
repository changes. The runner's commands (list, hint, reset, next, the progress
file) are tested on such a copy too.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chatlab.exercises import runner
from chatlab.exercises.manifest import load

EXERCISES = Path(__file__).resolve().parent.parent / "exercises"
MANIFEST = load(EXERCISES)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A fresh copy of the exercises folder, without progress."""
    target = tmp_path / "exercises"
    shutil.copytree(EXERCISES, target, ignore=shutil.ignore_patterns(".progress.json", "*.bak", "__pycache__"))
    return target


def _verdicts(directory: Path, exercise) -> tuple[bool, str]:
    out = io.StringIO()
    passed = runner.check_exercise(directory, exercise, out)
    return passed, out.getvalue()


@pytest.mark.parametrize("exercise", MANIFEST, ids=lambda exercise: exercise.folder)
def test_the_starter_fails_its_checks(copy, exercise):
    passed, report = _verdicts(copy, exercise)
    assert not passed, report
    assert "✗" in report and "expected:" in report
    for check in exercise.checks:
        if check.switch_interval is not None:  # a race check: the starter must fail every run, not most
            assert f"{check.name} (passed 0 of {check.repeat})" in report, report


@pytest.mark.parametrize("exercise", MANIFEST, ids=lambda exercise: exercise.folder)
def test_the_solution_passes_its_checks(copy, exercise):
    for name in exercise.edit:
        shutil.copyfile(copy / "solutions" / exercise.folder / name, copy / exercise.folder / name)
    passed, report = _verdicts(copy, exercise)
    assert passed, report
    assert "✗" not in report


@pytest.mark.parametrize("exercise", MANIFEST, ids=lambda exercise: exercise.folder)
def test_every_exercise_is_complete(exercise):
    folder = EXERCISES / exercise.folder
    assert (folder / "README.md").is_file()
    for check in exercise.checks:
        if check.call is not None and check.call.partition(":")[0].endswith(".py"):
            assert (folder / check.call.partition(":")[0]).is_file(), f"{check.call} is missing"
    assert exercise.checks
    assert len(exercise.hints) >= 2 and "Read more" in exercise.hints[-1]
    for name in exercise.edit:
        starter = (folder / name).read_text(encoding="utf-8")
        assert "TODO" in starter, f"{exercise.folder}/{name} has no TODO marker"
        assert (EXERCISES / "starters" / exercise.folder / name).read_text(encoding="utf-8") == starter, (
            "the reset copy in starters/ differs from the starter"
        )
        assert (EXERCISES / "solutions" / exercise.folder / name).is_file()
        assert "TODO" not in (EXERCISES / "solutions" / exercise.folder / name).read_text(encoding="utf-8")


def test_hints_come_one_at_a_time_and_are_remembered(copy):
    out = io.StringIO()
    assert runner.command_hint(copy, "1", out) == 0
    assert "hint 1 of 3" in out.getvalue() and "hint 2" not in out.getvalue()
    out = io.StringIO()
    runner.command_hint(copy, "framing", out)
    assert "hint 2 of 3" in out.getvalue() and "hint 3" not in out.getvalue()
    assert runner.Progress(copy).hints == {"framing": 2}


def test_reset_asks_keeps_a_backup_and_restores_the_starter(copy):
    edited = copy / "01_framing" / "framing.py"
    starter = edited.read_text(encoding="utf-8")
    edited.write_text("my work\n", encoding="utf-8")
    assert runner.command_reset(copy, "1", False, io.StringIO(), ask=lambda question: "n") == 1
    assert edited.read_text(encoding="utf-8") == "my work\n"
    assert runner.command_reset(copy, "1", False, io.StringIO(), ask=lambda question: "y") == 0
    assert edited.read_text(encoding="utf-8") == starter
    backups = list((copy / "01_framing").glob("framing.py.*.bak"))
    assert [backup.read_text(encoding="utf-8") for backup in backups] == ["my work\n"]


def test_check_records_progress_and_list_shows_it(copy):
    shutil.copyfile(copy / "solutions" / "01_framing" / "framing.py", copy / "01_framing" / "framing.py")
    assert runner.main(str(copy), "check", "1", out=io.StringIO()) == 0
    assert runner.main(str(copy), "check", "2", out=io.StringIO()) == 1
    assert runner.Progress(copy).status == {"framing": "done", "names": "failing"}
    out = io.StringIO()
    runner.main(str(copy), "list", out=out)
    assert f"1/{len(MANIFEST)} done" in out.getvalue() and "failing" in out.getvalue() and "not started" in out.getvalue()
    out = io.StringIO()
    runner.main(str(copy), "next", out=out)
    assert "Next: 2. names" in out.getvalue()


def test_an_unknown_exercise_is_a_clear_error(copy, capsys):
    assert runner.main(str(copy), "check", "42", out=io.StringIO()) == 2
    assert "no exercise '42'" in capsys.readouterr().err


class _Announcing(io.StringIO):
    """An output stream that sets an event when a given text has been written."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def write(self, data: str) -> int:
        written = super().write(data)
        if self.text in self.getvalue():
            self.seen.set()
        return written


def test_watch_checks_again_when_the_file_is_saved(copy):
    out = _Announcing("watch: waiting for a save of framing.py")
    keyboard_read, keyboard_write = os.pipe()  # a keyboard nobody types on
    with os.fdopen(keyboard_read) as keyboard, os.fdopen(keyboard_write, "w"):
        watcher = threading.Thread(
            target=runner.command_watch, args=(copy, out), kwargs={"interval": 0.05, "keyboard": keyboard, "rounds": 2},
            name="watch",
        )
        watcher.start()
        try:
            assert out.seen.wait(30), out.getvalue()
            solved = (copy / "solutions" / "01_framing" / "framing.py").read_text(encoding="utf-8")
            (copy / "01_framing" / "framing.py").write_text(solved + "\n", encoding="utf-8")  # the student saves
        finally:
            watcher.join(30)
    assert not watcher.is_alive()
    assert "1. framing: done" in out.getvalue()
    assert runner.Progress(copy).status["framing"] == "done"


def test_watch_checks_again_on_enter_and_quits_on_q(copy):
    keyboard_read, keyboard_write = os.pipe()
    with os.fdopen(keyboard_read) as keyboard, os.fdopen(keyboard_write, "w") as typing:
        typing.write("\nq\n")  # Enter (check now), then q
        typing.flush()
        out = io.StringIO()
        assert runner.command_watch(copy, out, interval=0.05, keyboard=keyboard) == 0
    assert out.getvalue().count("1. framing: not yet") == 2


def test_a_check_can_be_any_callable_named_module_colon_function(tmp_path, monkeypatch):
    """A manifest entry is enough to add an exercise whose check lives in any module."""
    (tmp_path / "scoring_for_test.py").write_text(
        "from types import SimpleNamespace as Result\n"
        "def score(context):\n"
        "    caught = context.options['caught']\n"
        "    return Result(requirements=[Result(name=f'catches bug {n}', passed=n in caught, expected='caught', got='missed')\n"
        "                                for n in (1, 2)])\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = tmp_path / "exercises"
    (folder / "10_hunt").mkdir(parents=True)
    (folder / "10_hunt" / "hunt.py").write_text("# TODO: write a scenario\n", encoding="utf-8")
    (folder / "exercises.toml").write_text(
        '[[exercise]]\nname = "hunt"\nfolder = "10_hunt"\nedit = ["hunt.py"]\nhints = ["look", "Read more: here"]\n'
        '  [[exercise.check]]\n  name = "bugs caught"\n  call = "scoring_for_test:score"\n  caught = [1]\n',
        encoding="utf-8",
    )
    out = io.StringIO()
    assert runner.main(str(folder), "check", "hunt", out=out) == 1
    assert "✓ catches bug 1" in out.getvalue()
    assert "✗ catches bug 2" in out.getvalue() and "got:      missed" in out.getvalue()


def test_a_broken_manifest_or_folder_is_a_clear_error(tmp_path, capsys):
    assert runner.main(str(tmp_path / "nowhere"), "list", out=io.StringIO()) == 2
    assert "no exercises folder" in capsys.readouterr().err
    (tmp_path / "exercises.toml").write_text('[[exercise]]\nname = "x"\n', encoding="utf-8")
    assert runner.main(str(tmp_path), "list", out=io.StringIO()) == 2
    assert "missing 'folder'" in capsys.readouterr().err


def test_the_command_line_refuses_a_reset_it_cannot_ask_about(copy):
    result = subprocess.run(
        [sys.executable, "-m", "chatlab", "ex", "--exercises", str(copy), "reset", "1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--yes" in result.stderr and "Traceback" not in result.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "chatlab", "ex", "--exercises", str(copy), "list"], capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0 and f"0/{len(MANIFEST)} done" in listing.stdout


def test_a_check_that_never_ends_is_named_and_abandoned(tmp_path, monkeypatch):
    """An endless loop in a student's code must not hang the runner: the check is reported as stuck."""
    release = threading.Event()
    module = tmp_path / "endless_for_test.py"
    module.write_text("def check(context):\n    context.options['release'].wait(60)\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    from chatlab.exercises.manifest import Check, Exercise

    exercise = Exercise(1, "loop", "01_loop", ["loop.py"], ["a", "Read more"], [])
    check = Check(name="forever", call="endless_for_test:check", options={"release": release}, timeout=0.2)
    try:
        result = runner.run_check(tmp_path, exercise, check)
    finally:
        release.set()  # the stuck check thread may now end, so that no thread outlives the test
    assert not result.passed
    assert result.requirements[0].name == "forever: finishes within 0.2 s"
    assert result.requirements[0].got.startswith("still running")
