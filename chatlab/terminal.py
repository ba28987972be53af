"""The interactive terminal client behind ``chatlab client``: type lines, read the chat.

Like the client of the original assignment, it runs two threads: the main thread
reads what you type and sends it, and a receiver thread reads what the server sends
and shows it. What it does differently, and why:

Lines arriving while you type
    With plain ``input()`` and ``print()``, a line printed by the receiver thread lands
    in the middle of the line you are typing, and your half-typed text is cut in two.
    Here the input line is drawn by prompt_toolkit, and the receiver prints through
    ``patch_stdout``: inside that block ``sys.stdout`` is a proxy that hands every
    complete line to the prompt's event loop, which erases the input line, prints the
    incoming line above it, and draws the input line again with your text and cursor
    where they were. prompt_toolkit draws from one thread only; the proxy is what lets
    another thread print safely.

Who writes to the socket
    Only the main thread. The receiver thread never sends, not even the name after
    the welcome: it records what arrived and sets a :class:`threading.Event`, and the
    main thread, which waits for that event, sends. One writer per socket means two
    lines can never interleave on the wire and no lock is needed around ``sendall``;
    and a receiver that could block in ``sendall`` (while the server blocks sending to
    us) would stop reading, which is how two programs deadlock.

Waking the receiver
    The seed client called ``close()`` to leave, but on Linux closing a socket does not
    wake a thread blocked in ``recv()`` on it: the client hung until the next line
    arrived and then printed an error. :meth:`Connection.close` calls
    ``shutdown(SHUT_RDWR)`` first, which makes the blocked ``recv()`` return ``b""``
    at once; the receiver ends, is joined, and only then is the socket closed.

Leaving
    ``/quit``, Ctrl-D and Ctrl-C all send ``/quit`` (once joined), wait a few seconds
    for the server to say goodbye and close, and exit with status 0. When the server
    closes first (it shut down, or refused our name) the receiver thread ends and
    wakes the prompt (see :meth:`InteractiveClient._on_server_closed`); the client says
    so and exits, with status 1 when the server's last word was an error or we never
    joined.

Without a terminal
    When stdin is not a terminal (``printf 'alice\\nhello\\n' | chatlab client``), the
    client is a plain line filter for scripts: each stdin line is sent, each server
    line is printed to stdout without colour, and the client's own messages go to
    stderr. At the end of stdin it sends ``/quit``, waits for the server to close,
    prints the last lines and exits 0. A third thread reads stdin so that the main
    thread can wait on one queue for "a line to send", "end of input" or "the server
    closed", whichever comes first.

What is shown is decided by pure functions, testable without a network:
:func:`translate` renders the server's fixed texts in Russian (``--lang ru``, the
language of the original assignment; chat text itself is never translated), and
:func:`render` makes a server line safe for the terminal and colours it by kind.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import re
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import Input, create_input
from prompt_toolkit.output import Output, create_output
from prompt_toolkit.patch_stdout import patch_stdout

from chatlab import protocol
from chatlab.protocol import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ENCODING,
    ErrorLine,
    Line,
    LineBuffer,
    Message,
    Notice,
    Quit,
    encode_line,
    normalize_name,
    parse_command,
    parse_server_line,
    sanitize,
)

logger = logging.getLogger(__name__)

LANGUAGES = ("en", "ru")

CONNECT_TIMEOUT = 10.0  # seconds to establish the TCP connection
ANSWER_TIMEOUT = 10.0  # seconds to wait for the welcome, and for the answer to our name
QUIT_TIMEOUT = 5.0  # seconds to wait for the server to close after we send /quit
JOIN_TIMEOUT = 5.0  # seconds to wait for the receiver thread once its socket is shut down

EXIT_OK = 0
EXIT_ERROR = 1


# ---------------------------------------------------------------------------
# Translation: a server line in, the text to show out
# ---------------------------------------------------------------------------
#
# The server always speaks English (the protocol is a contract, and bots parse it).
# Translating is the client's business: a pure function from one server line to the
# text to show. Every fixed text of the protocol has a Russian rendering; anything
# else, chat text above all, is shown exactly as it came.

_RUSSIAN_TEXTS = {
    protocol.WELCOME: "* Добро пожаловать в chatlab! Введите своё имя:",
    protocol.SERVER_FULL: "! сервер переполнен",
    protocol.INVALID_NAME: "! недопустимое имя: используйте 1-24 буквы, цифры, _ или -",
    protocol.NAME_TIMED_OUT: "! время ожидания имени истекло",
    protocol.INVALID_UTF8: "! некорректный UTF-8, строка отброшена",
    protocol.USAGE_PRIVATE: "! использование: @имя сообщение",
    protocol.TOO_SLOW: "! вы слишком медленно читаете, отключение",
    protocol.SLOW_DOWN: "! помедленнее, сообщение отброшено",
    protocol.SHUTTING_DOWN: "* сервер завершает работу",
    protocol.HELP: "* Команды: /users, /quit, /help. @имя сообщение отправляет лично; // начинает строку с /.",
}

# Names hold none of the characters the grammar uses (protocol.GRAMMAR_CHARACTERS).
_NAME = r"(?P<name>[^ *!:@/()]+)"

# The texts with parts that vary: (pattern for the whole English line, Russian template).
_RUSSIAN_PATTERNS = [
    (re.compile(r"\* Hi " + _NAME + r"! You are the first one here\."), "* Привет, {name}! Вы здесь первый."),
    (re.compile(r"\* Hi " + _NAME + r"! Online: (?P<others>.+)"), "* Привет, {name}! В сети: {others}"),
    (re.compile(r"\* " + _NAME + r" joined"), "* {name} присоединился к чату"),
    (re.compile(r"\* " + _NAME + r" left"), "* {name} покинул чат"),
    (re.compile(r"\* Bye, " + _NAME + r"!"), "* Пока, {name}!"),
    (re.compile(r"\* Online \((?P<count>\d+)\): (?P<names>.+)"), "* В сети ({count}): {names}"),
    (re.compile(r"! name taken: (?P<name>.+)"), "! имя уже занято: {name}"),
    (re.compile(r"! no such user: (?P<target>.+)"), "! нет такого пользователя: {target}"),
    (
        re.compile(r"! unknown command: (?P<word>\S+) \(try /help\)"),
        "! неизвестная команда: {word} (попробуйте /help)",
    ),
    (re.compile(r"! line too long \(max (?P<limit>\d+) bytes\)"), "! слишком длинная строка (максимум {limit} байт)"),
]

_RUSSIAN_PRIVATE = "лично"  # shown instead of "private" in "bob (private): text"


def translate(line: str, lang: str) -> str:
    """The text to show for one server line in ``lang`` ("en" or "ru").

    Fixed texts are translated; chat text never is, and a line this client does not
    know (a newer server, a broken one) is shown in English, as it came::

        >>> translate("* bob joined", "ru")
        '* bob присоединился к чату'
        >>> translate("bob (private): * bob joined", "ru")
        'bob (лично): * bob joined'
    """
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; choose one of {LANGUAGES}")
    if lang == "en":
        return line
    if line in _RUSSIAN_TEXTS:
        return _RUSSIAN_TEXTS[line]
    if line.startswith(("* ", "! ")):  # only server texts start so: no name holds * or !
        for pattern, template in _RUSSIAN_PATTERNS:
            if match := pattern.fullmatch(line):
                return template.format(**match.groupdict())
        return line
    parsed = parse_server_line(line)
    if isinstance(parsed, Message) and parsed.private:
        return f"{parsed.sender} ({_RUSSIAN_PRIVATE}): {parsed.text}"
    return line


# The client's own words: prompts and what it says about the connection.
CLIENT_TEXTS = {
    "en": {
        "name_prompt": "your name> ",
        "hint": "Type /help for the commands; /quit, Ctrl-D or Ctrl-C to leave.",
        "cannot_connect": "cannot connect to {address}: {reason}",
        "no_welcome": "no welcome from the server within {seconds:g} s",
        "no_answer": "no answer to our name within {seconds:g} s",
        "closed": "the server closed the connection",
        "closed_with_error": "the server closed the connection: {error}",
        "lost": "connection lost: {reason}",
        "no_close": "the server did not close the connection within {seconds:g} s; closed it ourselves",
    },
    "ru": {
        "name_prompt": "ваше имя> ",
        "hint": "Команды: /help; выйти: /quit, Ctrl-D или Ctrl-C.",
        "cannot_connect": "не удалось подключиться к {address}: {reason}",
        "no_welcome": "сервер не поприветствовал нас за {seconds:g} с",
        "no_answer": "сервер не ответил на имя за {seconds:g} с",
        "closed": "сервер закрыл соединение",
        "closed_with_error": "сервер закрыл соединение: {error}",
        "lost": "соединение потеряно: {reason}",
        "no_close": "сервер не закрыл соединение за {seconds:g} с; закрыли сами",
    },
}


def client_text(lang: str, key: str, **fields: object) -> str:
    """One of the client's own messages in ``lang``, with its fields filled in."""
    return CLIENT_TEXTS[lang][key].format(**fields)


