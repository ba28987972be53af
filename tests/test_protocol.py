"""Tests for chatlab.protocol: every rule of the wire protocol v1 that needs no socket.

The expected values are written from the protocol's text (PROTOCOL.md), not copied
from the code: a test that repeats the code would pass whatever the code does. The
module does no I/O, so there is nothing to mock: bytes and strings go in, frames and
decisions come out, and a fake clock drives the flood limit.

In the room tests a user's "member" (whatever the server uses to reach that user) is
just a string such as ``"conn:bob"``, so that a delivery reads ``("conn:bob", "* alice joined")``.
"""

from __future__ import annotations

import ast
import unicodedata
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatlab import protocol
from chatlab.protocol import (
    MAX_LINE,
    BadWhisper,
    ErrorLine,
    Help,
    InvalidUtf8,
    Line,
    LineBuffer,
    LineTooLong,
    ListUsers,
    Message,
    Notice,
    Quit,
    Roster,
    Say,
    TokenBucket,
    UnknownCommand,
    Unparsed,
    Whisper,
    admit,
    depart,
    is_valid_name,
    normalize_name,
    parse_command,
    parse_server_line,
    route,
    sanitize,
)

# Property tests run the same examples every time, so a failure can be reproduced.
REPRODUCIBLE = settings(derandomize=True, deadline=None, max_examples=300)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def conn(name: str) -> str:
    """The member standing for ``name``'s connection."""
    return f"conn:{name}"


def room(*names: str) -> Roster[str]:
    """A roster with these users online, joined in this order."""
    roster: Roster[str] = Roster()
    for name in names:
        assert roster.add(name, conn(name))
    return roster


def feed_chunks(chunks: list[bytes], max_line: int | None = MAX_LINE) -> list:
    """Feed the chunks to one LineBuffer in turn; return every frame, in order."""
    buffer = LineBuffer(max_line=max_line)
    frames = []
    for chunk in chunks:
        frames += buffer.feed(chunk)
    return frames


def bytewise(data: bytes) -> list[bytes]:
    """The stream cut into one-byte chunks, the worst a TCP peer can do."""
    return [data[i : i + 1] for i in range(len(data))]


