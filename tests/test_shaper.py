"""The simulator's timetable as pure logic: made-up times in, due pieces out, no sockets."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import chatlab.sim.shaper
from chatlab.sim.network import Impairment
from chatlab.sim.shaper import Piece, Shaper


def run_through(shaper: Shaper, writes: list[tuple[float, bytes]], step: float = 0.001) -> list[tuple[float, Piece]]:
    """Push each write at its time and collect (time popped, piece) until everything is out."""
    popped: list[tuple[float, Piece]] = []
    now = 0.0
    for at, data in writes:
        while (due := shaper.next_due()) is not None and due <= at:  # deliver what falls due before this write
            now = due
            popped += [(now, piece) for piece in shaper.pop_due(now)]
        now = at
        shaper.push(data, now)
    while (due := shaper.next_due()) is not None:
        now = max(now, due)
        popped += [(now, piece) for piece in shaper.pop_due(now)]
    assert shaper.is_empty()
    return popped


ranges = st.tuples(st.floats(0, 0.01), st.floats(0, 0.01)).map(sorted).map(tuple)
impairments = st.builds(
    Impairment,
    latency=st.floats(0, 0.2),
    jitter=st.floats(0, 0.1),
    jitter_distribution=st.sampled_from(["uniform", "normal"]),
    bandwidth=st.one_of(st.just(0.0), st.floats(1000, 1e6)),
    fragment=st.one_of(st.just((0, 0)), st.tuples(st.integers(1, 5), st.integers(5, 40))),
    fragment_gap=ranges,
    cut_before_lf=st.floats(0, 1),
    cut_in_char=st.floats(0, 1),
    coalesce=st.one_of(st.just(0.0), st.floats(0, 0.05)),
    stall_every=st.one_of(st.just(0.0), st.floats(0.05, 1.0)),
    stall_for=st.just((0.01, 0.1)),
)
writes = st.lists(st.tuples(st.floats(0, 0.05), st.binary(min_size=1, max_size=200) | st.text(min_size=1).map(str.encode)),
                  max_size=30)


@settings(max_examples=300, deadline=None)
@given(impairment=impairments, gaps_and_data=writes, seed=st.integers(0, 10**6))
def test_what_comes_out_is_what_went_in_never_early_never_reordered(impairment, gaps_and_data, seed):
    at, timed, arrivals = 0.0, [], []
    for gap, data in gaps_and_data:
        at += gap
        timed.append((at, data))
        arrivals += [at] * len(data)  # when each byte of the stream arrived
    popped = run_through(Shaper(impairment, seed, origin=0.0), timed)
    pieces = [piece for _, piece in popped]
    assert b"".join(piece.data for piece in pieces) == b"".join(data for _, data in timed)
    assert all(popped_at >= piece.due for popped_at, piece in popped), "a piece came out before it was due"
    dues = [piece.due for piece in pieces]
    assert dues == sorted(dues), "the timeline went backwards"
    offset = 0
    for piece in pieces:
        if piece.data:
            last_arrival = arrivals[offset + len(piece.data) - 1]
            assert piece.due >= last_arrival + impairment.latency - 1e-9, "a byte beat the configured latency"
        offset += len(piece.data)


def pieces_of(impairment: Impairment, data: bytes, seed: int = 1) -> list[bytes]:
    return [piece.data for _, piece in run_through(Shaper(impairment, seed, origin=0.0), [(0.0, data)])]


def test_cuts_right_before_every_line_end():
    data = b"alice: hi\nbob: hello there\n* carol joined\n"
    pieces = pieces_of(Impairment(cut_before_lf=1.0), data)
    assert b"".join(pieces) == data
    assert all(b"\n" not in piece[1:] for piece in pieces), "an LF arrived together with the line it ends"
    assert sum(piece.startswith(b"\n") for piece in pieces) == data.count(b"\n")


def test_cuts_inside_every_multibyte_character():
    data = "жук ☃ 𝄞".encode()
    pieces = pieces_of(Impairment(cut_in_char=1.0), data)
    assert b"".join(pieces) == data
    boundaries = set(itertools.accumulate(len(piece) for piece in pieces))
    for index, byte in enumerate(data):
        if byte >= 0xC0:  # a lead byte: the character must not arrive whole
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            assert boundaries & set(range(index + 1, index + length)), f"the character at {index} arrived whole"


def test_fragments_stay_within_the_size_range():
    pieces = pieces_of(Impairment(fragment=(2, 5)), bytes(range(256)) * 4)
    assert all(2 <= len(piece) <= 5 for piece in pieces[:-1]) and 1 <= len(pieces[-1]) <= 5


def test_coalescing_merges_writes_that_arrive_close_together():
    shaper = Shaper(Impairment(coalesce=0.05), seed=1, origin=0.0)
    popped = run_through(shaper, [(0.0, b"one\n"), (0.01, b"two\n"), (0.02, b"three\n"), (0.2, b"four\n")])
    assert [piece.data for _, piece in popped] == [b"one\ntwo\nthree\n", b"four\n"]


def test_the_same_seed_gives_the_same_timetable_and_another_seed_another():
    impairment = Impairment(latency=0.01, jitter=0.02, jitter_distribution="normal", fragment=(1, 9), cut_in_char=0.5,
                            stall_every=0.05, stall_for=(0.01, 0.03))
    writes = [(i * 0.003, f"line {i} ёлка\n".encode()) for i in range(40)]

    def timetable(seed):
        return [(piece.due, piece.data) for _, piece in run_through(Shaper(impairment, seed, origin=0.0), writes)]

    assert timetable("7/0/up") == timetable("7/0/up")
    assert timetable("7/0/up") != timetable("7/0/down")


def test_nothing_is_due_inside_a_stall():
    shaper = Shaper(Impairment(stall_every=0.05, stall_for=(0.02, 0.04)), seed=3, origin=0.0)
    popped = run_through(shaper, [(i * 0.002, b"x") for i in range(500)])
    stalls = shaper.windows_until(popped[-1][1].due + 1.0)
    assert stalls, "no stall in a second of traffic with a stall every 50 ms on average"
    for _, piece in popped:
        assert not any(window.start <= piece.due < window.end for window in stalls)


def test_a_slow_consumer_pause_stops_reading_until_it_ends():
    shaper = Shaper(Impairment(slow_every=0.1, slow_for=(0.05, 0.05)), seed=4, origin=0.0)
    pause = shaper.windows_until(10.0)[0]  # a pause every 100 ms on average: 10 s holds many
    assert pause.kind == "slow-consumer"
    assert shaper.reading_paused_until(pause.start) == pause.end
    assert shaper.reading_paused_until(pause.end) is None


def test_a_reset_comes_after_exactly_the_planned_bytes_and_drops_the_rest():
    shaper = Shaper(Impairment(fault="reset", fault_after=(10, 10)), seed=1, origin=0.0)
    popped = run_through(shaper, [(0.0, b"0123456"), (0.1, b"789abcdef"), (0.2, b"never")])
    assert b"".join(piece.data for _, piece in popped) == b"0123456789"
    assert popped[-1][1].action == "reset" and [piece.action for _, piece in popped[:-1]] == [""] * (len(popped) - 1)


def test_a_mid_line_close_never_ends_on_a_line_end():
    data = b"first line\nsecond line\n"
    for after in range(1, len(data) + 1):
        shaper = Shaper(Impairment(fault="mid-line", fault_after=(after, after)), seed=1, origin=0.0)
        popped = run_through(shaper, [(0.0, data)])
        delivered = b"".join(piece.data for _, piece in popped)
        assert data.startswith(delivered) and not delivered.endswith(b"\n"), after
        assert popped[-1][1].action == "mid-line"


def test_a_fault_with_probability_zero_never_happens():
    shaper = Shaper(Impairment(fault="reset", fault_probability=0.0, fault_after=(1, 1)), seed=1, origin=0.0)
    assert shaper.fault_at is None


def test_the_shaper_does_no_io():
    tree = ast.parse(Path(chatlab.sim.shaper.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"socket", "threading", "time", "select"}
