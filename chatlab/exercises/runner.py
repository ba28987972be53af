"""``chatlab ex``: list, check, hint, watch, reset and next, for the exercises in one folder.

Progress lives in ``.progress.json`` inside the exercises folder: each exercise's
last verdict (``done`` or ``failing``; absent means not started) and how many hints
were shown. Delete the file to start over. ``--exercises DIR`` points at any copy of
the exercises folder; by default it is ``./exercises``.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import select
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from chatlab.exercises import kit
from chatlab.exercises.manifest import Check, Exercise, ManifestError, load

PROGRESS = ".progress.json"
STARTERS = "starters"  # untouched copies of the files to edit, for reset
DONE, FAILING, NOT_STARTED = "done", "failing", "not started"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class ExerciseError(Exception):
    """A user mistake (unknown exercise, missing folder): printed as one line."""


# -- progress ------------------------------------------------------------------------


class Progress:
    """The small progress file: verdicts and hints shown."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / PROGRESS
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        self.status: dict[str, str] = dict(data.get("status", {}))
        self.hints: dict[str, int] = dict(data.get("hints", {}))

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"status": self.status, "hints": self.hints}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)

    def of(self, exercise: Exercise) -> str:
        return self.status.get(exercise.name, NOT_STARTED)


# -- running checks -------------------------------------------------------------------


def _resolve_scenario(directory: Path, exercise: Exercise, scenario: str) -> Path:
    for base in (directory / exercise.folder, directory, directory.parent, REPO_ROOT):
        if (base / scenario).is_file():
            return base / scenario
    raise ExerciseError(f"scenario {scenario} not found (looked next to the exercise and in the chatlab folder)")


def _callable(directory: Path, exercise: Exercise, spec: str) -> Callable[[kit.CheckContext], Any]:
    module_name, _, function = spec.rpartition(":")
    if module_name.endswith(".py"):
        module = kit.load_module(directory / exercise.folder / module_name)
    else:
        module = importlib.import_module(module_name)
    found = getattr(module, function, None)
    if not callable(found):
        raise ExerciseError(f"{spec}: no function {function} in {module_name}")
    return found


def _as_result(name: str, value: Any) -> kit.CheckResult:
    """Accept a CheckResult, or anything with ``requirements`` whose items have ``name`` and ``passed``."""
    if isinstance(value, kit.CheckResult):
        return value
    requirements = getattr(value, "requirements", value)
    try:
        return kit.CheckResult(name, [
            kit.Requirement(
                getattr(item, "name", str(item)), bool(getattr(item, "passed", False)),
                str(getattr(item, "expected", "")), str(getattr(item, "got", getattr(item, "message", ""))),
                list(getattr(item, "transcript", [])),
            )
            for item in requirements
        ])
    except TypeError:
        return kit.CheckResult(name, [kit.Requirement(name, False, "a CheckResult", repr(value))])


def run_check(directory: Path, exercise: Exercise, check: Check, seed: int = 1) -> kit.CheckResult:
    """Run one check within its timeout; a student's error becomes a failed requirement.

    The check runs in a thread of its own, ``check``. If the student's code loops
    forever (a ``while`` in ``feed()`` that never ends), the runner reports this
    check as stuck after ``check.timeout`` seconds instead of hanging. That thread
    is a daemon for this one reason: nothing can stop a loop that never returns, and
    the command must still be able to exit.
    """
    outcome: list[kit.CheckResult] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            outcome.append(_run_check(directory, exercise, check, seed))
        except BaseException as error:  # handed to the caller's thread, raised there
            failure.append(error)

    worker = threading.Thread(target=body, name="check", daemon=True)
    worker.start()
    worker.join(check.timeout)
    if worker.is_alive():
        return kit.CheckResult(check.name, [kit.Requirement(
            f"{check.name}: finishes within {check.timeout:g} s", False, f"the check done within {check.timeout:g} s",
            "still running: an endless loop, or a wait without a timeout, in your code? (restart the command)",
        )])
    if failure:
        raise failure[0]
    return outcome[0]


def _run_check(directory: Path, exercise: Exercise, check: Check, seed: int) -> kit.CheckResult:
    folder = directory / exercise.folder
    try:
        if check.call is not None:
            function = _callable(directory, exercise, check.call)
            context = kit.CheckContext(folder, exercise.edit, dict(check.options), seed)
            return _as_result(check.name, function(context))
        assert check.swarm is not None
        file_name, _, class_name = check.server.partition(":")
        server_class = getattr(kit.load_module(folder / file_name), class_name or "Server")
        requirement = kit.swarm_requirement(
            check.name,
            lambda: server_class(host="127.0.0.1", port=0, **check.server_options),
            _resolve_scenario(directory, exercise, check.swarm),
            bots=check.bots,
            duration=check.duration,
            repeat=check.repeat,
            seed=seed,
            interval=check.switch_interval,
        )
        return kit.CheckResult(check.name, [requirement])
    except kit.LoadError as error:
        return kit.CheckResult(check.name, [kit.Requirement("your file imports", False, "no error", str(error))])
    except ExerciseError:
        raise
    except Exception as error:  # the student's code crashed inside the check
        return kit.CheckResult(check.name, [kit.Requirement(check.name, False, "no exception", f"{type(error).__name__}: {error}")])


