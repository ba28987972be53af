"""The autograder: run the checks against a server, score them with a rubric, and write the results.

Grade a server that is already running, or a command that starts one::

    from chatlab.grade.grader import grade

    result = grade(target=("127.0.0.1", 1234))
    result = grade(command="python server.py --port {port}")   # a fresh server per category
    print(result.scorecard())
    result.score, result.max_score, result.failed_categories()

With a command, the grader picks a free port, starts the server, waits until it
listens (bounded), runs one category of checks, stops it, and starts a fresh one
for the next category: a crash then costs one category, not the rest of the grade.
What the server printed on stderr is kept for the report.

Every check runs in its own thread with its own timeout. A check that does not
finish in time is reported as hung, by name, and its connections are shut down so
that it ends; the grade goes on with the next check.
"""

from __future__ import annotations

import contextlib
import csv
import html
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from chatlab.grade import checks as registry
from chatlab.grade.probe import CheckFailed, Probe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_RUBRIC = Path(__file__).resolve().parent / "rubric.toml"
START_TIMEOUT = 10.0  # seconds a started server gets to listen
STOP_TIMEOUT = 5.0  # seconds a server gets to exit after SIGTERM, before SIGKILL
LOG_TAIL = 20_000  # characters of a server's stderr kept for the report


class GradeError(Exception):
    """Grading cannot start: a bad rubric, a command without {port}, a missing folder."""


# -- the rubric ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rubric:
    """Points per check: ``points["handshake.welcome"] == 1``, in the order checks are run."""

    points: dict[str, float]
    source: str  #: the file it came from

    @classmethod
    def load(cls, path: str | Path | None = None) -> Rubric:
        """Read a rubric file (TOML: one table per category, ``check = points``)."""
        path = Path(path) if path is not None else DEFAULT_RUBRIC
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise GradeError(f"cannot read the rubric {path}: {error.strerror or error}") from None
        except tomllib.TOMLDecodeError as error:
            raise GradeError(f"the rubric {path} is not valid TOML: {error}") from None
        known = registry.by_key()
        points: dict[str, float] = {}
        for category, table in data.items():
            if category not in registry.CATEGORIES:
                raise GradeError(f"rubric {path}: unknown category [{category}] (known: {', '.join(registry.CATEGORIES)})")
            if not isinstance(table, dict):
                raise GradeError(f"rubric {path}: [{category}] must be a table of check = points")
            for name, value in table.items():
                key = f"{category}.{name}"
                if key not in known:
                    names = ", ".join(item.name for item in registry.CHECKS if item.category == category)
                    raise GradeError(f"rubric {path}: unknown check {key} (checks of {category}: {names})")
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise GradeError(f"rubric {path}: {key} must be a number of points, 0 or more, got {value!r}")
                points[key] = float(value)
        if not points:
            raise GradeError(f"rubric {path} gives points to no check")
        order = [item.key for item in registry.CHECKS if item.key in points]
        return cls({key: points[key] for key in order}, str(path))

    def only(self, categories: list[str]) -> Rubric:
        """The same rubric restricted to some categories."""
        unknown = [category for category in categories if category not in registry.CATEGORIES]
        if unknown:
            raise GradeError(f"unknown category {unknown[0]!r} (known: {', '.join(registry.CATEGORIES)})")
        kept = {key: value for key, value in self.points.items() if key.split(".")[0] in categories}
        if not kept:
            raise GradeError(f"the rubric has no check in {', '.join(categories)}")
        return Rubric(kept, self.source)

    def categories(self) -> list[str]:
        seen = [key.split(".")[0] for key in self.points]
        return [category for category in registry.CATEGORIES if category in seen]


# -- results ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one check found."""

    key: str  #: ``category.name``
    title: str
    max_score: float
    score: float
    passed: bool
    output: str  #: the note of a passed check, or what went wrong
    seconds: float
    hung: bool = False

    @property
    def category(self) -> str:
        return self.key.split(".")[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]


