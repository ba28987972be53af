"""Tests for the terminal client: translation and colouring, scripting mode, interactive mode."""

from __future__ import annotations

import io
import queue
import re
import socket
import struct
import subprocess
import sys
import threading

import pytest
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output.plain_text import PlainTextOutput

from chatlab import protocol, terminal
from chatlab.client import ChatClient
from chatlab.server import ChatServer

TIMEOUT = 10.0  # seconds for any single wait in these tests

CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)
ANSI_ESCAPE = "\x1b["


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


# The `server` fixture (a reference server on a free port) and the check that no
# thread outlives its test come from conftest.py.


def client_command(port: int, *options: str) -> list[str]:
    """The command line of ``chatlab client --port PORT OPTIONS`` as a subprocess."""
    return [sys.executable, "-m", "chatlab", "client", "--port", str(port), *options]


class LineReader:
    """Reads a subprocess's output in a thread, so a test can wait for a line with a timeout."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self.lines: list[str] = []  # every line read so far, for failure messages
        self._queue: queue.Queue[str | None] = queue.Queue()  # lines, then None at the end
        self._thread = threading.Thread(target=self._read, args=(stream,), name="test-line-reader", daemon=True)
        self._thread.start()

    def _read(self, stream: io.TextIOBase) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, wanted: str, timeout: float = TIMEOUT) -> None:
        """Skip lines until ``wanted`` arrives; fail on the end of the stream or a timeout."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no {wanted!r} within {timeout} s; got {self.lines}")
            if line is None:
                pytest.fail(f"the stream ended before {wanted!r}; got {self.lines}")
            self.lines.append(line)
            if line == wanted:
                return

    def rest(self, timeout: float = TIMEOUT) -> list[str]:
        """Every line up to the end of the stream."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"
        while (line := self._queue.get_nowait()) is not None:
            self.lines.append(line)
        return self.lines


class Screen(io.StringIO):
    """A file that remembers what was written to it and lets a test wait for a text."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()  # held while writing and while looking, so no write is missed

    def write(self, text: str) -> int:
        with self._changed:
            written = super().write(text)
            self._changed.notify_all()
        return written

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: text in self.getvalue(), timeout):
                pytest.fail(f"{text!r} did not appear within {timeout} s; the screen shows {self.getvalue()!r}")


class InteractiveRun:
    """``run_interactive`` in a thread, typed at through a pipe, drawn to a :class:`Screen`."""

    def __init__(self, keyboard: PipeInput, port: int, **options: object) -> None:
        self.keyboard = keyboard
        self.screen = Screen()
        self.status: int | None = None
        output = PlainTextOutput(self.screen)
        # A daemon, like every thread of the tests: a failing test must not hang the run.
        self._thread = threading.Thread(
            target=self._run, args=(port, output, options), name="test-interactive-client", daemon=True
        )
        self._thread.start()

    def _run(self, port: int, output: PlainTextOutput, options: dict) -> None:
        self.status = terminal.run_interactive("127.0.0.1", port, input=self.keyboard, output=output, **options)

    def type(self, text: str) -> None:
        self.keyboard.send_text(text)

    def wait(self, timeout: float = TIMEOUT) -> int | None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the client did not exit; the screen shows {self.screen.getvalue()!r}"
        return self.status


def terminal_threads() -> list[str]:
    """Names of this module's threads still running (the stdin reader is allowed to linger)."""
    return [thread.name for thread in threading.enumerate() if thread.name == "terminal-receiver"]


# ---------------------------------------------------------------------------
# Translation: every fixed text has a Russian rendering, chat text is untouched
# ---------------------------------------------------------------------------