# ---------------------------------------------------------------------------
# Showing a line: safe, translated, coloured by kind
# ---------------------------------------------------------------------------

# ANSI "select graphic rendition" codes, as in the seed's green_s and red_s.
STYLES = {
    "notice": "32",  # green: joins, leaves, listings (the seed coloured joins green)
    "error": "31",  # red: the server refusing something (the seed's errors were red)
    "private": "1;35",  # bold magenta: "bob (private):"
    "private_text": "35",  # magenta: the text of a private message
    "sender": "1",  # bold: "bob:" before a public message
    "own_name": "1;33",  # bold yellow: your own name, wherever it appears
    "client": "36",  # cyan: what this client says, not the server
}


def paint(text: str, style: str | None) -> str:
    """``text`` in one of the :data:`STYLES` (``None``: as it is)."""
    if style is None or not text:
        return text
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m"


def _paint_mentions(text: str, style: str | None, own_name: str | None) -> str:
    """``text`` in ``style``, with every whole-word mention of ``own_name`` highlighted."""
    if not own_name:
        return paint(text, style)
    # The capturing group makes split() keep the mentions, at the odd positions.
    mention = re.compile(r"(?<![\w-])(" + re.escape(own_name) + r")(?![\w-])", re.IGNORECASE)
    pieces = mention.split(text)
    return "".join(paint(piece, "own_name" if index % 2 else style) for index, piece in enumerate(pieces))