class FakeClock:
    """A clock that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------------------
# Defaults and the exact texts of server lines
# ---------------------------------------------------------------------------


def test_defaults_are_the_documented_ones():
    assert protocol.DEFAULT_HOST == "127.0.0.1"
    assert protocol.DEFAULT_PORT == 1234
    assert protocol.MAX_LINE == 4096
    assert protocol.MAX_CLIENTS == 1000
    assert protocol.NAME_TIMEOUT == 30
    assert protocol.OUTBOX_LIMIT == 1024 * 1024
    assert protocol.SHUTDOWN_FLUSH == 5


@pytest.mark.parametrize(
    ("actual", "expected"),
    [
        (protocol.WELCOME, "* Welcome to chatlab! Enter your name:"),
        (protocol.SERVER_FULL, "! server full"),
        (protocol.INVALID_NAME, "! invalid name: use 1-24 letters, digits, _ or -"),
        (protocol.NAME_TIMED_OUT, "! timed out waiting for a name"),
        (protocol.INVALID_UTF8, "! invalid UTF-8, line dropped"),
        (protocol.USAGE_PRIVATE, "! usage: @name message"),
        (protocol.TOO_SLOW, "! too slow, disconnecting"),
        (protocol.SLOW_DOWN, "! slow down, message dropped"),
        (protocol.SHUTTING_DOWN, "* server shutting down"),
        (protocol.HELP, "* Commands: /users, /quit, /help. @name message sends privately; // starts a line with /."),
        (protocol.line_too_long(4096), "! line too long (max 4096 bytes)"),
        (protocol.name_taken("ALICE"), "! name taken: ALICE"),
        (protocol.greeting("alice", ["bob", "carol"]), "* Hi alice! Online: bob, carol"),
        (protocol.greeting("alice", []), "* Hi alice! You are the first one here."),
        (protocol.joined("alice"), "* alice joined"),
        (protocol.left("alice"), "* alice left"),
        (protocol.bye("alice"), "* Bye, alice!"),
        (protocol.online(["alice", "bob", "carol"]), "* Online (3): alice, bob, carol"),
        (protocol.no_such_user("bob"), "! no such user: bob"),
        (protocol.unknown_command("/foo"), "! unknown command: /foo (try /help)"),
        (protocol.public_message("alice", "hi"), "alice: hi"),
        (protocol.private_message("alice", "hi"), "alice (private): hi"),
    ],
)
def test_server_text_is_exactly_the_documented_text(actual, expected):
    assert actual == expected


def test_encode_line_is_utf8_with_one_lf():
    assert protocol.encode_line("* Hi Дима! You are the first one here.") == (
        "* Hi Дима! You are the first one here.\n".encode()
    )


# ---------------------------------------------------------------------------
# Framing: lines end with LF; CR only dropped right before the LF
# ---------------------------------------------------------------------------


def test_each_lf_ends_one_line():
    assert LineBuffer().feed(b"hello\nworld\n") == [Line("hello"), Line("world")]


def test_an_empty_line_is_still_a_line():
    # Framing keeps it; the server ignores it later, once it is sanitized to "".
    assert LineBuffer().feed(b"\n") == [Line("")]


def test_cr_right_before_lf_is_dropped():
    assert LineBuffer().feed(b"hello\r\n") == [Line("hello")]


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"a\rb\n", "a\rb"),  # in the middle
        (b"\rstart\n", "\rstart"),  # at the start
        (b"two\r\r\n", "two\r"),  # only the one right before the LF goes
        (b"\r\r\n", "\r"),
    ],
)
def test_cr_anywhere_else_is_kept(data, text):
    assert LineBuffer().feed(data) == [Line(text)]


def test_a_cr_alone_does_not_end_a_line():
    buffer = LineBuffer()
    assert buffer.feed(b"one\rtwo") == []
    assert buffer.feed(b"\n") == [Line("one\rtwo")]


def test_crlf_split_between_chunks_still_drops_the_cr():
    buffer = LineBuffer()
    assert buffer.feed(b"hello\r") == []
    assert buffer.feed(b"\n") == [Line("hello")]


# ---------------------------------------------------------------------------
# Framing: chunks and lines do not line up
# ---------------------------------------------------------------------------


def test_a_partial_line_waits_for_its_lf():
    buffer = LineBuffer()
    assert buffer.feed(b"hel") == []
    assert buffer.feed(b"lo") == []
    assert buffer.feed(b" there\n") == [Line("hello there")]


def test_several_lines_in_one_chunk_come_out_in_order():
    buffer = LineBuffer()
    assert buffer.feed(b"one\ntwo\r\nthree\nfou") == [Line("one"), Line("two"), Line("three")]
    assert buffer.feed(b"r\n") == [Line("four")]


def test_a_utf8_character_split_between_chunks_is_decoded_whole():
    data = "Привет, мир 😀\n".encode()
    # Cut inside the two-byte "П" and inside the four-byte emoji.
    assert feed_chunks([data[:1], data[1:-3], data[-3:]]) == [Line("Привет, мир 😀")]


def test_bytes_after_the_last_lf_are_never_returned():
    buffer = LineBuffer()
    assert buffer.feed(b"done\nunfinished") == [Line("done")]
    assert buffer.feed(b"") == []  # nothing more arrives: the tail is simply never a line


# ---------------------------------------------------------------------------
# Framing: the line limit, 4096 bytes counted with the LF
# ---------------------------------------------------------------------------


def test_a_line_of_exactly_4096_bytes_with_its_lf_passes():
    assert LineBuffer().feed(b"x" * 4095 + b"\n") == [Line("x" * 4095)]


def test_a_line_of_4097_bytes_with_its_lf_is_too_long():
    assert LineBuffer().feed(b"x" * 4096 + b"\n") == [LineTooLong(4096)]


def test_the_cr_counts_towards_the_limit():
    # The limit is on bytes sent, and the CR was sent.
    assert LineBuffer().feed(b"x" * 4094 + b"\r\n") == [Line("x" * 4094)]
    assert LineBuffer().feed(b"x" * 4095 + b"\r\n") == [LineTooLong(4096)]


def test_the_limit_counts_bytes_not_characters():
    assert LineBuffer().feed(("ж" * 2047 + "x\n").encode()) == [Line("ж" * 2047 + "x")]  # 4096 bytes
    assert LineBuffer().feed(("ж" * 2048 + "\n").encode()) == [LineTooLong(4096)]  # 4097 bytes


def test_the_default_limit_is_4096():
    assert LineBuffer().max_line == 4096


def test_line_too_long_in_one_chunk_gives_one_frame_and_the_next_line_is_intact():
    data = b"x" * 10_000 + b"\nnext\n"
    assert LineBuffer().feed(data) == [LineTooLong(4096), Line("next")]


def test_line_too_long_over_many_chunks_gives_one_frame_and_the_next_line_is_intact():
    data = b"x" * 10_000 + b"\nnext\n"
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    assert feed_chunks(chunks) == [LineTooLong(4096), Line("next")]


def test_line_too_long_byte_by_byte_gives_one_frame_and_the_next_line_is_intact():
    data = b"y" * 5000 + b"\r\nnext\r\n"
    assert feed_chunks(bytewise(data)) == [LineTooLong(4096), Line("next")]


def test_two_long_lines_in_a_row_give_two_frames():
    data = b"a" * 5000 + b"\n" + b"b" * 5000 + b"\nok\n"
    assert LineBuffer().feed(data) == [LineTooLong(4096), LineTooLong(4096), Line("ok")]


def test_an_over_long_line_of_invalid_utf8_gets_only_one_answer():
    assert LineBuffer().feed(b"\xff" * 5000 + b"\nok\n") == [LineTooLong(4096), Line("ok")]


def test_the_rest_of_an_over_long_line_is_discarded_not_held():
    buffer = LineBuffer()
    for _ in range(100):
        buffer.feed(b"z" * 10_000)  # a megabyte with no LF
    assert buffer.pending <= 4096


def test_a_custom_max_line():
    buffer = LineBuffer(max_line=8)
    assert buffer.feed(b"1234567\n") == [Line("1234567")]  # 8 bytes with the LF
    assert buffer.feed(b"12345678\n") == [LineTooLong(8)]  # 9 bytes
    assert buffer.feed(b"after\n") == [Line("after")]
    assert protocol.line_too_long(8) == "! line too long (max 8 bytes)"


def test_max_line_none_means_no_limit():
    long_line = b"x" * 1_000_000
    assert LineBuffer(max_line=None).feed(long_line + b"\n") == [Line(long_line.decode())]


# ---------------------------------------------------------------------------
# Framing: invalid UTF-8
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        b"\xff",  # never valid in UTF-8
        b"\x80abc",  # a continuation byte with nothing before it
        b"\xd0",  # the first byte of a Cyrillic letter, then the line ends
        b"\xc0\xaf",  # an over-long encoding of "/"
        b"\xed\xa0\x80",  # a UTF-16 surrogate
        b"caf\xe9",  # Latin-1, not UTF-8
    ],
)
def test_invalid_utf8_gives_invalid_utf8_and_the_next_line_is_fine(bad):
    frames = LineBuffer().feed(bad + b"\nfine\n")
    assert len(frames) == 2
    assert isinstance(frames[0], InvalidUtf8)
    assert frames[1] == Line("fine")


def test_invalid_utf8_with_crlf_is_still_one_invalid_frame():
    frames = LineBuffer().feed(b"\xff\r\nfine\r\n")
    assert [type(frame) for frame in frames] == [InvalidUtf8, Line]
    assert frames[1] == Line("fine")


# ---------------------------------------------------------------------------
# Framing: any chunking gives the same frames (property test)
# ---------------------------------------------------------------------------

STREAM_PIECES = st.one_of(
    st.text(max_size=8).map(str.encode),  # any Unicode, multi-byte characters included
    st.sampled_from(
        [
            b"\n",
            b"\r\n",
            b"\r",
            "ж".encode(),  # 2 bytes
            "€".encode(),  # 3 bytes
            "😀".encode(),  # 4 bytes
            b"\xff",  # invalid UTF-8
            b"\xd0",  # half a Cyrillic letter
            b"\xed\xa0\x80",  # a surrogate, invalid in UTF-8
        ]
    ),
    st.integers(1, 40).map(lambda n: b"x" * n),  # runs that overflow a small limit
)
STREAMS = st.lists(STREAM_PIECES, max_size=30).map(b"".join)
LIMITS = st.sampled_from([2, 3, 8, 16, MAX_LINE, None])


@st.composite
def chunked_streams(draw):
    """A byte stream and the same stream cut at arbitrary places."""
    stream = draw(STREAMS)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    return stream, [stream[start:end] for start, end in pairwise(bounds)]


def frame_kinds(frames: list) -> list:
    """Frames with the bytes of invalid lines left out, to compare with the reference."""
    return ["invalid UTF-8" if isinstance(frame, InvalidUtf8) else frame for frame in frames]


def reference_frames(stream: bytes, max_line: int | None) -> list:
    """The frames the protocol's text asks for, computed the simplest way: split on LF."""
    *lines, _tail = stream.split(b"\n")  # the tail after the last LF is never a line
    frames = []
    for raw in lines:
        if max_line is not None and len(raw) + 1 > max_line:
            frames.append(LineTooLong(max_line))
            continue
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            frames.append(Line(raw.decode("utf-8")))
        except UnicodeDecodeError:
            frames.append("invalid UTF-8")
    return frames


