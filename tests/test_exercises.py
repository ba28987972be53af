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