def render(line: str, lang: str = "en", color: bool = False, own_name: str | None = None) -> str:
    """How one server line is shown: control characters removed, translated, coloured.

    Control characters are removed even though the reference server already does it:
    the naive server relays ESC and CR, and a client must not let another user clear
    its screen or overwrite a line.
    """
    safe = sanitize(line)
    shown = translate(safe, lang)
    if not color:
        return shown
    parsed = parse_server_line(safe)
    if isinstance(parsed, Notice):
        return _paint_mentions(shown, "notice", own_name)
    if isinstance(parsed, ErrorLine):
        return _paint_mentions(shown, "error", own_name)
    if isinstance(parsed, Message):
        # Only the part before the text is ever translated, so the text ends the line.
        head = shown[: len(shown) - len(parsed.text)]
        if parsed.private:
            return paint(head, "private") + _paint_mentions(parsed.text, "private_text", own_name)
        return paint(head, "sender") + _paint_mentions(parsed.text, None, own_name)
    return _paint_mentions(shown, None, own_name)


def use_color(requested: bool, interactive: bool, environ: Mapping[str, str]) -> bool:
    """Whether to colour the lines shown.

    Never with ``--no-color`` or a non-empty NO_COLOR (https://no-color.org); always
    at a terminal; in scripting mode only when FORCE_COLOR is set.
    """
    if not requested or environ.get("NO_COLOR"):
        return False
    return interactive or bool(environ.get("FORCE_COLOR"))


def is_quit(text: str) -> bool:
    """True if the server would take ``text`` as /quit (any case, arguments ignored)."""
    cleaned = sanitize(text)
    return bool(cleaned) and isinstance(parse_command(cleaned), Quit)


# ---------------------------------------------------------------------------
# The connection: one socket, one receiver thread
# ---------------------------------------------------------------------------


def open_socket(host: str, port: int) -> socket.socket:
    """Connect to the server; raises OSError (refused, unreachable, timed out)."""
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    sock.settimeout(None)  # the receiver blocks in recv(); shutdown() is what wakes it
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a chat sends small lines
    return sock