@REPRODUCIBLE
@given(chunked=chunked_streams(), max_line=LIMITS)
@example(chunked=(b"ab\r\ncd\n", [b"ab\r", b"\ncd\n"]), max_line=MAX_LINE)  # CRLF split
@example(chunked=("жж\n".encode(), [b"\xd0", b"\xb6\xd0", b"\xb6\n"]), max_line=MAX_LINE)  # inside characters
@example(chunked=(b"123456789\nok\n", [b"1234", b"56789", b"\nok\n"]), max_line=8)  # over-long line
def test_any_chunking_gives_the_same_frames_as_one_chunk_and_as_single_bytes(chunked, max_line):
    stream, chunks = chunked
    all_at_once = feed_chunks([stream], max_line)
    assert feed_chunks(chunks, max_line) == all_at_once
    assert feed_chunks(bytewise(stream), max_line) == all_at_once


@REPRODUCIBLE
@given(stream=STREAMS, max_line=LIMITS)
def test_frames_are_the_lines_between_lfs(stream, max_line):
    expected = reference_frames(stream, max_line)
    actual = frame_kinds(LineBuffer(max_line=max_line).feed(stream))
    # The protocol does not say when an over-long line is answered. A tail that already
    # holds max_line bytes is too long whatever follows, so an answer for it now is allowed.
    tail = stream.rsplit(b"\n", 1)[-1]
    if max_line is not None and len(tail) + 1 > max_line:
        assert actual in (expected, [*expected, LineTooLong(max_line)])
    else:
        assert actual == expected


