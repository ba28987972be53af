"""Checks for exercise 1: the line reader as pure code, then over a real TCP connection."""

from __future__ import annotations

import random
import socket

from chatlab.exercises.kit import Checklist, CheckResult
from chatlab.protocol import InvalidUtf8, Line, LineTooLong

# (requirement, chunks fed one by one, max_line, the frames expected in all)
CASES = [
    ("a line split over two reads comes out whole", [b"hel", b"lo\n"], 4096, [Line("hello")]),
    ("several lines in one read come out one by one", [b"a\nbb\nccc\n"], 4096, [Line("a"), Line("bb"), Line("ccc")]),
    ("a line's end and the next one's start in one read", [b"one\ntw", b"o\n"], 4096, [Line("one"), Line("two")]),
    ("an unfinished line is held, not returned", [b"no end yet"], 4096, []),
    ("a CR right before the LF is dropped", [b"windows\r\n"], 4096, [Line("windows")]),
    ("an empty line is a line", [b"\n"], 4096, [Line("")]),
    ("a UTF-8 character split across reads is put back together", ["Привет\n".encode()[:3], "Привет\n".encode()[3:]], 4096, [Line("Привет")]),
    ("a line of invalid UTF-8 is reported and the next line is fine", [b"caf\xc3(\n", b"ok\n"], 4096, [InvalidUtf8(b"caf\xc3("), Line("ok")]),
    ("a line of exactly max_line bytes (LF included) is accepted", [b"12345\n"], 6, [Line("12345")]),
    ("a longer line is reported once, then the reader goes on", [b"123456", b"789\nnext\n"], 6, [LineTooLong(6), Line("next")]),
    ("a too-long line arriving with its LF is reported once", [b"1234567\nok\n"], 6, [LineTooLong(6), Line("ok")]),
]


def _feed_all(reader, chunks):
    frames = []
    for chunk in chunks:
        frames += reader.feed(chunk)
    return frames


def pure(context) -> CheckResult:
    """Feed chunks by hand and compare the frames."""
    module = context.load()
    checklist = Checklist("the line reader, fed by hand")
    for name, chunks, max_line, expected in CASES:
        with checklist.requirement(name) as requirement:
            requirement.transcript += [f"feed({chunk!r})" for chunk in chunks]
            requirement.expect_equal(_feed_all(module.LineReader(max_line), chunks), expected)
    return checklist.result()


def over_sockets(context) -> CheckResult:
    """Real TCP on 127.0.0.1: bytes written in tiny pieces, read with small, random recv() sizes."""
    module = context.load()
    rng = random.Random(context.seed)
    checklist = Checklist("the line reader over a real socket")
    lines = ["hello", "Привет, мир", "ж" * 700, "", "tab\tand emoji 🎉", "last"]
    stream = "".join(line + "\n" for line in lines).encode()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname(), timeout=5) as writer:
            writer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            receiver, _ = listener.accept()
            with receiver:
                receiver.settimeout(5)
                with checklist.requirement("lines dribbled 1 to 3 bytes at a time arrive whole") as requirement:
                    position = 0
                    while position < len(stream):  # the whole stream fits in the socket buffers
                        size = rng.randint(1, 3)
                        writer.sendall(stream[position : position + size])
                        position += size
                    reader = module.LineReader()
                    frames = []
                    while len(frames) < len(lines):
                        data = receiver.recv(rng.randint(1, 17))
                        requirement.expect(bool(data), f"{len(lines)} lines", f"the stream ended after {frames}")
                        frames += reader.feed(data)
                    requirement.expect_equal(frames, [Line(line) for line in lines])
    return checklist.result()