def _reason(error: BaseException) -> str:
    """A short human reason for an OSError, such as "Connection refused"."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


class Connection:
    """The socket to the server and the receiver thread that reads it.

    The main thread sends (:meth:`send_line`, :meth:`join`, :meth:`quit`); the receiver
    thread only receives. It splits the byte stream into lines, passes each one to
    ``show``, and records the handshake: the first line is the welcome (or a refusal
    such as ``! server full``), and the next one answers our name (the protocol
    guarantees that nothing comes in between). When the stream ends it calls
    ``on_closed``, from the receiver thread.
    """

    def __init__(
        self, sock: socket.socket, show: Callable[[str], None], on_closed: Callable[[], None] = lambda: None
    ) -> None:
        self.sock = sock
        self._show = show
        self._on_closed = on_closed
        self.name: str | None = None  #: the name we sent, normalized as the server does it
        # Written by the receiver thread only, before it sets the event that follows;
        # the main thread reads them after waiting for that event. Event.set() and
        # Event.wait() order the two threads, so these need no lock.
        self.welcome: str | None = None  #: the first line from the server
        self.answer: str | None = None  #: the line that answered our name
        self.last_line: str | None = None  #: the last line received
        self.error: OSError | None = None  #: why the stream ended, if it was not a clean close
        self.welcomed = threading.Event()  # the first line arrived, or the stream ended
        self.answered = threading.Event()  # the answer to our name arrived, or the stream ended
        self.closed = threading.Event()  # the stream ended
        self._receiver = threading.Thread(target=self._receive, name="terminal-receiver")

    def start(self) -> None:
        """Start the receiver thread."""
        self._receiver.start()

    # -- what the receiver has learned (read these after the matching event) -----

    @property
    def admitted(self) -> bool:
        """True if the first line was the welcome, not a refusal."""
        return self.welcome is not None and isinstance(parse_server_line(self.welcome), Notice)

    @property
    def joined(self) -> bool:
        """True if the server accepted our name."""
        return self.answer is not None and isinstance(parse_server_line(self.answer), Notice)

    # -- the main thread's side ---------------------------------------------------

    def wait_welcome(self) -> bool:
        """Wait (at most ANSWER_TIMEOUT seconds) for the first line; True if it is the welcome."""
        if self.welcomed.wait(ANSWER_TIMEOUT) and not self.admitted:
            self.closed.wait(QUIT_TIMEOUT)  # a refusal is followed by the close
        return self.admitted

    def send_line(self, text: str) -> bool:
        """Send one line; False if the connection is gone (the receiver will report it)."""
        try:
            self.sock.sendall(encode_line(text))
        except OSError:
            return False
        return True

    def join(self, name: str) -> bool:
        """Send our name and wait (at most ANSWER_TIMEOUT seconds) for the answer.

        Returns True if the server accepted the name.
        """
        self.name = normalize_name(name)
        self.send_line(name)  # if it fails, the receiver sees the end and sets `answered`
        if self.answered.wait(ANSWER_TIMEOUT) and not self.joined:
            self.closed.wait(QUIT_TIMEOUT)  # a refusal is followed by the close
        return self.joined

    def quit(self) -> None:
        """Say /quit if we joined, and wait (at most QUIT_TIMEOUT seconds) for the close.

        Before joining there is nobody to say goodbye to: the server announces no one.
        """
        if self.joined and not self.closed.is_set():
            self.send_line("/quit")
            self.closed.wait(QUIT_TIMEOUT)

    def close(self) -> None:
        """Close the connection and join the receiver thread.

        ``shutdown()`` first: it wakes a receiver blocked in ``recv()``, which
        ``close()`` alone does not do on Linux (the seed client's bug).
        """
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the server has already gone: nothing left to shut down
        if self._receiver.ident is not None:  # started
            self._receiver.join(JOIN_TIMEOUT)
        self.sock.close()

    # -- the receiver thread ---------------------------------------------------------

    def _receive(self) -> None:
        buffer = LineBuffer(max_line=None)  # the server's lines have no length limit
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except OSError as error:  # a reset: the server vanished without a goodbye
                    self.error = error
                    break
                if not data:  # the server closed, or our own shutdown() woke us
                    break
                for frame in buffer.feed(data):
                    text = frame.text if isinstance(frame, Line) else frame.data.decode(ENCODING, "replace")
                    self._received(text)
        except Exception:
            logger.exception("the receiver thread failed")
        finally:
            self.welcomed.set()
            self.answered.set()
            self.closed.set()
            self._on_closed()

    def _received(self, text: str) -> None:
        self._show(text)  # before any event is set: the main thread prints after it
        self.last_line = text
        if self.welcome is None:
            self.welcome = text
            self.welcomed.set()
        elif self.answer is None:
            self.answer = text
            self.answered.set()


def farewell(connection: Connection, user_left: bool, lang: str) -> tuple[int, str | None]:
    """The exit status, and what to tell the user, when the chat is over.

    Call it before closing the connection: whether the server has closed is part of
    the answer. Leaving on purpose is a success. When the server closed first, it is
    a success only if we had joined and its last line was not an error: a shutdown
    is normal life, a refused name or ``! too slow`` is not.
    """
    if user_left:
        if connection.joined and not connection.closed.is_set():
            return EXIT_OK, client_text(lang, "no_close", seconds=QUIT_TIMEOUT)
        return EXIT_OK, None
    if not connection.welcomed.is_set():
        return EXIT_ERROR, client_text(lang, "no_welcome", seconds=ANSWER_TIMEOUT)
    if connection.name is not None and not connection.answered.is_set():
        return EXIT_ERROR, client_text(lang, "no_answer", seconds=ANSWER_TIMEOUT)
    if connection.error is not None:
        return EXIT_ERROR, client_text(lang, "lost", reason=_reason(connection.error))
    last_line = connection.last_line or ""
    if isinstance(parse_server_line(last_line), ErrorLine):
        error = translate(last_line, lang).removeprefix("! ")
        return EXIT_ERROR, client_text(lang, "closed_with_error", error=error)
    return (EXIT_OK if connection.joined else EXIT_ERROR), client_text(lang, "closed")


def chat_session(connection: Connection, chat: Callable[[], bool], lang: str) -> tuple[int, str | None]:
    """Start the receiver, run the input loop ``chat``, leave, close; return :func:`farewell`'s answer.

    ``chat`` returns True when the user chose to leave (/quit, end of input, Ctrl-D,
    Ctrl-C) and False when the server ended the chat. Both modes share this.
    """
    connection.start()
    try:
        try:
            user_left = chat()
        except KeyboardInterrupt:  # Ctrl-C while no prompt was there to catch it
            user_left = True
        if user_left:
            connection.quit()
        return farewell(connection, user_left, lang)
    finally:
        connection.close()


def _cannot_connect(host: str, port: int, error: OSError, lang: str, stderr: TextIO) -> int:
    reason = _reason(error)
    stderr.write(f"chatlab client: {client_text(lang, 'cannot_connect', address=f'{host}:{port}', reason=reason)}\n")
    return EXIT_ERROR


# ---------------------------------------------------------------------------
# Interactive mode: a prompt at the bottom, the chat scrolling above it
# ---------------------------------------------------------------------------


class InteractiveClient:
    """The input loop at a terminal, on the main thread, with the receiver beside it.

    Create it inside ``patch_stdout()``, and pass the proxy that ``sys.stdout`` is
    there as ``screen`` (see :func:`run_interactive`).
    """

    def __init__(self, sock: socket.socket, name: str | None, lang: str, color: bool, screen: TextIO) -> None:
        self.name = name
        self.lang = lang
        self.color = color
        self.screen = screen  # the patch_stdout proxy: whatever is written appears above the prompt
        self.session: PromptSession[str] = PromptSession()
        self.connection = Connection(sock, show=self._show, on_closed=self._on_server_closed)

    def run(self) -> int:
        """Chat until the user or the server ends it; return the exit status."""
        status, message = chat_session(self.connection, self._chat, self.lang)
        if message is not None:
            self.say(message)
        return status

    def _show(self, line: str) -> None:
        """Show one server line (runs in the receiver thread)."""
        own_name = self.connection.name if self.color else None
        # One write() per line: print() would write the text and the LF separately,
        # and another thread's line could land in between.
        self.screen.write(render(line, self.lang, self.color, own_name) + "\n")

    def say(self, text: str) -> None:
        """Show one of the client's own messages."""
        self.screen.write(paint(text, "client" if self.color else None) + "\n")

    def _chat(self) -> bool:
        """The input loop; True if the user chose to leave, False if the server ended it."""
        if not self.connection.wait_welcome():
            return False
        if self.name is not None and not self.connection.join(self.name):
            return False
        if self.connection.joined:
            self.say(client_text(self.lang, "hint"))
        while True:
            try:
                text = self._prompt()
            except (EOFError, KeyboardInterrupt):  # Ctrl-D, Ctrl-C
                return True
            if text is None:
                return False
            if not text.strip():
                continue  # a stray Enter: the server would ignore it, or refuse it as a name
            if is_quit(text):
                return True
            if self.connection.joined:
                self.connection.send_line(text)
            elif self.connection.join(text):
                self.say(client_text(self.lang, "hint"))
            else:
                return False

    def _prompt(self) -> str | None:
        """Read one line; None when the server has closed the connection."""
        if self.connection.joined:
            message = f"{self.connection.name}> "
        else:
            message = client_text(self.lang, "name_prompt")
        return self.session.prompt(message, pre_run=self._stop_prompt_if_closed)

    # The server can close the connection while the main thread waits in prompt().
    # The receiver thread must then make prompt() return, but prompt_toolkit objects
    # belong to the event loop that runs the prompt: the receiver may only ask that
    # loop, with call_soon_threadsafe(), to run _stop_prompt_if_closed() for it. If no
    # prompt is running yet, the next one calls the same function as it starts
    # (pre_run), so whichever thread comes second finds the connection closed.

    def _on_server_closed(self) -> None:
        """Runs in the receiver thread when the stream has ended: wake the prompt."""
        loop = self.session.app.loop
        if loop is None:
            return  # no prompt running: the next one stops itself in pre_run
        try:
            loop.call_soon_threadsafe(self._stop_prompt_if_closed)
        except RuntimeError:
            pass  # that prompt's loop has just closed; the next prompt checks in pre_run

    def _stop_prompt_if_closed(self) -> None:
        """Runs in the prompt's event loop: end prompt() with None if the server left."""
        app = self.session.app
        if self.connection.closed.is_set() and app.is_running and not app.is_done:
            app.exit(result=None)


def run_interactive(
    host: str,
    port: int,
    name: str | None = None,
    lang: str = "en",
    color: bool = True,
    *,
    input: Input | None = None,
    output: Output | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Chat at a terminal; return the exit status.

    ``input`` and ``output`` are prompt_toolkit's and default to the real terminal;
    tests pass a pipe input (``prompt_toolkit.input.create_pipe_input``) and an output
    that captures what is drawn.
    """
    try:
        sock = open_socket(host, port)
    except OSError as error:
        return _cannot_connect(host, port, error, lang, stderr or sys.stderr)
    # Only tests replace the terminal. A fresh app session for the real terminal
    # would give the prompt and the stdout proxy different outputs, and incoming lines
    # would then be glued to the half-typed input line instead of printed above it.
    terminal = create_app_session(input=input, output=output) if input or output else contextlib.nullcontext()
    with terminal, patch_stdout(raw=True):
        # Inside patch_stdout, sys.stdout is the proxy that prints above the prompt.
        # raw=True lets our colour codes through; render() has removed the peer's.
        client = InteractiveClient(sock, name, lang, color, screen=sys.stdout)
        try:
            return client.run()
        except KeyboardInterrupt:  # a second Ctrl-C while waiting to leave
            return EXIT_OK


# ---------------------------------------------------------------------------
# Scripting mode: stdin is not a terminal
# ---------------------------------------------------------------------------

_END_OF_INPUT = object()  # put on the events queue when stdin ends
_SERVER_CLOSED = object()  # put on the events queue when the server's stream ends


class ScriptClient:
    """The line filter: stdin lines to the server, server lines to stdout.

    The main thread waits on one queue, ``events``, for whatever comes first: a line
    from the stdin reader thread, the end of stdin, or the end of the server's stream
    from the receiver thread.
    """

    def __init__(
        self,
        sock: socket.socket,
        name: str | None,
        lang: str,
        color: bool,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
    ) -> None:
        self.name = name
        self.lang = lang
        self.color = color
        self.stdout = stdout
        self.stderr = stderr
        self.events: queue.Queue[object] = queue.Queue()  # stdin lines, _END_OF_INPUT, _SERVER_CLOSED
        self.input_ended = False  # the main thread has taken _END_OF_INPUT off the queue
        self.connection = Connection(sock, show=self._show, on_closed=lambda: self.events.put(_SERVER_CLOSED))
        # A blocking read of stdin cannot be interrupted, so when the server closes
        # first this thread is left behind, waiting for input that nobody will send.
        # It holds nothing that needs cleaning up, so it is a daemon: it does not keep
        # the process alive. It is joined when stdin ends first.
        self.reader = threading.Thread(target=self._read_lines, args=(stdin,), name="terminal-stdin", daemon=True)

    def run(self) -> int:
        """Chat until stdin or the server ends it; return the exit status."""
        status, message = chat_session(self.connection, self._chat, self.lang)
        if self.input_ended:
            self.reader.join()  # it put _END_OF_INPUT as its last act
        if message is not None:
            self.stderr.write(f"chatlab client: {message}\n")
        return status

    def _show(self, line: str) -> None:
        """Print one server line (runs in the receiver thread)."""
        own_name = self.connection.name if self.color else None
        self.stdout.write(render(line, self.lang, self.color, own_name) + "\n")
        self.stdout.flush()  # a script reading our output waits for each line

    def _read_lines(self, stdin: TextIO) -> None:
        """The stdin reader thread: put every line on the queue, then the end of input."""
        try:
            for line in stdin:
                self.events.put(line.removesuffix("\n"))
        except Exception:
            logger.exception("reading stdin failed")
        finally:
            self.events.put(_END_OF_INPUT)

    def _chat(self) -> bool:
        """Send stdin's lines; True if stdin ended (or said /quit), False if the server ended it."""
        if not self.connection.wait_welcome():
            return False
        if self.name is not None and not self.connection.join(self.name):
            return False
        self.reader.start()  # only now: the first line is the name when --name is not given
        while True:
            event = self.events.get()
            if event is _SERVER_CLOSED:
                return False
            if event is _END_OF_INPUT:
                self.input_ended = True
                return True
            assert isinstance(event, str)
            if not event.strip():
                continue  # the server would ignore it, or refuse it as a name
            if is_quit(event):
                return True
            if self.connection.joined:
                self.connection.send_line(event)
            elif not self.connection.join(event):
                return False


def run_script(
    host: str,
    port: int,
    name: str | None = None,
    lang: str = "en",
    color: bool = False,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Send each line of ``stdin``, print each server line to ``stdout``; return the exit status.

    The client's own messages go to ``stderr``, so stdout holds only what the server said.
    """
    stderr = stderr or sys.stderr
    try:
        sock = open_socket(host, port)
    except OSError as error:
        return _cannot_connect(host, port, error, lang, stderr)
    client = ScriptClient(sock, name, lang, color, stdin or sys.stdin, stdout or sys.stdout, stderr)
    try:
        return client.run()
    except KeyboardInterrupt:  # a second Ctrl-C while waiting to leave
        return EXIT_OK


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------


def run(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    name: str | None = None,
    lang: str = "en",
    color: bool = True,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run the client: interactive if ``stdin`` is a terminal, else a line filter.

    Returns the exit status: 0 when the user left or the server closed normally, 1
    for an error (connection refused, name refused, an error from the server).
    """
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; choose one of {LANGUAGES}")
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    interactive = stdin.isatty()
    color = use_color(color, interactive, os.environ)
    if interactive:
        terminal_input = None if stdin is sys.stdin else create_input(stdin)
        terminal_output = None if stdout is sys.stdout else create_output(stdout)
        return run_interactive(host, port, name, lang, color, input=terminal_input, output=terminal_output)
    return run_script(host, port, name, lang, color, stdin, stdout)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``chatlab client`` to ``parser``."""
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"server address (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    parser.add_argument("--name", help="join with this name instead of typing it at the prompt")
    parser.add_argument(
        "--lang", choices=LANGUAGES, default="en", help="language of the server's notices and the client's own texts"
    )
    parser.add_argument("--no-color", action="store_true", help="do not colour lines (also when NO_COLOR is set)")


def main(args: argparse.Namespace) -> int:
    """Run ``chatlab client`` with parsed arguments; return the exit status."""
    return run(args.host, args.port, name=args.name, lang=args.lang, color=not args.no_color)