# ---------------------------------------------------------------------------
# Sanitizing
# ---------------------------------------------------------------------------

REMOVED_RANGES = {
    "C0 controls except TAB": [c for c in range(0x00, 0x20) if c != 0x09],
    "DEL": [0x7F],
    "C1 controls": list(range(0x80, 0xA0)),
    "line and paragraph separators": [0x2028, 0x2029],
    "bidi embeddings and overrides": list(range(0x202A, 0x202F)),
    "bidi isolates": list(range(0x2066, 0x206A)),
}
REMOVED = {chr(code) for codes in REMOVED_RANGES.values() for code in codes}


@pytest.mark.parametrize("codes", REMOVED_RANGES.values(), ids=REMOVED_RANGES.keys())
def test_each_character_of_a_removed_range_is_removed(codes):
    for code in codes:
        assert sanitize(f"a{chr(code)}b") == "ab", f"U+{code:04X}"


def test_tab_becomes_a_space():
    assert sanitize("a\tb") == "a b"
    assert sanitize("a\t\tb") == "a  b"


def test_an_escape_sequence_loses_only_its_escape_character():
    assert sanitize("\x1b[31mred") == "[31mred"


def test_a_cr_cannot_overwrite_the_line_to_pose_as_someone_else():
    assert sanitize("evil\r\x1b[2Kbob: hi") == "evil[2Kbob: hi"


@pytest.mark.parametrize(
    "code",
    [0x20, 0x7E, 0xA0, 0x2027, 0x202F, 0x2065, 0x206A, 0x200F],
    ids=lambda code: f"U+{code:04X}",
)
def test_characters_just_outside_the_removed_ranges_are_kept(code):
    # Inside the text, so that trimming whitespace (U+00A0, U+202F) does not interfere.
    assert sanitize(f"a{chr(code)}b") == f"a{chr(code)}b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  hi  ", "hi"),
        ("\t hi \t", "hi"),
        ("\u3000hi\u2003\xa0", "hi"),  # what str.strip() removes, beyond ASCII
        ("a  b", "a  b"),  # inner whitespace stays
    ],
)
def test_surrounding_whitespace_is_trimmed(text, expected):
    assert sanitize(text) == expected


def test_removal_happens_before_trimming():
    # An escape in front of a space must not leave a leading space behind.
    assert sanitize("\x1b hi \x07") == "hi"


def test_a_line_of_only_controls_and_spaces_becomes_empty():
    assert sanitize("\x1b\x07 \t\u202e\r") == ""


def test_ordinary_text_in_any_script_is_unchanged():
    assert sanitize("Привет, мир! 😀 ¿qué? 你好") == "Привет, мир! 😀 ¿qué? 你好"


