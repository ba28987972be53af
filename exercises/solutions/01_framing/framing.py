"""Exercise 1, solved: a line reader over a byte stream.

What changed: the reader keeps the bytes after the last LF between calls, and
decodes a line only once its LF has arrived, so a character split across reads is
whole again. A line over the limit is reported once, as soon as it is known to be
too long, and its bytes are skipped up to the next LF without being stored: a
client cannot make the server hold more than max_line bytes for it.

The model answer is ``chatlab.protocol.LineBuffer``, which every later exercise uses.
"""

from __future__ import annotations

from chatlab.protocol import MAX_LINE, InvalidUtf8, Line, LineTooLong

Frame = Line | LineTooLong | InvalidUtf8


class LineReader:
    """Feed it every chunk ``recv()`` returns; it gives back the frames completed so far."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._partial = bytearray()  # bytes of the line not finished yet
        self._skipping = False  # inside an over-long line: drop bytes up to the next LF

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        *complete, rest = data.split(b"\n")
        for piece in complete:
            if self._skipping:
                self._skipping = False  # the over-long line ends here; already reported
            elif len(self._partial) + len(piece) + 1 > self.max_line:
                frames.append(LineTooLong(self.max_line))
            else:
                frames.append(self._decode(bytes(self._partial) + piece))
            self._partial.clear()
        if not self._skipping:
            self._partial += rest
            if len(self._partial) + 1 > self.max_line:  # too long even before its LF arrives
                frames.append(LineTooLong(self.max_line))
                self._partial.clear()
                self._skipping = True
        return frames

    @staticmethod
    def _decode(line: bytes) -> Line | InvalidUtf8:
        # Decoding only whole lines means a character split across reads is whole again.
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            return Line(line.decode("utf-8"))
        except UnicodeDecodeError:
            return InvalidUtf8(line)
