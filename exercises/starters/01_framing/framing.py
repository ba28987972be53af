"""Exercise 1 (framing): turn a TCP byte stream into lines.

TCP delivers bytes, not messages: one ``recv()`` may return half a line, three
lines, or stop inside a multi-byte UTF-8 character. The seed treated each
``recv(1024)`` as one message. Write a line reader that keeps the bytes after the
last LF until the rest of the line arrives. Read this folder's README first, then
look for ``TODO``; ``chatlab ex check 1`` says what still fails.
"""

from __future__ import annotations

from chatlab.protocol import MAX_LINE, InvalidUtf8, Line, LineTooLong

Frame = Line | LineTooLong | InvalidUtf8


class LineReader:
    """Feed it every chunk ``recv()`` returns; it gives back the frames completed so far.

    A frame is ``Line(text)`` (without its LF, and without a CR right before the LF),
    ``LineTooLong(max_line)`` for a line over ``max_line`` bytes (LF included), or
    ``InvalidUtf8(data)`` for a complete line that is not UTF-8.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line

    def feed(self, data: bytes) -> list[Frame]:
        # TODO: this is the seed's idea: one chunk is one line. Instead keep a buffer of
        # the bytes received but not yet part of a complete line; split on b"\n"; decode
        # each complete line on its own (a chunk may end inside a character); drop a CR
        # right before the LF; report a line longer than max_line bytes (LF included)
        # once, as LineTooLong(self.max_line), and skip its bytes up to the next LF
        # without storing them.
        return [Line(data.decode("utf-8").rstrip("\n"))]