SANITIZE_INPUT = st.text(st.one_of(st.characters(), st.sampled_from(sorted(REMOVED) + ["\t", " ", "\xa0", "\u3000"])))


@REPRODUCIBLE
@given(text=SANITIZE_INPUT)
def test_sanitize_output_is_safe_stripped_and_stable(text):
    result = sanitize(text)
    assert not set(result) & REMOVED
    assert "\t" not in result
    assert result == result.strip()
    assert sanitize(result) == result


@REPRODUCIBLE
@given(text=SANITIZE_INPUT)
def test_sanitize_changes_nothing_else(text):
    kept = "".join(" " if character == "\t" else character for character in text if character not in REMOVED)
    assert sanitize(text) == kept.strip()


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------


def test_a_name_is_trimmed():
    assert normalize_name("  alice \t") == "alice"


def test_a_name_is_nfc_normalized():
    decomposed = "cafe\u0301"  # "e" followed by a combining acute accent
    assert normalize_name(decomposed) == "caf\u00e9"
    assert unicodedata.is_normalized("NFC", normalize_name(decomposed))


@pytest.mark.parametrize(
    "name",
    ["a", "alice", "Alice_B-2", "_", "-", "123", "Дмитрий", "Анна-Мария", "李雷", "x" * 24, "ж" * 24],
)
def test_valid_names(name):
    assert is_valid_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "x" * 25, "ж" * 25, "al\tice", "a.b", "a,b", "a\x1bb", "smile😀", "a+b", "cafe\u0301"],
    ids=repr,
)
def test_invalid_names(name):
    # The last one is a combining accent: not alnum by itself, fine once NFC-normalized.
    assert not is_valid_name(name)


@pytest.mark.parametrize("character", list(" *!:@/()"))
def test_no_grammar_character_is_allowed_in_a_name(character):
    assert not is_valid_name(f"a{character}b")
    assert not is_valid_name(character)


@pytest.mark.parametrize(("first", "second"), [("Alice", "alice"), ("alice", "ALICE"), ("Straße", "STRASSE")])
def test_names_are_unique_under_casefold(first, second):
    roster = room(first)
    assert second in roster
    assert not roster.add(second, conn(second))
    assert roster.names() == [first]


def test_lookalike_names_in_different_scripts_are_different_names():
    roster = room("alice")
    assert roster.add("\u0430lice", conn("cyrillic")), "Cyrillic а is not Latin a"


def test_roster_find_matches_under_casefold_and_gives_the_online_spelling():
    roster = room("Bob")
    assert roster.find("BOB") == ("Bob", conn("Bob"))
    assert roster.find("zed") is None


def test_roster_remove_frees_the_name():
    roster = room("alice")
    assert roster.remove("Alice") == conn("alice")
    assert "alice" not in roster
    assert roster.add("ALICE", conn("ALICE"))


def test_roster_names_are_sorted_by_casefold():
    assert room("carol", "Bob", "alice", "Dave").names() == ["alice", "Bob", "carol", "Dave"]


# ---------------------------------------------------------------------------
# parse_command: what a joined client's line means
# ---------------------------------------------------------------------------


def test_plain_text_is_a_broadcast():
    assert parse_command("hello everyone") == Say("hello everyone")


def test_double_slash_broadcasts_the_text_without_its_first_slash():
    assert parse_command("//shrug") == Say("/shrug")
    assert parse_command("// hi") == Say("/ hi")
    assert parse_command("//") == Say("/")
    assert parse_command("///") == Say("//")


def test_at_name_text_is_a_whisper():
    assert parse_command("@bob see you later") == Whisper("bob", "see you later")


def test_whisper_text_is_trimmed():
    assert parse_command("@bob    see you  ") == Whisper("bob", "see you")


def test_whisper_target_is_everything_up_to_the_first_space():
    assert parse_command("@Bob:x hi") == Whisper("Bob:x", "hi")  # an unknown target, later


@pytest.mark.parametrize("line", ["@bob", "@bob   ", "@", "@ hi", "@  hi"])
def test_whisper_without_target_or_text_is_bad(line):
    assert parse_command(line) == BadWhisper()


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/users", ListUsers()),
        ("/help", Help()),
        ("/quit", Quit()),
        ("/USERS", ListUsers()),
        ("/Help", Help()),
        ("/QuIt", Quit()),
    ],
)
def test_command_words_are_case_insensitive(line, command):
    assert parse_command(line) == command


