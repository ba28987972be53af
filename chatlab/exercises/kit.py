"""What exercise checks are made of: requirements in plain words, scripted people, race runs.

A check is a function that takes a :class:`CheckContext` and returns a
:class:`CheckResult`: a list of :class:`Requirement`, each passed or failed, and for
a failed one what was expected, what came back, and the transcript of the people
(or bots) involved. The runner prints exactly that, so a student reads::

    ✗ a name differing only in case is refused
        expected: ! name taken: alice
        got:      * Hi alice! Online: Alice
        transcript:
          Alice< * Welcome to chatlab! Enter your name:
          Alice> Alice
          ...

Writing one::

    def names_are_unique(context):
        checklist = Checklist("names")
        with context.server() as server, checklist.people(server) as people:
            alice = people.join("Alice")
            with checklist.requirement("a name differing only in case is refused") as requirement:
                bob = people.connect("alice")
                requirement.expect_line(bob, "! name taken: alice")
        return checklist.result()

and naming it in ``exercises.toml`` as ``call = "check.py:names_are_unique"`` (or
``"some.module:function"`` for a check that lives in a package). The runner also
accepts any object with a ``requirements`` list whose items have ``name`` and
``passed`` (and optionally ``expected``, ``got`` or ``message``, ``transcript``).

Everything here waits with a timeout: a line that does not come fails its
requirement with "nothing", and from then on the check's waits are short (see
:class:`Patience`), so a broken server fails fast instead of hanging.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatlab import protocol
from chatlab.protocol import Line, LineBuffer, encode_line

WAIT = 5.0  # seconds any single expected line may take
QUICK_WAIT = 0.5  # seconds, once something already failed to arrive in this check


class Patience:
    """How long people wait for a line: :data:`WAIT`, until once nothing came.

    A server that already missed one line is broken, and waiting the full time for
    each of the lines it will miss next would make a check take minutes. After the
    first timeout of a check, the waits are short; the verdict is "failing" anyway.
    """

    def __init__(self) -> None:
        self.lost = False  # a wait of this check has timed out

    @property
    def wait(self) -> float:
        return QUICK_WAIT if self.lost else WAIT
_module_numbers = itertools.count()

# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass
class Requirement:
    """One thing the student's code must do, and whether it did."""

    name: str  #: what is required, in plain words
    passed: bool
    expected: str = ""  #: for a failure: what should have happened
    got: str = ""  #: for a failure: what happened instead
    transcript: list[str] = field(default_factory=list)  #: lines sent (>) and received (<), by whom


@dataclass
class CheckResult:
    """The outcome of one check: its requirements, in the order they were tested."""

    name: str
    requirements: list[Requirement] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.requirements) and all(requirement.passed for requirement in self.requirements)

    @property
    def failed(self) -> list[Requirement]:
        return [requirement for requirement in self.requirements if not requirement.passed]


class Failed(Exception):
    """Raised inside a requirement to fail it with what was expected and what came back."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"expected {expected}, got {got}")
        self.expected = expected
        self.got = got


class RequirementScope:
    """The body of one ``with checklist.requirement(...)`` block."""

    def __init__(self, transcript: list[str]) -> None:
        self.transcript = transcript

    def expect(self, condition: bool, expected: str, got: object) -> None:
        """Fail the requirement unless ``condition``."""
        if not condition:
            raise Failed(expected, str(got))

    def expect_equal(self, got: object, expected: object) -> None:
        if got != expected:
            raise Failed(repr(expected), repr(got))

    def expect_line(self, person: Person, line: str, timeout: float | None = None) -> None:
        """The next line ``person`` receives must be exactly ``line``."""
        got = person.next_line(timeout)
        if got != line:
            raise Failed(line, "nothing" if got is None else got)

    def expect_line_about(self, person: Person, marker: str, line: str, timeout: float | None = None) -> None:
        """The first line ``person`` receives that contains ``marker`` must be exactly ``line``.

        Lines without the marker (left over from an earlier requirement that failed)
        are skipped, so that a failure shows what came back for *this* requirement.
        """
        got = person.wait_for(lambda received: marker in received, timeout)
        if got != line:
            raise Failed(line, "nothing" if got is None else got)

    def expect_closed(self, person: Person, timeout: float | None = None) -> None:
        """The server must close ``person``'s connection (no more lines)."""
        got = person.next_line(timeout)
        if got is not None or not person.closed:
            raise Failed("the connection closed by the server", got if got is not None else "it stayed open")


