"""The simulator's timetable: when each byte of one direction is delivered, as pure logic.

A :class:`Shaper` is to the proxy what :mod:`chatlab.protocol` is to the server: no
sockets, no threads, no clock of its own. Bytes go in with the time they arrived
(:meth:`Shaper.push`), and pieces come out with the time they are due
(:meth:`Shaper.pop_due`). The proxy (:mod:`chatlab.sim.proxy`) only glues sockets to
it, and tests can drive it with made-up times::

    >>> from chatlab.sim.network import Impairment
    >>> shaper = Shaper(Impairment(latency=0.1), seed="demo", origin=0.0)
    >>> shaper.push(b"hello\\n", now=1.0)
    >>> shaper.next_due()
    1.1
    >>> [piece.data for piece in shaper.pop_due(now=1.1)]
    [b'hello\\n']

The pipeline
============

Each write that arrives goes through four steps, in this order::

    write ─▶ coalesce ─▶ cut ─▶ the link (bandwidth, latency, jitter, gaps) ─▶ stalls ─▶ due pieces

1. **coalesce**: with ``coalesce`` set, writes are gathered for that long after the
   first one, then go on as one chunk (several lines in one ``recv``);
2. **cut**: the chunk is cut into fragments (sizes from ``fragment``) and at
   chat-aware places: right before an LF, inside a multi-byte UTF-8 character;
3. **the link**: with a ``bandwidth``, each piece occupies the link for
   ``len / bandwidth`` seconds; then it travels ``latency`` plus a jitter drawn once
   per chunk, and two fragments of one chunk are at least ``fragment_gap`` apart;
4. **stalls**: a piece due inside a stall is held until the stall ends.

The timeline is monotonic: a piece is never due before the piece in front of it, so
bytes are never reordered, whatever the jitter draws. That is the promise TCP makes
and the one a chat server relies on; what TCP does *not* promise (that one write
arrives as one read) is exactly what the cuts and the coalescing take away.

Randomness
==========

One ``seed`` (a string such as ``"7/conn-3/up"``) seeds four separate generators:
the cuts and jitter, the stalls, the slow-consumer pauses, and the fault. Keeping
them apart means that, say, the stall times do not change when the traffic does.
The same seed, the same writes and the same arrival times give the same pieces at
the same due times.

A fault (``reset``, ``half-close``, ``mid-line``) is decided when the shaper is made:
whether it happens, and after how many bytes. The bytes up to that point are
delivered, then a piece with ``action`` set tells the proxy what to do; anything
pushed afterwards is dropped, as a dead link would drop it.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from dataclasses import dataclass

from chatlab.sim.network import Impairment

LF = 0x0A
SMOOTHNESS = 0.01  # with a bandwidth, pieces are at most this many seconds of the link's capacity


@dataclass(frozen=True)
class Piece:
    """Bytes due at one moment; with ``action`` set, a fault to carry out after them."""

    due: float  #: when the piece may be handed to the receiving side (the proxy's clock, seconds)
    data: bytes
    action: str = ""  #: "", "reset", "half-close" or "mid-line"


@dataclass(frozen=True)
class Window:
    """A span of time during which a direction misbehaves: a stall or a slow-consumer pause."""

    start: float
    end: float
    kind: str  #: "stall" or "slow-consumer"


class Episodes:
    """Random windows on a timeline: quiet times exponential with mean ``every``, lengths uniform.

    Windows are drawn lazily, as far as the questions asked reach, so an endless
    timeline costs nothing. ``every == 0`` means never.
    """

    def __init__(self, rng: random.Random, every: float, lengths: tuple[float, float], origin: float, kind: str) -> None:
        self._rng = rng
        self._every = every
        self._lengths = lengths
        self._kind = kind
        self.windows: list[Window] = []  #: every window drawn so far, in time order
        self._starts: list[float] = []  # their start times, for bisect
        self._next_start = origin + rng.expovariate(1 / every) if every > 0 else math.inf

    def _draw_until(self, moment: float) -> None:
        while self._next_start <= moment:
            window = Window(self._next_start, self._next_start + self._rng.uniform(*self._lengths), self._kind)
            self.windows.append(window)
            self._starts.append(window.start)
            self._next_start = window.end + self._rng.expovariate(1 / self._every)

    def covering(self, moment: float) -> Window | None:
        """The window ``moment`` falls in, or None."""
        self._draw_until(moment)
        index = bisect.bisect_right(self._starts, moment) - 1  # the last window that began by then
        if index >= 0 and moment < self.windows[index].end:
            return self.windows[index]
        return None

    def until(self, moment: float) -> list[Window]:
        """Every window that began before ``moment``."""
        self._draw_until(moment)
        return [window for window in self.windows if window.start < moment]


def cut_points(data: bytes, impairment: Impairment, rng: random.Random) -> list[int]:
    """Where to cut ``data``: sorted offsets strictly inside it (fragments and chat-aware cuts)."""
    cuts: set[int] = set()
    low, high = impairment.fragment
    if high:
        position = rng.randint(low, high)
        while position < len(data):
            cuts.add(position)
            position += rng.randint(low, high)
    if impairment.cut_before_lf:
        for index, byte in enumerate(data):
            if byte == LF and index > 0 and rng.random() < impairment.cut_before_lf:
                cuts.add(index)
    if impairment.cut_in_char:
        for index, byte in enumerate(data):
            length = 2 if 0xC0 <= byte < 0xE0 else 3 if 0xE0 <= byte < 0xF0 else 4 if 0xF0 <= byte < 0xF8 else 1
            if length > 1 and rng.random() < impairment.cut_in_char:
                cut = index + rng.randint(1, length - 1)
                if cut < len(data):
                    cuts.add(cut)
    return sorted(cut for cut in cuts if 0 < cut < len(data))


class Shaper:
    """The timetable of one direction of one connection (see the module docstring).

    ``origin`` is when the connection began, on the same clock as the ``now``
    arguments; stalls and pauses are drawn from there.
    """

    def __init__(self, impairment: Impairment, seed: str | int, origin: float) -> None:
        self.impairment = impairment
        self._rng = random.Random(f"{seed}/link")
        self.stalls = Episodes(random.Random(f"{seed}/stall"), impairment.stall_every, impairment.stall_for, origin, "stall")
        self.pauses = Episodes(
            random.Random(f"{seed}/slow"), impairment.slow_every, impairment.slow_for, origin, "slow-consumer"
        )
        fault_rng = random.Random(f"{seed}/fault")
        self.fault_at: int | None = None  #: bytes after which the fault strikes, or None
        if impairment.fault and fault_rng.random() < impairment.fault_probability:
            self.fault_at = fault_rng.randint(*impairment.fault_after)
        self.passed = 0  #: bytes let onto the link so far
        self.queued_bytes = 0  #: bytes waiting, in the batch or in the queue
        self.faulted = False  #: the fault has been planned; later pushes are dropped
        self._queue: deque[Piece] = deque()
        self._batch = bytearray()
        self._batch_due = math.inf
        self._last_due = origin
        self._link_free = origin

    # -- what the proxy asks --------------------------------------------------------------

    def push(self, data: bytes, now: float) -> None:
        """Bytes arrived from the sending side at ``now``."""
        if self.faulted or not data:
            return
        self._close_batch(now)
        self.queued_bytes += len(data)
        if self.impairment.coalesce:
            if not self._batch:
                self._batch_due = now + self.impairment.coalesce
            self._batch += data
        else:
            self._emit(bytes(data), now)

    def next_due(self) -> float | None:
        """When the next piece (or a batch being gathered) is due; None when nothing waits."""
        due = min(self._queue[0].due if self._queue else math.inf, self._batch_due)
        return None if due == math.inf else due

    def pop_due(self, now: float) -> list[Piece]:
        """The pieces due at ``now``, in order; they leave the shaper."""
        self._close_batch(now)
        pieces = []
        while self._queue and self._queue[0].due <= now:
            piece = self._queue.popleft()
            self.queued_bytes -= len(piece.data)
            pieces.append(piece)
        return pieces

    def is_empty(self) -> bool:
        """True when nothing waits to be delivered."""
        return not self._queue and not self._batch

    def reading_paused_until(self, now: float) -> float | None:
        """The end of the slow-consumer pause ``now`` falls in, or None when reading may go on."""
        window = self.pauses.covering(now)
        return None if window is None else window.end

    def windows_until(self, moment: float) -> list[Window]:
        """The stalls and pauses that began before ``moment``, in time order."""
        return sorted(self.stalls.until(moment) + self.pauses.until(moment), key=lambda window: window.start)

    # -- the pipeline ------------------------------------------------------------------------

    def _close_batch(self, now: float) -> None:
        """Send the gathered batch on once its time has come."""
        if self._batch and self._batch_due <= now:
            data, at = bytes(self._batch), self._batch_due
            self._batch.clear()
            self._batch_due = math.inf
            self._emit(data, at)

    def _emit(self, data: bytes, at: float) -> None:
        """Plan one chunk that leaves the sender at ``at``: truncate at a fault, cut, time each piece."""
        action = ""
        if self.fault_at is not None and self.passed + len(data) >= self.fault_at:
            keep = self._fault_cut(data, self.fault_at - self.passed)
            self.queued_bytes -= len(data) - keep
            data, action, self.faulted = data[:keep], self.impairment.fault, True
        self.passed += len(data)
        impairment = self.impairment
        delay = impairment.latency + self._jitter()
        cuts = cut_points(data, impairment, self._rng)
        leaves = at
        for number, (start, end) in enumerate(zip([0, *cuts], [*cuts, len(data)], strict=True)):
            if start == end:
                continue  # nothing left before a fault
            gap = self._rng.uniform(*impairment.fragment_gap) if number else 0.0
            leaves += gap
            for piece in self._through_bandwidth(data[start:end]):
                if impairment.bandwidth:
                    begins = max(leaves, self._link_free)
                    self._link_free = begins + len(piece) / impairment.bandwidth
                    arrives = self._link_free + delay
                else:
                    arrives = leaves + delay
                due = self._after_stalls(max(arrives, self._last_due + gap))
                gap = 0.0  # the gap is between fragments, not between the bandwidth's slices
                self._last_due = due
                self._queue.append(Piece(due, piece))
        if action:
            self._queue.append(Piece(self._last_due, b"", action))

    def _fault_cut(self, data: bytes, keep: int) -> int:
        """How many bytes of ``data`` go through before the fault; ``mid-line`` never ends on an LF."""
        if self.impairment.fault == "mid-line" and keep > 0 and data[keep - 1] == LF:
            return keep + 1 if keep < len(data) else keep - 1
        return keep

    def _jitter(self) -> float:
        jitter = self.impairment.jitter
        if not jitter:
            return 0.0
        if self.impairment.jitter_distribution == "normal":
            return abs(self._rng.gauss(0.0, jitter))
        return self._rng.uniform(0.0, jitter)

    def _through_bandwidth(self, piece: bytes) -> list[bytes]:
        """A piece sliced so that a slow link delivers it smoothly rather than all at the end."""
        if not self.impairment.bandwidth or not piece:
            return [piece]
        size = max(1, int(self.impairment.bandwidth * SMOOTHNESS))
        return [piece[start : start + size] for start in range(0, len(piece), size)]

    def _after_stalls(self, due: float) -> float:
        window = self.stalls.covering(due)
        return due if window is None else window.end