@pytest.mark.parametrize(
    ("line", "command"),
    [("/users all of them", ListUsers()), ("/help me", Help()), ("/quit now, bye", Quit())],
)
def test_arguments_after_a_command_are_ignored(line, command):
    assert parse_command(line) == command


@pytest.mark.parametrize(
    ("line", "word"),
    [("/foo", "/foo"), ("/Foo bar", "/Foo"), ("/usersx", "/usersx"), ("/", "/"), ("/ users", "/")],
)
def test_an_unknown_command_keeps_the_word_as_sent(line, word):
    assert parse_command(line) == UnknownCommand(word)


def test_a_sanitized_tab_separates_a_whisper_target_like_a_space():
    assert parse_command(sanitize("@bob\thello")) == Whisper("bob", "hello")


# ---------------------------------------------------------------------------
# admit: the name line of a new connection
# ---------------------------------------------------------------------------


def test_the_first_user_is_told_so():
    roster = room()
    outcome = admit(roster, Line("alice"), conn("alice"))
    assert outcome.deliveries == [(conn("alice"), "* Hi alice! You are the first one here.")]
    assert outcome.name == "alice"
    assert not outcome.close
    assert "alice" in roster


def test_the_greeting_lists_the_others_sorted_by_casefold():
    roster = room("carol", "Bob", "alice")
    outcome = admit(roster, Line("dave"), conn("dave"))
    to_dave = [line for member, line in outcome.deliveries if member == conn("dave")]
    assert to_dave == ["* Hi dave! Online: alice, Bob, carol"]


def test_the_greeting_is_the_first_line_the_newcomer_gets():
    outcome = admit(room("bob"), Line("alice"), conn("alice"))
    assert outcome.deliveries[0] == (conn("alice"), "* Hi alice! Online: bob")


def test_everyone_else_is_told_of_the_join_once_and_the_newcomer_is_not():
    roster = room("bob", "carol")
    outcome = admit(roster, Line("alice"), conn("alice"))
    assert Counter(outcome.deliveries) == Counter(
        {
            (conn("alice"), "* Hi alice! Online: bob, carol"): 1,
            (conn("bob"), "* alice joined"): 1,
            (conn("carol"), "* alice joined"): 1,
        }
    )


def test_the_name_line_is_trimmed_and_normalized():
    outcome = admit(room("bob"), Line("  cafe\u0301 \t"), conn("café"))
    assert outcome.name == "caf\u00e9"
    assert (conn("bob"), "* caf\u00e9 joined") in outcome.deliveries


def test_the_length_limit_counts_characters_after_nfc():
    decomposed = "e\u0301" * 24  # 48 code points, 24 characters once composed
    outcome = admit(room(), Line(decomposed), conn("accents"))
    assert outcome.name == "\u00e9" * 24


@pytest.mark.parametrize(("online", "sent"), [("alice", "ALICE"), ("alice", "Alice"), ("Straße", "STRASSE")])
def test_a_taken_name_is_refused_with_the_name_as_sent(online, sent):
    roster = room(online, "bob")
    outcome = admit(roster, Line(sent), conn("newcomer"))
    assert outcome.deliveries == [(conn("newcomer"), f"! name taken: {sent}")]
    assert outcome.close
    assert outcome.name is None
    assert roster.names() == protocol.sort_names([online, "bob"])
    assert roster.find(online) == (online, conn(online))


@pytest.mark.parametrize(
    "frame",
    [
        Line(""),
        Line("   "),
        Line("x" * 25),
        Line("alice smith"),
        Line("bob:"),
        Line("*"),
        Line("@bob"),
        Line("a\x1bb"),
        LineTooLong(4096),
        InvalidUtf8(b"\xff"),
    ],
    ids=repr,
)
def test_an_invalid_name_is_refused_and_nobody_else_hears_of_it(frame):
    roster = room("bob")
    outcome = admit(roster, frame, conn("newcomer"))
    assert outcome.deliveries == [(conn("newcomer"), "! invalid name: use 1-24 letters, digits, _ or -")]
    assert outcome.close
    assert outcome.name is None
    assert roster.names() == ["bob"]


# ---------------------------------------------------------------------------
# route: who receives what when a joined user sends a line
# ---------------------------------------------------------------------------


def test_a_broadcast_reaches_everyone_but_the_sender_once():
    outcome = route(room("alice", "bob", "carol"), "alice", Say("hi all"))
    assert Counter(outcome.deliveries) == Counter(
        {(conn("bob"), "alice: hi all"): 1, (conn("carol"), "alice: hi all"): 1}
    )
    assert not outcome.close