def _one_line(text: str) -> str:
    """Text as one printable line: a LF or CR inside it would fake a line of the report."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def check_exercise(directory: Path, exercise: Exercise, out: TextIO, *, verbose_transcripts: int = 40) -> bool:
    """Run every check of ``exercise``, print the verdicts in plain words, record progress."""
    print(f"== {exercise.title}: {', '.join(exercise.edit)}", file=out)
    passed = True
    for check in exercise.checks:
        print(f"-- {check.name} ...", file=out, flush=True)  # printed first: a check that hangs is named
        result = run_check(directory, exercise, check)
        passed = passed and result.passed
        for requirement in result.requirements:
            print(f"   {'✓' if requirement.passed else '✗'} {requirement.name}", file=out)
            if not requirement.passed:
                print(f"       expected: {_one_line(requirement.expected)}", file=out)
                print(f"       got:      {_one_line(requirement.got)}", file=out)
                if requirement.transcript:
                    print("       transcript:", file=out)
                    shown = requirement.transcript[-verbose_transcripts:]
                    if len(shown) < len(requirement.transcript):
                        print(f"         ... ({len(requirement.transcript) - len(shown)} earlier lines)", file=out)
                    for line in shown:
                        print(f"         {_one_line(line)}", file=out)
    progress = Progress(directory)
    progress.status[exercise.name] = DONE if passed else FAILING
    progress.save()
    if passed:
        print(f"{exercise.title}: done. `chatlab ex next` shows what comes next.", file=out)
    else:
        print(f"{exercise.title}: not yet. `chatlab ex hint {exercise.number}` gives a hint.", file=out)
    return passed


# -- the commands ------------------------------------------------------------------


def find(exercises: list[Exercise], which: str | None, progress: Progress) -> Exercise:
    """The exercise named or numbered ``which``; by default the first one not done."""
    if which is None:
        for exercise in exercises:
            if progress.of(exercise) != DONE:
                return exercise
        return exercises[-1]
    for exercise in exercises:
        if which in (str(exercise.number), exercise.name, exercise.folder):
            return exercise
    raise ExerciseError(f"no exercise {which!r}: use a number from 1 to {len(exercises)} or a name (see `chatlab ex list`)")


def progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = round(width * done / total) if total else 0
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total} done"


def command_list(directory: Path, out: TextIO) -> int:
    exercises, progress = load(directory), Progress(directory)
    width = max(len(exercise.name) for exercise in exercises)
    for exercise in exercises:
        print(f"{exercise.number:>3}  {exercise.name:<{width}}  {progress.of(exercise):<12} {exercise.folder}/{', '.join(exercise.edit)}", file=out)
    done = sum(progress.of(exercise) == DONE for exercise in exercises)
    print(progress_bar(done, len(exercises)), file=out)
    return 0


def command_check(directory: Path, which: str | None, out: TextIO) -> int:
    exercises, progress = load(directory), Progress(directory)
    return 0 if check_exercise(directory, find(exercises, which, progress), out) else 1


def command_hint(directory: Path, which: str | None, out: TextIO) -> int:
    exercises, progress = load(directory), Progress(directory)
    exercise = find(exercises, which, progress)
    shown = progress.hints.get(exercise.name, 0)
    if shown >= len(exercise.hints):
        print(f"{exercise.title}: no more hints; all {len(exercise.hints)} are shown below.", file=out)
        shown = len(exercise.hints) - 1
    for number in range(shown + 1):
        print(f"hint {number + 1} of {len(exercise.hints)}: {exercise.hints[number]}", file=out)
    progress.hints[exercise.name] = shown + 1
    progress.save()
    return 0


def command_next(directory: Path, out: TextIO) -> int:
    exercises, progress = load(directory), Progress(directory)
    remaining = [exercise for exercise in exercises if progress.of(exercise) != DONE]
    if not remaining:
        print("Every exercise is done. The model answer for the whole road is chatlab/server.py.", file=out)
        return 0
    exercise = remaining[0]
    readme = directory / exercise.folder / "README.md"
    print(f"Next: {exercise.title} ({progress.of(exercise)})", file=out)
    print(f"Edit {', '.join(exercise.folder + '/' + name for name in exercise.edit)}; read {exercise.folder}/README.md.", file=out)
    if readme.is_file():
        print("", file=out)
        print(readme.read_text(encoding="utf-8").split("\n## ", 2)[0].strip(), file=out)
    print(f"\nThen: chatlab ex check {exercise.number}   (or `chatlab ex watch` to re-check on every save)", file=out)
    return 0


def command_reset(directory: Path, which: str, yes: bool, out: TextIO, ask: Callable[[str], str] = input) -> int:
    exercises, progress = load(directory), Progress(directory)
    exercise = find(exercises, which, progress)
    if not yes:
        if not sys.stdin.isatty() and ask is input:
            raise ExerciseError("reset asks before overwriting your work; run it in a terminal or add --yes")
        answer = ask(f"Put back the starter of {exercise.title} ({', '.join(exercise.edit)})? Your version is kept as a backup. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing changed.", file=out)
            return 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in exercise.edit:
        starter = directory / STARTERS / exercise.folder / name
        target = directory / exercise.folder / name
        if not starter.is_file():
            raise ExerciseError(f"no starter copy at {starter}: cannot reset")
        if target.is_file():
            backup = target.with_name(f"{target.name}.{stamp}.bak")
            shutil.copy2(target, backup)
            print(f"kept your version as {backup.relative_to(directory)}", file=out)
        shutil.copyfile(starter, target)
        print(f"restored {target.relative_to(directory)}", file=out)
    progress.status.pop(exercise.name, None)
    progress.hints.pop(exercise.name, None)
    progress.save()
    return 0


class Keyboard:
    """Lines typed on a stream, polled with a timeout so that watching can go on meanwhile.

    It reads the file descriptor itself (``os.read`` after ``select``): a text
    stream's own buffer would hide a second line from ``select`` until a third came.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._pending = ""  # typed text not yet handed out, maybe an unfinished line
        self._ended = False

    def poll(self, timeout: float) -> str | None:
        """A line typed within ``timeout`` seconds, or None; "q" once the input has ended."""
        if "\n" not in self._pending and not self._ended:
            try:
                ready, _, _ = select.select([self.stream], [], [], timeout)
                data = os.read(self.stream.fileno(), 4096) if ready else None
            except (OSError, ValueError, TypeError, io.UnsupportedOperation):
                # No select() on this stream (a Windows console, a closed stdin): only
                # saves are noticed, and `chatlab ex check` is the manual way.
                time.sleep(timeout)  # the polling period, not a synchronization
                return None
            if data is None:
                return None
            if data:
                self._pending += data.decode(errors="replace")
            else:
                self._ended = True
        if "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            return line
        return "q" if self._ended else None