# Every text the server can send but chat messages, as the protocol module builds it.
FIXED_TEXTS = [
    value
    for key, value in vars(protocol).items()
    if key.isupper() and isinstance(value, str) and value.startswith(("* ", "! "))
]
BUILT_TEXTS = [
    protocol.greeting("alice", []),
    protocol.greeting("alice", ["bob", "carol"]),
    protocol.greeting("Иван", ["bob"]),
    protocol.joined("bob"),
    protocol.joined("Мария_2-b"),
    protocol.left("bob"),
    protocol.bye("alice"),
    protocol.online(["alice", "bob", "carol"]),
    protocol.online(["alice"]),
    protocol.name_taken("alice"),
    protocol.no_such_user("nobody"),
    protocol.no_such_user("what!?"),
    protocol.unknown_command("/foo"),
    protocol.line_too_long(protocol.MAX_LINE),
]


def test_the_fixed_texts_are_all_found() -> None:
    # A guard for the test itself: if protocol.py renamed its constants, the
    # loop above would quietly find none.
    assert protocol.WELCOME in FIXED_TEXTS
    assert protocol.SHUTTING_DOWN in FIXED_TEXTS
    assert len(FIXED_TEXTS) >= 10


@pytest.mark.parametrize("line", FIXED_TEXTS + BUILT_TEXTS)
def test_every_protocol_text_has_a_russian_rendering(line: str) -> None:
    russian = terminal.translate(line, "ru")
    assert russian != line
    assert CYRILLIC.search(russian.replace("Иван", "").replace("Мария", "")), russian
    assert russian[:2] == line[:2]  # still a notice, or still an error


@pytest.mark.parametrize(
    ("line", "russian"),
    [
        (protocol.greeting("alice", ["bob", "carol"]), "* Привет, alice! В сети: bob, carol"),
        (protocol.greeting("alice", []), "* Привет, alice! Вы здесь первый."),
        (protocol.joined("Мария_2-b"), "* Мария_2-b присоединился к чату"),
        (protocol.left("bob"), "* bob покинул чат"),
        (protocol.online(["alice", "bob"]), "* В сети (2): alice, bob"),
        (protocol.name_taken("alice"), "! имя уже занято: alice"),
        (protocol.no_such_user("what!?"), "! нет такого пользователя: what!?"),
        (protocol.unknown_command("/foo"), "! неизвестная команда: /foo (попробуйте /help)"),
        (protocol.line_too_long(4096), "! слишком длинная строка (максимум 4096 байт)"),
    ],
)
def test_the_varying_parts_survive_translation(line: str, russian: str) -> None:
    assert terminal.translate(line, "ru") == russian


@pytest.mark.parametrize(
    "line",
    [
        "bob: hello",
        "bob: * Welcome to chatlab! Enter your name:",
        "bob: * carol joined",
        "bob: ! name taken: carol",
        "* something a newer server says",
        "! an error this client does not know",
        "not a line of the protocol at all",
    ],
)
def test_chat_text_and_unknown_lines_are_never_translated(line: str) -> None:
    assert terminal.translate(line, "ru") == line


def test_a_private_message_is_marked_in_russian_but_its_text_is_untouched() -> None:
    line = protocol.private_message("bob", "* alice joined")
    assert terminal.translate(line, "ru") == "bob (лично): * alice joined"


@pytest.mark.parametrize("line", FIXED_TEXTS + BUILT_TEXTS + ["bob: hi", "bob (private): hi"])
def test_english_is_shown_as_it_came(line: str) -> None:
    assert terminal.translate(line, "en") == line


def test_an_unknown_language_is_our_own_mistake() -> None:
    with pytest.raises(ValueError):
        terminal.translate("* bob joined", "fr")


def test_the_client_has_every_one_of_its_texts_in_both_languages() -> None:
    assert set(terminal.CLIENT_TEXTS) == set(terminal.LANGUAGES)
    assert terminal.CLIENT_TEXTS["ru"].keys() == terminal.CLIENT_TEXTS["en"].keys()
    for key, text in terminal.CLIENT_TEXTS["ru"].items():
        assert CYRILLIC.search(text), key


# ---------------------------------------------------------------------------
# Showing lines: safe, coloured by kind, or plain
# ---------------------------------------------------------------------------