class Checklist:
    """Collects the requirements of one check, each tested in a ``with`` block."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requirements: list[Requirement] = []
        self.transcript: list[str] = []  # shared by every person of this check
        self.patience = Patience()  # shared too: after one timeout, everyone waits less

    @contextlib.contextmanager
    def requirement(self, name: str) -> Iterator[RequirementScope]:
        """Test one requirement; a Failed, a timeout or a crash in the block fails it."""
        start = len(self.transcript)
        scope = RequirementScope(self.transcript)
        try:
            yield scope
        except Failed as failure:
            self.requirements.append(Requirement(name, False, failure.expected, failure.got, self.transcript[start:]))
        except Exception as error:  # the student's code raised: that is this requirement's verdict
            self.requirements.append(
                Requirement(name, False, "no error", f"{type(error).__name__}: {error}", self.transcript[start:])
            )
        else:
            self.requirements.append(Requirement(name, True))

    def add(self, requirement: Requirement) -> None:
        self.requirements.append(requirement)

    @contextlib.contextmanager
    def people(self, server: Any) -> Iterator[People]:
        """People who connect to ``server``; all closed at the end of the block."""
        crowd = People(server.address, self.transcript, self.patience)
        try:
            yield crowd
        finally:
            crowd.close_all()

    def result(self) -> CheckResult:
        return CheckResult(self.name, list(self.requirements))


# ---------------------------------------------------------------------------
# Loading the student's file
# ---------------------------------------------------------------------------


class LoadError(Exception):
    """The student's file could not be imported (a syntax error, an exception at import)."""


def load_module(path: Path) -> Any:
    """Import ``path`` fresh, as a new module each time (so a re-check sees the latest save)."""
    name = f"chatlab_exercise_{path.stem}_{next(_module_numbers)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the student's code: any error is the student's to see
        raise LoadError(f"{path.name} does not import: {type(error).__name__}: {error}") from error
    return module


@dataclass
class CheckContext:
    """What a check function receives from the runner."""

    folder: Path  #: the exercise's folder (where the student's files are)
    files: list[str]  #: the files the student edits, relative to ``folder``
    options: dict[str, Any] = field(default_factory=dict)  #: the check's extra keys from the manifest
    seed: int = 1

    def load(self, filename: str | None = None) -> Any:
        """The student's module (the first file to edit unless ``filename`` is given), freshly imported."""
        return load_module(self.folder / (filename or self.files[0]))

    @contextlib.contextmanager
    def server(self, attribute: str = "Server", **options: Any) -> Iterator[Any]:
        """Start the student's server class on a free port; stop it and clean up after.

        If the student's ``stop()`` leaves threads running, every socket is shut down
        and the threads joined, so a broken exercise never leaves anything behind.
        """
        server_class = getattr(self.load(), attribute)
        with running(server_class(host="127.0.0.1", port=0, **options)) as server:
            yield server


@contextlib.contextmanager
def running(server: Any) -> Iterator[Any]:
    """Start ``server`` (a ServerHarness); on the way out stop it, then force it closed if needed."""
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            force = getattr(server, "force_close", None)
            if force is not None:
                force()


# ---------------------------------------------------------------------------
# Scripted people with a transcript
# ---------------------------------------------------------------------------