def _mtimes(directory: Path, exercise: Exercise) -> dict[Path, int]:
    times = {}
    for name in exercise.edit:
        path = directory / exercise.folder / name
        try:
            times[path] = path.stat().st_mtime_ns
        except OSError:
            times[path] = -1
    return times


def command_watch(
    directory: Path, out: TextIO, *, interval: float = 0.5, keyboard: TextIO | None = None, rounds: int | None = None
) -> int:
    """Check the current exercise, then again on every save (polling modification times).

    Press Enter to check now (the fallback when saves are not noticed, as on some
    network drives), or type q and Enter to stop. ``rounds`` limits the checks (for tests).
    """
    exercises = load(directory)
    typed = Keyboard(keyboard if keyboard is not None else sys.stdin)
    checks_run = 0
    print("watch: checking on every save. Enter checks now; q then Enter quits; or use `chatlab ex check`.", file=out)
    while True:
        exercise = find(exercises, None, Progress(directory))
        passed = check_exercise(directory, exercise, out)
        checks_run += 1
        if rounds is not None and checks_run >= rounds:
            return 0
        if passed and all(Progress(directory).of(each) == DONE for each in exercises):
            print("Every exercise is done.", file=out)
            return 0
        if passed:
            continue  # on to the next exercise at once
        seen = _mtimes(directory, exercise)
        print(f"watch: waiting for a save of {', '.join(exercise.edit)} (Enter checks now, q quits)", file=out, flush=True)
        while _mtimes(directory, exercise) == seen:
            line = typed.poll(interval)
            if line is None:
                continue
            if line.strip().lower() in ("q", "quit"):
                return 0
            break  # Enter: check now


def main(directory: str | None, command: str, which: str | None = None, yes: bool = False, out: TextIO = sys.stdout) -> int:
    """Entry point for ``chatlab ex``; returns the exit status."""
    folder = Path(directory) if directory else Path.cwd() / "exercises"
    try:
        if not folder.is_dir():
            raise ExerciseError(f"no exercises folder at {folder} (use --exercises DIR)")
        if command == "list":
            return command_list(folder, out)
        if command == "check":
            return command_check(folder, which, out)
        if command == "hint":
            return command_hint(folder, which, out)
        if command == "next":
            return command_next(folder, out)
        if command == "reset":
            return command_reset(folder, which or "", yes, out)
        if command == "watch":
            return command_watch(folder, out)
        raise ExerciseError(f"unknown command {command!r}")
    except (ExerciseError, ManifestError) as error:
        print(f"chatlab ex: {error}", file=sys.stderr)
        return 2