def test_plain_rendering_has_no_escape_codes() -> None:
    for line in ["* bob joined", "! no such user: x", "bob: hi", "bob (private): hi", "odd"]:
        assert terminal.render(line, color=False, own_name="alice") == line


def test_lines_are_coloured_by_kind() -> None:
    def coloured(line: str) -> str:
        return terminal.render(line, color=True)

    assert coloured("* bob joined") == terminal.paint("* bob joined", "notice")
    assert coloured("! server full") == terminal.paint("! server full", "error")
    assert coloured("bob (private): psst") == terminal.paint("bob (private): ", "private") + terminal.paint(
        "psst", "private_text"
    )
    assert coloured("bob: hi") == terminal.paint("bob: ", "sender") + "hi"
    assert len({terminal.STYLES[kind] for kind in ("notice", "error", "private", "sender", "own_name")}) == 5


def test_your_own_name_is_highlighted_as_a_whole_word() -> None:
    shown = terminal.render("bob: hi Alice, alicetta is here", color=True, own_name="alice")
    assert terminal.paint("Alice", "own_name") in shown
    assert "alicetta" in shown  # not a mention
    assert shown.count(terminal.STYLES["own_name"]) == 1


def test_translation_and_colour_together() -> None:
    shown = terminal.render("* alice joined", lang="ru", color=True)
    assert shown == terminal.paint("* alice присоединился к чату", "notice")


def test_control_characters_from_other_users_never_reach_the_terminal() -> None:
    # The naive server relays them: an ESC could clear the screen, a CR could
    # overwrite the line so that one user poses as another.
    shown = terminal.render("mallory: \x1b[2Jhi\rbob: I owe mallory money", color=False)
    assert shown == "mallory: [2Jhibob: I owe mallory money"


@pytest.mark.parametrize(
    ("requested", "interactive", "environ", "expected"),
    [
        (True, True, {}, True),
        (False, True, {}, False),
        (True, True, {"NO_COLOR": "1"}, False),
        (True, True, {"NO_COLOR": ""}, True),  # an empty NO_COLOR does not count
        (True, False, {}, False),  # scripts get plain text...
        (True, False, {"FORCE_COLOR": "1"}, True),  # ...unless colour is forced
        (True, False, {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
        (False, False, {"FORCE_COLOR": "1"}, False),
    ],
)
def test_when_to_colour(requested: bool, interactive: bool, environ: dict, expected: bool) -> None:
    assert terminal.use_color(requested, interactive, environ) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("/quit", True), ("/QUIT now", True), (" /quit ", True), ("//quit", False), ("quit", False), ("", False)],
)
def test_what_counts_as_quit(text: str, expected: bool) -> None:
    assert terminal.is_quit(text) is expected


def test_the_command_line_options() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    terminal.add_arguments(parser)
    defaults = parser.parse_args([])
    assert (defaults.host, defaults.port, defaults.name, defaults.lang, defaults.no_color) == (
        protocol.DEFAULT_HOST,
        protocol.DEFAULT_PORT,
        None,
        "en",
        False,
    )
    options = parser.parse_args(["--host", "::1", "--port", "9", "--name", "bob", "--lang", "ru", "--no-color"])
    assert (options.host, options.port, options.name, options.lang, options.no_color) == ("::1", 9, "bob", "ru", True)


# ---------------------------------------------------------------------------
# Scripting mode, end to end: the client as a subprocess with stdin piped
# ---------------------------------------------------------------------------