def test_a_broadcast_with_nobody_else_online_reaches_nobody():
    assert route(room("alice"), "alice", Say("anyone?")).deliveries == []


def test_a_whisper_reaches_only_its_target():
    outcome = route(room("alice", "bob", "carol"), "alice", Whisper("bob", "psst"))
    assert outcome.deliveries == [(conn("bob"), "alice (private): psst")]


def test_a_whisper_target_matches_under_casefold():
    outcome = route(room("alice", "Bob", "Straße"), "alice", Whisper("BOB", "psst"))
    assert outcome.deliveries == [(conn("Bob"), "alice (private): psst")]
    outcome = route(room("alice", "Bob", "Straße"), "alice", Whisper("strasse", "hallo"))
    assert outcome.deliveries == [(conn("Straße"), "alice (private): hallo")]


@pytest.mark.parametrize("target", ["alice", "Alice"])
def test_a_whisper_to_oneself_is_delivered(target):
    outcome = route(room("alice", "bob"), "alice", Whisper(target, "note to self"))
    assert outcome.deliveries == [(conn("alice"), "alice (private): note to self")]


def test_a_whisper_to_nobody_names_the_target_as_typed():
    outcome = route(room("alice", "bob"), "alice", Whisper("Zed", "hello?"))
    assert outcome.deliveries == [(conn("alice"), "! no such user: Zed")]
    assert not outcome.close


def test_a_bad_whisper_gets_the_usage_line():
    outcome = route(room("alice", "bob"), "alice", BadWhisper())
    assert outcome.deliveries == [(conn("alice"), "! usage: @name message")]
    assert not outcome.close


def test_users_lists_everyone_including_the_asker_sorted_by_casefold():
    outcome = route(room("carol", "Bob", "alice"), "carol", ListUsers())
    assert outcome.deliveries == [(conn("carol"), "* Online (3): alice, Bob, carol")]


def test_help_is_exactly_one_line():
    outcome = route(room("alice", "bob"), "alice", Help())
    assert outcome.deliveries == [
        (conn("alice"), "* Commands: /users, /quit, /help. @name message sends privately; // starts a line with /.")
    ]


def test_quit_says_bye_then_closes():
    outcome = route(room("alice", "bob"), "alice", Quit())
    assert outcome.deliveries == [(conn("alice"), "* Bye, alice!")]
    assert outcome.close


def test_an_unknown_command_is_answered_with_the_word_as_sent():
    outcome = route(room("alice", "bob"), "alice", UnknownCommand("/Foo"))
    assert outcome.deliveries == [(conn("alice"), "! unknown command: /Foo (try /help)")]
    assert not outcome.close


# ---------------------------------------------------------------------------
# depart: however a user leaves
# ---------------------------------------------------------------------------


def test_everyone_else_is_told_of_the_leave_exactly_once():
    roster = room("alice", "bob", "carol")
    outcome = depart(roster, "alice")
    assert Counter(outcome.deliveries) == Counter(
        {(conn("bob"), "* alice left"): 1, (conn("carol"), "* alice left"): 1}
    )


def test_the_name_is_free_before_the_leave_notice_is_sent():
    roster = room("alice", "bob")
    depart(roster, "alice")  # the server sends the notice after this returns
    assert "alice" not in roster
    assert admit(roster, Line("Alice"), conn("Alice")).name == "Alice"


def test_a_second_departure_of_the_same_user_announces_nothing():
    roster = room("alice", "bob")
    depart(roster, "alice")  # say, /quit
    assert depart(roster, "alice").deliveries == []  # then EOF on the same connection


def test_the_departure_of_an_unknown_name_does_nothing():
    roster = room("alice", "bob")
    outcome = depart(roster, "zed")
    assert outcome.deliveries == []
    assert not outcome.close
    assert roster.names() == ["alice", "bob"]


# ---------------------------------------------------------------------------
# parse_server_line: what clients and bots read
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("* Welcome to chatlab! Enter your name:", Notice("Welcome to chatlab! Enter your name:")),
        ("* alice joined", Notice("alice joined")),
        ("* alice left", Notice("alice left")),
        ("* Online (2): alice, bob", Notice("Online (2): alice, bob")),
        ("! server full", ErrorLine("server full")),
        ("! no such user: bob", ErrorLine("no such user: bob")),
        ("alice: hello", Message("alice", "hello")),
        ("alice: a: b", Message("alice", "a: b")),
        ("alice: * not a notice", Message("alice", "* not a notice")),
        ("alice: (private): public after all", Message("alice", "(private): public after all")),
        ("Дима: привет", Message("Дима", "привет")),
        ("alice (private): psst", Message("alice", "psst", private=True)),
        ("alice (private): x: y", Message("alice", "x: y", private=True)),
    ],
)
def test_each_server_line_form(line, parsed):
    assert parse_server_line(line) == parsed