class Person:
    """One scripted chat user on a real socket; no thread: it reads when asked, with a timeout.

    Every line sent and received goes into the shared transcript as ``name> line``
    and ``name< line``, so a failure shows the whole conversation.
    """

    def __init__(
        self,
        address: tuple[str, int],
        label: str,
        transcript: list[str],
        patience: Patience | None = None,
        *,
        receive_buffer: int | None = None,
    ) -> None:
        self.label = label
        self.transcript = transcript
        self.patience = patience or Patience()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(WAIT)
        sock.connect(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.closed = False  #: the server closed (or reset) the connection
        self._buffer = LineBuffer(None)
        self._lines: list[str] = []

    def send(self, text: str) -> None:
        self.transcript.append(f"{self.label}> {text}")
        self.sock.sendall(encode_line(text))

    def send_bytes(self, data: bytes, what: str) -> None:
        self.transcript.append(f"{self.label}> ({what})")
        self.sock.sendall(data)

    def next_line(self, timeout: float | None = None) -> str | None:
        """The next line from the server, or None if it closed or none came in time.

        ``timeout`` defaults to the check's patience (see :class:`Patience`); a wait
        with the default timeout that ends empty-handed makes the check impatient.
        """
        counts = timeout is None
        deadline = time.monotonic() + (self.patience.wait if timeout is None else timeout)
        while not self._lines:
            remaining = deadline - time.monotonic()
            if self.closed:
                return None
            if remaining <= 0:
                self._timed_out(counts)
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                self._timed_out(counts)
                return None
            except OSError:
                data = b""
            if not data:
                self.closed = True
                self.transcript.append(f"{self.label}< (connection closed)")
                break
            for frame in self._buffer.feed(data):
                text = frame.text if isinstance(frame, Line) else repr(frame)
                self._lines.append(text)
                self.transcript.append(f"{self.label}< {text}")
        return self._lines.pop(0) if self._lines else None

    def _timed_out(self, counts: bool) -> None:
        self.transcript.append(f"{self.label}: (waited in vain)")
        if counts:
            self.patience.lost = True

    def wait_for(self, wanted: str | Callable[[str], bool], timeout: float | None = None) -> str | None:
        """Skip lines until one equals (or satisfies) ``wanted``; None if none came in time."""
        match = wanted if callable(wanted) else (lambda line: line == wanted)
        deadline = time.monotonic() + (self.patience.wait if timeout is None else timeout)
        while True:
            line = self.next_line(max(0.0, deadline - time.monotonic()))
            if line is None:
                if timeout is None:
                    self.patience.lost = True
                return None
            if match(line):
                return line

    def lines_until_quiet(self, quiet: float = 0.3) -> list[str]:
        """Every line that arrives until none has come for ``quiet`` seconds (to prove an absence)."""
        lines = []
        while (line := self.next_line(quiet)) is not None:
            lines.append(line)
        if self.transcript and self.transcript[-1] == f"{self.label}: (waited in vain)":
            self.transcript.pop()  # silence was the point here
        return lines

    def reset(self) -> None:
        """Close abruptly: a TCP reset instead of a clean close."""
        self.transcript.append(f"{self.label}> (connection reset)")
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()
        self.closed = True

    def close(self) -> None:
        if not self.closed:
            self.transcript.append(f"{self.label}> (closes the connection)")
        self.closed = True
        self.sock.close()


class People:
    """The people of one check, connected to one server; closed together."""

    def __init__(self, address: tuple[str, int], transcript: list[str], patience: Patience | None = None) -> None:
        self.address = address
        self.transcript = transcript
        self.patience = patience or Patience()
        self.everyone: list[Person] = []

    def connect(self, name: str | None, label: str | None = None, **options: Any) -> Person:
        """Connect, read the welcome, and send ``name`` (unless None); the answer is not read."""
        person = Person(self.address, label or name or "anonymous", self.transcript, self.patience, **options)
        self.everyone.append(person)
        welcome = person.next_line()
        if welcome != protocol.WELCOME:
            raise Failed(protocol.WELCOME, welcome or "nothing")
        if name is not None:
            person.send(name)
        return person

    def join(self, name: str, **options: Any) -> Person:
        """Connect as ``name`` and insist on being accepted."""
        person = self.connect(name, **options)
        answer = person.next_line()
        if answer is None or not answer.startswith(f"* Hi {name}!"):
            raise Failed(f"* Hi {name}! ...", answer or "nothing")
        return person

    def close_all(self) -> None:
        for person in self.everyone:
            person.close()


# ---------------------------------------------------------------------------
# Race runs: swarms under a tiny switch interval, repeated
# ---------------------------------------------------------------------------

RACE_SWITCH_INTERVAL = 1e-6  # seconds; CPython's default is 0.005


@contextlib.contextmanager
def switch_interval(seconds: float | None) -> Iterator[None]:
    """Make threads switch as often as the interpreter allows, so that races happen now.

    CPython lets a thread run for ``sys.getswitchinterval()`` (5 ms) before it asks
    the running thread to hand over. A race needs a switch at the wrong instant; at
    1 µs there is a chance of one between almost any two bytecodes, so a missing lock
    shows on the first run instead of the hundredth.
    """
    if seconds is None:
        yield
        return
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def swarm_requirement(
    name: str,
    make_server: Callable[[], Any],
    scenario: str | Path,
    *,
    bots: int,
    duration: float,
    repeat: int = 1,
    seed: int = 1,
    interval: float | None = None,
    ramp_up: float | None = None,
) -> Requirement:
    """Run ``scenario`` against fresh servers ``repeat`` times; passed only if every run is clean.

    Each run has its own seed (``seed``, ``seed + 1``...). The message says
    "passed k of n" and, for the first failing run, which violations the checker
    found, with the events that show them.
    """
    from chatlab.swarm.report import _event_line
    from chatlab.swarm.runner import run

    passed = 0
    first_failure: Any = None
    crashed = ""
    thread_errors: dict[str, int] = {}  # what killed the server's client threads, and how often
    for attempt in range(repeat):
        server = make_server()
        with switch_interval(interval), running(server):
            swarm = run(
                scenario, bots=bots, duration=duration, ramp_up=ramp_up, seed=seed + attempt, target=server.address
            )
        if swarm.ok:
            passed += 1
        elif first_failure is None:
            first_failure = swarm
        if getattr(server, "left_running", None):
            crashed = f"; stop() left threads running: {', '.join(server.left_running)}"
        for error in getattr(server, "crashes", []):
            thread_errors[error] = thread_errors.get(error, 0) + 1
    label = f"{name} (passed {passed} of {repeat})"
    if passed == repeat and not crashed:
        return Requirement(label, True)
    if first_failure is None:
        return Requirement(label, False, "stop() ends every thread", crashed.lstrip("; "))
    t0 = first_failure.meta["start_ns"]
    found = []
    transcript = [f"-- a client thread of your server died of {error} ({count} times)" for error, count in thread_errors.items()]
    for violation in first_failure.violations.values():
        found.append(f"{violation.kind} ({violation.count}): {violation.explanation}")
        transcript.append(f"-- {violation.kind}: the smallest example")
        transcript += [_event_line(event, t0) for event in violation.example]
    return Requirement(
        label,
        False,
        "nothing lost, duplicated, reordered or leaked in every run",
        "; ".join(found) + crashed,
        transcript,
    )


def run_in_thread(target: Callable[[], Any], name: str, timeout: float) -> tuple[bool, Any]:
    """Run ``target`` in a named thread; (finished, its result or exception) after ``timeout``."""
    outcome: list[Any] = []

    def body() -> None:
        try:
            outcome.append(target())
        except Exception as error:  # the student's code: report it, do not crash the check
            outcome.append(error)

    thread = threading.Thread(target=body, name=name)
    thread.start()
    thread.join(timeout)
    return (not thread.is_alive(), outcome[0] if outcome else None)