def test_script_mode_chats_and_quits_cleanly_at_the_end_of_stdin(server: ChatServer) -> None:
    host, port = server.address
    with ChatClient.connect(host, port, "bob") as bob:
        process = subprocess.Popen(
            client_command(port, "--name", "alice"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        try:
            output = LineReader(process.stdout)
            output.expect(protocol.greeting("alice", ["bob"]))
            bob.expect(protocol.joined("alice"))

            process.stdin.write("hello everyone\n@bob just for you\n")
            process.stdin.flush()
            bob.expect("alice: hello everyone")
            bob.expect("alice (private): just for you")

            bob.say("hi alice")
            output.expect("bob: hi alice")

            process.stdin.close()  # the end of input: the client says /quit
            output.expect(protocol.bye("alice"))
            bob.expect(protocol.left("alice"))
            assert process.wait(timeout=TIMEOUT) == 0
            assert output.rest()[0] == protocol.WELCOME
            assert ANSI_ESCAPE not in "".join(output.lines)
            assert process.stderr.read() == ""
        finally:
            process.kill()
            process.wait(timeout=TIMEOUT)
            process.stdout.close()
            process.stderr.close()


def test_script_mode_without_name_takes_the_first_line_as_the_name(server: ChatServer) -> None:
    host, port = server.address
    with ChatClient.connect(host, port, "bob") as bob:
        result = subprocess.run(
            client_command(port),
            input="carol\nhey bob\n",
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT,
        )
        bob.expect(protocol.joined("carol"))
        bob.expect("carol: hey bob")
        bob.expect(protocol.left("carol"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [protocol.WELCOME, protocol.greeting("carol", ["bob"]), protocol.bye("carol")]


def test_script_mode_shows_russian_and_exits_when_the_server_shuts_down() -> None:
    with ChatServer(host="127.0.0.1", port=0) as server:
        process = subprocess.Popen(
            client_command(server.address[1], "--name", "alice", "--lang", "ru"),
            stdin=subprocess.PIPE,  # left open: the server leaves first
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        try:
            output = LineReader(process.stdout)
            output.expect("* Привет, alice! Вы здесь первый.")
            server.stop()
            output.expect("* сервер завершает работу")
            assert process.wait(timeout=TIMEOUT) == 0
            assert process.stderr.read() == "chatlab client: сервер закрыл соединение\n"
            assert output.rest()[0] == "* Добро пожаловать в chatlab! Введите своё имя:"
        finally:
            process.kill()
            process.wait(timeout=TIMEOUT)
            for stream in (process.stdin, process.stdout, process.stderr):
                stream.close()


def test_a_taken_name_exits_with_an_error_and_a_clear_message(server: ChatServer) -> None:
    host, port = server.address
    with ChatClient.connect(host, port, "alice"):
        result = subprocess.run(
            client_command(port, "--name", "ALICE"),
            input="hello\n",
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT,
        )
    assert result.returncode != 0
    assert result.stdout.splitlines() == [protocol.WELCOME, protocol.name_taken("ALICE")]
    assert result.stderr == "chatlab client: the server closed the connection: name taken: ALICE\n"


def test_connection_refused_is_one_line_without_a_traceback() -> None:
    # A socket bound but not listening: connecting to its port is refused, and
    # holding it keeps anyone else from taking the port meanwhile.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        result = subprocess.run(
            client_command(port, "--name", "alice"), input="", capture_output=True, text=True, timeout=TIMEOUT
        )
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr == f"chatlab client: cannot connect to 127.0.0.1:{port}: Connection refused\n"


# ---------------------------------------------------------------------------
# Scripting mode in-process: the threads and the ways a connection ends
# ---------------------------------------------------------------------------


def run_script_in_process(port: int, stdin: str = "", **options: object) -> tuple[int, str, str]:
    """``run_script`` against 127.0.0.1:port; returns (status, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    status = terminal.run_script("127.0.0.1", port, stdin=io.StringIO(stdin), stdout=stdout, stderr=stderr, **options)
    return status, stdout.getvalue(), stderr.getvalue()


def test_run_in_process_joins_its_threads_and_closes(server: ChatServer) -> None:
    host, port = server.address
    with ChatClient.connect(host, port, "bob") as bob:
        stdout = io.StringIO()
        stdin = io.StringIO("one\n\ntwo\n/quit\nnever sent\n")
        status = terminal.run(host, port, name="alice", color=False, stdin=stdin, stdout=stdout)
        assert status == 0
        assert terminal_threads() == []
        assert stdout.getvalue().splitlines()[-1] == protocol.bye("alice")
        bob.expect("alice: one")
        assert bob.next_line(TIMEOUT) == protocol.Message("alice", "two")  # the blank line was not sent
        assert bob.next_line(TIMEOUT) == protocol.Notice("alice left")  # nor anything after /quit


def test_forced_colour_in_script_mode(server: ChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    host, port = server.address
    stdout = io.StringIO()
    assert terminal.run(host, port, name="alice", stdin=io.StringIO(""), stdout=stdout) == 0
    assert terminal.paint("* Bye, ", "notice") in stdout.getvalue()


def test_a_full_server_is_an_error() -> None:
    with ChatServer(host="127.0.0.1", port=0, max_clients=1) as server:
        with ChatClient.connect(*server.address, "bob"):
            status, stdout, stderr = run_script_in_process(server.address[1], name="alice")
    assert status != 0
    assert stdout == protocol.SERVER_FULL + "\n"
    assert stderr == "chatlab client: the server closed the connection: server full\n"


def test_a_server_that_never_says_welcome_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(terminal, "ANSWER_TIMEOUT", 0.05)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts
        status, stdout, stderr = run_script_in_process(silent.getsockname()[1], name="alice")
    assert status != 0
    assert stdout == ""
    assert stderr == "chatlab client: no welcome from the server within 0.05 s\n"
    assert terminal_threads() == []


class ScriptRun:
    """``run_script`` in a thread, for tests where the test itself plays the server."""

    def __init__(self, port: int, **options: object) -> None:
        self.outcome: tuple[int, str, str] | None = None
        self._thread = threading.Thread(target=self._run, args=(port, options), name="test-script-client", daemon=True)
        self._thread.start()

    def _run(self, port: int, options: dict) -> None:
        self.outcome = run_script_in_process(port, **options)

    def wait(self, timeout: float = TIMEOUT) -> tuple[int, str, str]:
        self._thread.join(timeout)
        assert not self._thread.is_alive() and self.outcome is not None, "the client did not exit"
        return self.outcome


def accept_and_welcome(listener: socket.socket) -> tuple[socket.socket, io.BufferedReader]:
    """Play the server's first steps: accept, send the welcome, read the name line."""
    listener.settimeout(TIMEOUT)
    connection, _ = listener.accept()
    connection.settimeout(TIMEOUT)
    connection.sendall(protocol.encode_line(protocol.WELCOME))
    lines = connection.makefile("rb")
    assert lines.readline() == b"alice\n"
    return connection, lines


def test_a_reset_connection_is_reported_as_lost() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = ScriptRun(listener.getsockname()[1], name="alice")
        connection, lines = accept_and_welcome(listener)  # the client has read the welcome
        with connection, lines:
            # Closing with SO_LINGER 0 sends a reset instead of a goodbye.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        status, stdout, stderr = client.wait()
    assert status != 0
    assert stdout == protocol.WELCOME + "\n"
    assert stderr == "chatlab client: connection lost: Connection reset by peer\n"


def test_leaving_does_not_hang_when_the_server_ignores_quit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The seed client's bug: close() does not wake a receiver blocked in recv(),
    # so it hung until the next line arrived. shutdown() wakes it at once.
    monkeypatch.setattr(terminal, "QUIT_TIMEOUT", 0.05)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = ScriptRun(listener.getsockname()[1], name="alice", stdin="")
        connection, lines = accept_and_welcome(listener)
        with connection, lines:
            connection.sendall(protocol.encode_line(protocol.greeting("alice", [])))
            assert lines.readline() == b"/quit\n"  # the end of stdin; we keep the connection open
            status, stdout, stderr = client.wait()
            assert lines.readline() == b""  # the client shut its side down
    assert status == 0
    assert stdout.splitlines() == [protocol.WELCOME, protocol.greeting("alice", [])]
    assert stderr == "chatlab client: the server did not close the connection within 0.05 s; closed it ourselves\n"
    assert terminal_threads() == []


# ---------------------------------------------------------------------------
# Interactive mode, in-process: keys through a pipe, the screen captured
# ---------------------------------------------------------------------------


def test_interactive_typed_lines_reach_the_server_and_quit_exits(server: ChatServer) -> None:
    host, port = server.address
    with ChatClient.connect(host, port, "bob") as bob, create_pipe_input() as keyboard:
        client = InteractiveRun(keyboard, port, color=False)
        client.screen.wait_for(protocol.WELCOME)
        client.screen.wait_for("your name>")
        client.type("alice\r")
        bob.expect(protocol.joined("alice"))
        client.type("hello bob\r")
        bob.expect("alice: hello bob")

        bob.say("hi alice")
        client.screen.wait_for("bob: hi alice")
        client.screen.wait_for("alice>")

        client.type("/quit\r")
        bob.expect(protocol.left("alice"))
        assert client.wait() == 0
    screen = client.screen.getvalue()
    assert protocol.bye("alice") in screen
    assert ANSI_ESCAPE not in screen
    assert terminal_threads() == []


# Ctrl-D ends the input only on an empty line (elsewhere it deletes a character);
# Ctrl-C leaves whatever was half-typed.
@pytest.mark.parametrize("keys", ["\x04", "half-typed, never sent\x03"], ids=["ctrl-d", "ctrl-c"])
def test_interactive_ctrl_d_and_ctrl_c_leave_cleanly(server: ChatServer, keys: str) -> None:
    host, port = server.address
    with ChatClient.connect(host, port, "bob") as bob, create_pipe_input() as keyboard:
        client = InteractiveRun(keyboard, port, name="alice", color=False)
        bob.expect(protocol.joined("alice"))
        client.screen.wait_for("alice>")
        client.type(keys)
        assert bob.next_line(TIMEOUT) == protocol.Notice("alice left")  # /quit, not the half-typed line
        assert client.wait() == 0
    assert protocol.bye("alice") in client.screen.getvalue()


def test_interactive_exits_when_the_server_closes_while_waiting_at_the_prompt() -> None:
    with ChatServer(host="127.0.0.1", port=0) as server, create_pipe_input() as keyboard:
        client = InteractiveRun(keyboard, server.address[1], name="alice", color=False)
        client.screen.wait_for("alice>")
        client.type("still typ")  # the prompt is busy with a half-typed line
        server.stop()
        assert client.wait() == 0
    screen = client.screen.getvalue()
    assert protocol.SHUTTING_DOWN in screen
    assert "the server closed the connection" in screen
    assert terminal_threads() == []


def test_interactive_in_russian_with_a_refused_name(server: ChatServer) -> None:
    host, port = server.address
    with ChatClient.connect(host, port, "alice"), create_pipe_input() as keyboard:
        client = InteractiveRun(keyboard, port, lang="ru", color=False)
        client.screen.wait_for("* Добро пожаловать в chatlab! Введите своё имя:")
        client.screen.wait_for("ваше имя>")
        client.type("Alice\r")
        assert client.wait() != 0
    screen = client.screen.getvalue()
    assert "! имя уже занято: Alice" in screen
    assert "сервер закрыл соединение: имя уже занято: Alice" in screen


def test_interactive_colours_lines_and_highlights_your_name(
    server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    host, port = server.address
    with ChatClient.connect(host, port, "bob") as bob, create_pipe_input() as keyboard:
        client = InteractiveRun(keyboard, port, name="alice", color=True)
        bob.expect(protocol.joined("alice"))
        bob.whisper("alice", "psst alice")
        client.screen.wait_for(terminal.paint("bob (private): ", "private"))
        client.screen.wait_for(terminal.paint("alice", "own_name"))
        client.type("\x04")
        assert client.wait() == 0