@pytest.mark.parametrize(
    ("line", "joined", "left"),
    [
        ("* alice joined", "alice", None),
        ("* Анна-Мария left", None, "Анна-Мария"),
        ("* Hi alice! You are the first one here.", None, None),
        ("* Hi bob! Online: alice", None, None),
        ("* Bye, alice!", None, None),
        ("* server shutting down", None, None),
        ("* two words joined", None, None),  # not a name
        ("* joined", None, None),
    ],
)
def test_join_and_leave_notices_give_their_subject(line, joined, left):
    notice = parse_server_line(line)
    assert isinstance(notice, Notice)
    assert notice.joined == joined
    assert notice.left == left


@pytest.mark.parametrize(
    "line",
    [
        "",
        "hello",
        "*no space",
        "!no space",
        "two words: hi",
        "bob (public): hi",
        "bob(private): hi",
        "(private): hi",
        ":",
    ],
)
def test_lines_that_fit_no_form_are_unparsed(line):
    assert parse_server_line(line) == Unparsed(line)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (protocol.WELCOME, Notice),
        (protocol.SHUTTING_DOWN, Notice),
        (protocol.HELP, Notice),
        (protocol.greeting("alice", ["bob"]), Notice),
        (protocol.greeting("alice", []), Notice),
        (protocol.joined("alice"), Notice),
        (protocol.left("alice"), Notice),
        (protocol.bye("alice"), Notice),
        (protocol.online(["alice", "bob"]), Notice),
        (protocol.SERVER_FULL, ErrorLine),
        (protocol.INVALID_NAME, ErrorLine),
        (protocol.NAME_TIMED_OUT, ErrorLine),
        (protocol.INVALID_UTF8, ErrorLine),
        (protocol.USAGE_PRIVATE, ErrorLine),
        (protocol.TOO_SLOW, ErrorLine),
        (protocol.SLOW_DOWN, ErrorLine),
        (protocol.line_too_long(4096), ErrorLine),
        (protocol.name_taken("alice"), ErrorLine),
        (protocol.no_such_user("bob"), ErrorLine),
        (protocol.unknown_command("/foo"), ErrorLine),
        (protocol.public_message("alice", "hi"), Message),
        (protocol.private_message("alice", "hi"), Message),
    ],
)
def test_every_line_the_server_sends_parses_as_its_kind(line, kind):
    assert type(parse_server_line(line)) is kind


# ---------------------------------------------------------------------------
# TokenBucket: the flood limit, with a fake clock
# ---------------------------------------------------------------------------


def test_a_full_bucket_allows_a_burst_then_drops():
    bucket = TokenBucket(rate=2, burst=3, clock=FakeClock())
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]


def test_tokens_refill_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    for _ in range(3):
        bucket.allow()
    clock.advance(0.25)  # half a token
    assert not bucket.allow()
    clock.advance(0.25)  # a whole one
    assert bucket.allow()
    assert not bucket.allow()
    clock.advance(1.0)  # two more
    assert [bucket.allow() for _ in range(3)] == [True, True, False]


def test_tokens_do_not_accumulate_beyond_the_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    clock.advance(3600)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]


def test_a_dropped_line_takes_no_token():
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.allow()
    assert not any(bucket.allow() for _ in range(10))
    clock.advance(1.0)
    assert bucket.allow()


# ---------------------------------------------------------------------------
# The module is pure: no sockets, no threads
# ---------------------------------------------------------------------------


def imported_modules(source: str) -> list[tuple[str, int]]:
    """(module, relative level) for every import statement anywhere in ``source``."""
    modules = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules.append((node.module or "", node.level))
    return modules


def test_protocol_module_imports_neither_socket_nor_threading():
    source = Path(protocol.__file__).read_text(encoding="utf-8")
    top_level = {module.split(".")[0] for module, _ in imported_modules(source)}
    assert not top_level & {"socket", "_socket", "threading", "_thread"}
    assert "__import__" not in source and "import_module" not in source
    # It imports nothing from the rest of chatlab either, so no other module of the
    # package can bring sockets or threads in behind its back.
    assert all(level == 0 and module.split(".")[0] != "chatlab" for module, level in imported_modules(source))
