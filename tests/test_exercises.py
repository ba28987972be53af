"""The exercises cannot rot: every starter fails its checks, every solution passes them.

Each test works on a temporary copy of the exercises folder, so nothing in the
repository changes. The runner's commands (list, hint, reset, next, the progress
file) are tested on such a copy too.
"""

from __future__ import annotations

import io
import shutil
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
    assert (folder / "check.py").is_file()
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
    assert "1/9 done" in out.getvalue() and "failing" in out.getvalue() and "not started" in out.getvalue()
    out = io.StringIO()
    runner.main(str(copy), "next", out=out)
    assert "Next: 2. names" in out.getvalue()


def test_an_unknown_exercise_is_a_clear_error(copy, capsys):
    assert runner.main(str(copy), "check", "42", out=io.StringIO()) == 2
    assert "no exercise '42'" in capsys.readouterr().err
