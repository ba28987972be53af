"""The interactive client in a real pseudo-terminal, looked at the way a person sees it.

The interactive tests in test_terminal.py give prompt_toolkit a pipe for the keyboard
and a plain-text output. That is fast, but it is not the path a real terminal takes
through ``run_interactive``, and it cannot show where a line ends up on the screen. A
bug slipped through that way: in a real terminal, lines from the server were glued
to the end of the half-typed input line (``alice> abc* bob joined``) instead of being
printed above the prompt.

Here ``chatlab client`` runs as a subprocess attached to a pseudo-terminal (pty), and
everything it writes goes into pyte, a VT100 emulator. The tests then read the
emulator's rows, as a person would read the screen. The emulator also answers the
client's "where is the cursor?" question, as a real terminal does.

Nothing here sleeps: :meth:`PseudoTerminal.wait_until` reads the pty with
``select()`` until the screen shows what the test waits for, or its deadline passes.
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Callable

import pyte
import pytest

from chatlab import protocol
from chatlab.client import ChatClient
from chatlab.server import ChatServer
from chatlab.terminal import client_text, translate

# Pseudo-terminals are a Unix thing: without these modules there is nothing to test.
fcntl = pytest.importorskip("fcntl")
termios = pytest.importorskip("termios")

TIMEOUT = 10.0  # seconds for any single wait in these tests
POLL = 0.1  # seconds select() waits for output before the deadline is checked again
COLUMNS, ROWS = 80, 24


# ---------------------------------------------------------------------------
# Helpers: a client in a pty, and the screen it draws
# ---------------------------------------------------------------------------


# The `server` fixture (a reference server on a free port) and the check that no
# thread outlives its test come from conftest.py.


class AnsweringScreen(pyte.Screen):
    """A pyte screen that keeps what a real terminal would answer the program.

    prompt_toolkit asks for the cursor position (``ESC [ 6 n``) before it draws; a
    real terminal answers on the keyboard side, and so does this one, through
    :class:`PseudoTerminal`.
    """

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.answers: list[str] = []  # replies not yet sent to the program

    def write_process_input(self, data: str) -> None:
        self.answers.append(data)


class PseudoTerminal:
    """``chatlab client`` in a subprocess attached to a pty, and the screen it draws.

    Use it as a context manager: leaving kills the client if it is still running,
    reaps it and closes the pty.
    """

    def __init__(self, options: list[str], columns: int = COLUMNS, rows: int = ROWS) -> None:
        self.screen = AnsweringScreen(columns, rows)
        self._stream = pyte.ByteStream(self.screen)
        self.ended = False  # the client's side of the pty is closed: it exited
        self._master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            environment = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
            environment["TERM"] = "xterm"
            environment["PYTHONUTF8"] = "1"  # the emulator decodes UTF-8, whatever this machine's locale
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chatlab", "client", *options],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=environment,
                start_new_session=True,
            )
        except BaseException:
            os.close(self._master)
            raise
        finally:
            # The child has its own copy. Ours would keep the pty open after the
            # child exits, and the end of its output would never be seen.
            os.close(slave)

    def __enter__(self) -> PseudoTerminal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=TIMEOUT)
        finally:
            os.close(self._master)

    def type(self, keys: bytes) -> None:
        """Press keys, as if typed on the terminal's keyboard."""
        os.write(self._master, keys)

    def rows(self) -> list[str]:
        """The screen's rows, without their trailing blanks."""
        return [row.rstrip() for row in self.screen.display]

    def text(self) -> str:
        """The whole screen as text, for failure messages."""
        return "\n".join(f"{number:2} |{row}" for number, row in enumerate(self.rows()))

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        """Read the client's output until ``condition()`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{what}: not within {timeout} s; the screen shows:\n{self.text()}")
            if self.ended:
                pytest.fail(f"{what}: the client exited first; the screen shows:\n{self.text()}")
            self._read(min(remaining, POLL))

    def wait_for_row(self, row: str, timeout: float = TIMEOUT) -> int:
        """Wait until a row of the screen reads exactly ``row``; return its number."""
        self.wait_until(lambda: row in self.rows(), f"a row reading {row!r}", timeout)
        return self.rows().index(row)

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        """Read the output to its end, then return the client's exit status."""
        self.wait_until(lambda: self.ended, "the end of the client's output", timeout)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the client did not exit within {timeout} s; the screen shows:\n{self.text()}")

    def _read(self, timeout: float) -> None:
        """Feed whatever the client wrote within ``timeout`` seconds to the screen."""
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO on Linux: no process has the pty open any more
            data = b""
        if not data:
            self.ended = True
            return
        self._stream.feed(data)
        while self.screen.answers:
            self.type(self.screen.answers.pop(0).encode())


def expect_line(user: ChatClient, line: str, terminal: PseudoTerminal) -> None:
    """Wait for ``user`` to receive ``line``; on failure, show what the terminal showed."""
    try:
        user.expect(line, timeout=TIMEOUT)
    except TimeoutError as error:
        pytest.fail(f"{error}; the screen shows:\n{terminal.text()}")


# ---------------------------------------------------------------------------
# The screen while you type
# ---------------------------------------------------------------------------


def test_incoming_lines_appear_above_the_half_typed_line(server: ChatServer) -> None:
    host, port = server.address
    with PseudoTerminal(["--port", str(port), "--name", "alice", "--no-color"]) as terminal:
        terminal.wait_for_row("alice>")  # the prompt, its blank trimmed

        terminal.type(b"abc")  # half-typed: no Enter
        terminal.wait_for_row("alice> abc")

        with ChatClient.connect(host, port, "bob") as bob:
            bob.say("hello alice")

            def message_above_prompt() -> bool:
                rows = terminal.rows()
                return (
                    "bob: hello alice" in rows
                    and "alice> abc" in rows
                    and rows.index("bob: hello alice") < rows.index("alice> abc")
                )

            terminal.wait_until(message_above_prompt, "'bob: hello alice' above the prompt 'alice> abc'")
            rows = terminal.rows()
            assert protocol.joined("bob") in rows, terminal.text()
            garbled = [row for row in rows if "abc" in row and "bob" in row]
            assert not garbled, f"incoming text glued to the input line {garbled}; the screen shows:\n{terminal.text()}"
            prompt_row = rows.index("alice> abc")
            assert rows.count("alice> abc") == 1, terminal.text()
            # The cursor is still where you were typing, at the end of "abc".
            cursor = (terminal.screen.cursor.y, terminal.screen.cursor.x)
            assert cursor == (prompt_row, len("alice> abc")), terminal.text()

            terminal.type(b"\r")  # Enter
            expect_line(bob, "alice: abc", terminal)
            # Wait for the next prompt, as a person would: until it is drawn, the pty
            # may still be in line mode, where the terminal itself swallows Ctrl-D.
            terminal.wait_until(
                lambda: terminal.rows()[prompt_row : prompt_row + 2] == ["alice> abc", "alice>"],
                "a fresh prompt below the line sent",
            )

            terminal.type(b"\x04")  # Ctrl-D on the empty line: leave
            terminal.wait_for_row(protocol.bye("alice"))
            expect_line(bob, protocol.left("alice"), terminal)
            assert terminal.wait_exit() == 0, terminal.text()


def test_the_greeting_is_shown_in_russian(server: ChatServer) -> None:
    _, port = server.address
    with PseudoTerminal(["--port", str(port), "--name", "alice", "--no-color", "--lang", "ru"]) as terminal:
        english = protocol.greeting("alice", [])
        russian = translate(english, "ru")
        assert russian != english  # a guard for the test itself
        terminal.wait_for_row(translate(protocol.WELCOME, "ru"))
        terminal.wait_for_row(russian)
        terminal.wait_for_row(client_text("ru", "hint"))
        terminal.wait_for_row("alice>")
        assert english not in terminal.rows(), terminal.text()

        terminal.type(b"\x04")
        terminal.wait_for_row(translate(protocol.bye("alice"), "ru"))
        assert terminal.wait_exit() == 0, terminal.text()