@dataclass
class Grade:
    """A whole grade: every outcome, what the server said, and how it was run."""

    target: str  #: the address or the command graded
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  #: remarks about the run (fresh servers, crashes)
    server_log: str = ""  #: the server's stderr (commands only), per category
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(outcome.score for outcome in self.outcomes)

    @property
    def max_score(self) -> float:
        return sum(outcome.max_score for outcome in self.outcomes)

    def by_category(self) -> dict[str, list[Outcome]]:
        grouped: dict[str, list[Outcome]] = {}
        for outcome in self.outcomes:
            grouped.setdefault(outcome.category, []).append(outcome)
        return grouped

    def category_scores(self) -> dict[str, tuple[float, float]]:
        """category -> (score, max score)."""
        return {
            category: (sum(o.score for o in outcomes), sum(o.max_score for o in outcomes))
            for category, outcomes in self.by_category().items()
        }

    def failed_categories(self) -> set[str]:
        """The categories where at least one check failed."""
        return {outcome.category for outcome in self.outcomes if not outcome.passed}

    def failed_checks(self) -> list[str]:
        return [outcome.key for outcome in self.outcomes if not outcome.passed]

    # -- presentations ----------------------------------------------------------------------

    def scorecard(self) -> str:
        """The plain-text scorecard: each category with its checks, failures explained, the total."""
        lines = [f"chatlab grade: {self.target}", *[f"  ({note})" for note in self.notes], ""]
        for category, outcomes in self.by_category().items():
            score, maximum = self.category_scores()[category]
            lines.append(f"{registry.CATEGORIES[category]:<52} {_points(score)}/{_points(maximum)}")
            for outcome in outcomes:
                mark = "PASS" if outcome.passed else ("HUNG" if outcome.hung else "FAIL")
                lines.append(f"  {mark}  {outcome.name:<20} {_points(outcome.score):>3}/{_points(outcome.max_score):<3} {outcome.title}")
                if not outcome.passed:
                    lines += [f"          {line}" for line in outcome.output.splitlines()]
        percent = 100 * self.score / self.max_score if self.max_score else 0.0
        lines += ["", f"Total: {_points(self.score)}/{_points(self.max_score)} ({percent:.0f}%) in {self.seconds:.1f} s"]
        return "\n".join(lines)

    def gradescope(self) -> dict:
        """Gradescope's autograder results (results.json): a total score and one entry per check."""
        return {
            "score": self.score,
            "execution_time": round(self.seconds, 3),
            "output": "\n".join([f"Graded {self.target}", *self.notes]),
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": [
                {
                    "name": f"{registry.CATEGORIES[outcome.category]}: {outcome.title}",
                    "number": outcome.key,
                    "score": outcome.score,
                    "max_score": outcome.max_score,
                    "status": "passed" if outcome.passed else "failed",
                    "output": outcome.output,
                    "tags": [outcome.category],
                    "visibility": "visible",
                }
                for outcome in self.outcomes
            ],
        }

    def html_report(self) -> str:
        """A self-contained HTML page: the scorecard with every failure's explanation and the server's log."""
        rows = []
        for category, outcomes in self.by_category().items():
            score, maximum = self.category_scores()[category]
            rows.append(f"<tr class='cat'><th colspan='3'>{html.escape(registry.CATEGORIES[category])}</th>"
                        f"<th>{_points(score)}/{_points(maximum)}</th></tr>")
            for outcome in outcomes:
                state = "pass" if outcome.passed else "fail"
                rows.append(
                    f"<tr class='{state}'><td>{'PASS' if outcome.passed else ('HUNG' if outcome.hung else 'FAIL')}</td>"
                    f"<td><code>{html.escape(outcome.key)}</code><br>{html.escape(outcome.title)}</td>"
                    f"<td><pre>{html.escape(outcome.output)}</pre></td>"
                    f"<td>{_points(outcome.score)}/{_points(outcome.max_score)}</td></tr>"
                )
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in self.notes)
        log = f"<h2>Server log (stderr)</h2><pre class='log'>{html.escape(self.server_log)}</pre>" if self.server_log else ""
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chatlab grade: {html.escape(self.target)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3em .6em; vertical-align: top; text-align: left; }}
tr.cat th {{ background: #eef; }}
tr.pass td:first-child {{ color: #070; font-weight: bold; }}
tr.fail td:first-child {{ color: #b00; font-weight: bold; }}
pre {{ white-space: pre-wrap; margin: 0; font-size: .85em; }}
pre.log {{ background: #f6f6f6; padding: 1em; max-height: 30em; overflow: auto; }}
</style></head><body>
<h1>chatlab grade: {_points(self.score)}/{_points(self.max_score)}</h1>
<p>Graded <code>{html.escape(self.target)}</code> in {self.seconds:.1f} s.</p><ul>{notes}</ul>
<table>{''.join(rows)}</table>
{log}
</body></html>
"""

    def write(self, json_path: str | Path | None = None, html_path: str | Path | None = None) -> None:
        if json_path is not None:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(self.gradescope(), indent=2, ensure_ascii=False), encoding="utf-8")
        if html_path is not None:
            Path(html_path).parent.mkdir(parents=True, exist_ok=True)
            Path(html_path).write_text(self.html_report(), encoding="utf-8")


def _points(value: float) -> str:
    return f"{value:g}"


# -- running one check -------------------------------------------------------------------------


def run_check(check: registry.Check, address: tuple[str, int], points: float, seed: int) -> Outcome:
    """Run one check in its own thread, with its own timeout; a check that hangs is named and ended."""
    probe = Probe(address)
    found: dict[str, str] = {}

    def body() -> None:
        try:
            found["note"] = check.run(probe, seed) or "passed"
        except CheckFailed as error:
            found["failure"] = str(error)
        except Exception as error:  # a bug in a check must not stop the grade; report it plainly
            found["failure"] = f"the check itself failed: {type(error).__name__}: {error}"
        finally:
            with contextlib.suppress(Exception):
                probe.close()

    started = time.monotonic()
    # A daemon thread: if a check stays stuck even after its sockets are shut down,
    # it must not keep the grader's process alive. Its sockets are closed in body().
    thread = threading.Thread(target=body, name=f"grade-{check.key}", daemon=True)
    thread.start()
    thread.join(check.timeout)
    hung = thread.is_alive()
    if hung:
        probe.abort()  # wakes every read and send of the check
        thread.join(registry.CHECK_GRACE)
    seconds = time.monotonic() - started
    if hung:
        output = (f"the check {check.key} hung: it did not finish within {check.timeout:g} s "
                  "(the server stopped answering, or answered too slowly)")
        if "failure" in found:
            output += f"\nlast failure seen: {found['failure']}"
        return Outcome(check.key, check.title, points, 0.0, False, output, seconds, hung=True)
    if "failure" in found:
        return Outcome(check.key, check.title, points, 0.0, False, found["failure"], seconds)
    return Outcome(check.key, check.title, points, points, True, found.get("note", "passed"), seconds)


# -- servers started from a command ------------------------------------------------------------------


def free_port() -> int:
    """A TCP port that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def expand_command(template: str, port: int, submission: Path | None = None) -> list[str]:
    """The command's words with ``{port}``, ``{python}`` and ``{submission}`` filled in."""
    if "{port}" not in template:
        raise GradeError(f"the command must contain {{port}} where the port goes: {template!r}")
    text = template.replace("{port}", str(port)).replace("{python}", shlex.quote(sys.executable))
    if submission is not None:
        text = text.replace("{submission}", shlex.quote(str(submission)))
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise GradeError(f"cannot split the command {template!r}: {error}") from None
    if not words:
        raise GradeError("the command is empty")
    return words


class ServerProcess:
    """A server started from a command on a free port; stderr and stdout go to a log file."""

    def __init__(self, template: str, cwd: Path | None = None, submission: Path | None = None) -> None:
        self.port = free_port()
        self.words = expand_command(template, self.port, submission)
        self.cwd = cwd
        self._log = tempfile.TemporaryFile(mode="w+b")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the command and wait until it listens on the port; GradeError if it never does."""
        try:
            self.process = subprocess.Popen(
                self.words, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                start_new_session=True,  # its own process group: stop() ends its children too
            )
        except OSError as error:
            raise GradeError(f"cannot start {shlex.join(self.words)}: {error.strerror or error}") from None
        deadline = time.monotonic() + timeout
        while not self._listening():
            status = self.process.poll()
            if status is not None:
                raise GradeError(f"the server exited with status {status} before listening on port {self.port}")
            if time.monotonic() > deadline:
                self.stop()
                raise GradeError(f"the server did not listen on port {self.port} within {timeout:g} s")
            time.sleep(0.05)  # polling a condition another process controls; bounded by the deadline

    def _listening(self) -> bool:
        """Whether the server (or one of its children) listens on the port, without connecting to it.

        A test connection would be a client of its own, which a buggy server might
        count as a user; asking the operating system avoids that. Where the system
        will not tell (no permission), fall back to connecting.
        """
        import psutil

        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
            for process in [root, *root.children(recursive=True)]:
                for connection in process.net_connections(kind="tcp"):
                    if connection.status == psutil.CONN_LISTEN and connection.laddr.port == self.port:
                        return True
            return False
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            with contextlib.suppress(OSError), socket.create_connection(self.address, timeout=0.5):
                return True
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM its process group, then SIGKILL after a while; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT)
        return self.process.returncode

    def log(self) -> str:
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        return text if len(text) <= LOG_TAIL else "[...]\n" + text[-LOG_TAIL:]

    def close(self) -> None:
        self._log.close()


# -- the whole grade ------------------------------------------------------------------------------


def grade(
    *,
    target: tuple[str, int] | None = None,
    command: str | None = None,
    cwd: Path | None = None,
    rubric: Rubric | None = None,
    categories: list[str] | None = None,
    seed: int = 1,
    progress: bool = False,
) -> Grade:
    """Grade a running server (``target``) or one started from ``command`` (fresh per category)."""
    if (target is None) == (command is None):
        raise GradeError("grade either a running server (target) or a command, not both")
    rubric = rubric or Rubric.load()
    if categories:
        rubric = rubric.only(categories)
    checks = registry.by_key()
    started = time.monotonic()
    result = Grade(target=f"{target[0]}:{target[1]}" if target else command or "")
    if command is not None:
        result.notes.append("each category ran against a fresh server, and so did each check after a failed one: "
                            "one failure or crash does not cascade")
    logs: list[str] = []
    for category in rubric.categories():
        keys = [key for key in rubric.points if key.startswith(f"{category}.")]
        if command is None:
            assert target is not None
            for key in keys:
                result.outcomes.append(_run_one(checks[key], target, rubric, key, seed, progress))
            continue
        server: ServerProcess | None = None
        failure: str | None = None  # why the server did not start; the rest of the category is not run
        for key in keys:
            if server is None and failure is None:
                server, failure = _start_server(command, cwd, category, logs)
                if failure is not None:
                    result.notes.append(f"{category}: {failure}")
            if server is None or failure is not None:
                result.outcomes.append(Outcome(key, checks[key].title, rubric.points[key], 0.0, False,
                                               f"not run: {failure}", 0.0))
                server = None
                continue
            outcome = _run_one(checks[key], server.address, rubric, key, seed, progress)
            if not server.alive():
                status = server.process.returncode if server.process else None
                outcome.output += f"\n(the server exited with status {status} during this check)"
                result.notes.append(f"{category}: the server exited with status {status} during {key}")
            result.outcomes.append(outcome)
            if not outcome.passed:  # the next check starts from a fresh server: no cascade
                _stop_server(server, category, logs)
                server = None
        if server is not None:
            _stop_server(server, category, logs)
    result.server_log = "\n".join(logs)
    result.seconds = time.monotonic() - started
    return result


def _run_one(check: registry.Check, address: tuple[str, int], rubric: Rubric, key: str, seed: int,
             progress: bool) -> Outcome:
    check_seed = seed * 1000 + 37 * list(rubric.points).index(key)  # names and swarms differ between checks
    outcome = run_check(check, address, rubric.points[key], check_seed)
    if progress:
        print(f"  {'pass' if outcome.passed else 'FAIL'}  {key}  ({outcome.seconds:.1f} s)", file=sys.stderr, flush=True)
    return outcome


def _start_server(command: str, cwd: Path | None, category: str, logs: list[str]) -> tuple[ServerProcess, str | None]:
    """A fresh server from ``command``; (server, None), or (server, why it did not start)."""
    server = ServerProcess(command, cwd=cwd, submission=cwd)
    try:
        server.start()
    except GradeError as error:
        server.stop()
        logs.append(f"--- {category}: the server did not start ---\n{server.log()}")
        server.close()
        return server, str(error)
    return server, None


def _stop_server(server: ServerProcess, category: str, logs: list[str]) -> None:
    status = server.stop()
    text = server.log()
    if text.strip() or status not in (0, None):
        logs.append(f"--- {category} (exit status {status}) ---\n{text}")
    server.close()


# -- batch mode ----------------------------------------------------------------------------------


def submissions(folder: Path) -> list[Path]:
    """The submissions in a folder: its subfolders, sorted by name (hidden ones skipped)."""
    if not folder.is_dir():
        raise GradeError(f"no such folder: {folder}")
    found = sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith((".", "_")))
    if not found:
        raise GradeError(f"{folder} holds no submission folders")
    return found


def grade_batch(
    folder: Path,
    command: str,
    out: Path,
    *,
    rubric: Rubric | None = None,
    categories: list[str] | None = None,
    seed: int = 1,
    progress: bool = False,
) -> Path:
    """Grade every submission folder with ``command`` (run inside it); write one CSV, plus a report each.

    Returns the CSV's path: ``out/grades.csv``, one row per submission, with the total,
    each category's score, and the failed checks. Each submission also gets
    ``out/NAME/results.json`` and ``out/NAME/report.html``.
    """
    rubric = rubric or Rubric.load()
    if categories:
        rubric = rubric.only(categories)
    found = submissions(folder)
    out.mkdir(parents=True, exist_ok=True)
    category_names = rubric.categories()
    csv_path = out / "grades.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["submission", "score", "max_score", "percent", *category_names, "failed_checks", "notes"])
        for submission in found:
            if progress:
                print(f"grading {submission.name}", file=sys.stderr, flush=True)
            result = grade(command=command, cwd=submission.resolve(), rubric=rubric, seed=seed)
            result.target = f"{submission.name}: {command}"
            result.write(out / submission.name / "results.json", out / submission.name / "report.html")
            scores = result.category_scores()
            percent = 100 * result.score / result.max_score if result.max_score else 0.0
            writer.writerow([
                submission.name, _points(result.score), _points(result.max_score), f"{percent:.1f}",
                *[_points(scores.get(category, (0.0, 0.0))[0]) for category in category_names],
                " ".join(result.failed_checks()), " | ".join(result.notes[1:]),
            ])
            file.flush()
    return csv_path
