"""Latency, loss, throughput and fairness of a swarm run, computed from its event log alone.

The bots only record (see :mod:`chatlab.swarm.events`) and the checker decides which
deliveries were due (see :mod:`chatlab.swarm.checker`). This module turns both into
numbers: :func:`compute` takes the events and the checker's deliveries and returns a
:class:`Metrics`, whose :meth:`Metrics.to_dict` is what ``summary.json`` holds and whose
arrays are what the charts of :mod:`chatlab.swarm.report` draw.

Read it top to bottom:

1. percentiles, done honestly (:func:`nearest_rank`, :class:`Distribution`);
2. fairness (:func:`jain_index`);
3. the records that make up a :class:`Metrics`;
4. :func:`compute`, which fills them in.

Three rules run through it all.

*Latency is measured from the planned send time.* Each bot follows a schedule fixed
in advance ("send at 3.250 s") and sends late when it falls behind. If we measured
from the moment the bytes were actually written, a server that stalls for a second
would be credited with one slow message instead of the hundreds that queued up
behind the stall, because the bots that were waiting on it did not even try to send.
That mistake has a name, *coordinated omission* (Gil Tene's talk "How NOT to Measure
Latency" is the classic account): the load generator coordinates with the system it
measures and omits exactly the samples that would have looked bad. So every latency
here is ``received.t_ns - sent.planned_ns``; the latency from the actual send, and the
gap between the two (the *send lag*), are kept alongside so you can see how much the
schedule slipped.

*Values are kept exact, and percentiles are never averaged.* Every latency is an
integer number of nanoseconds, stored as it was measured. A percentile is computed
from all the samples at once (merge the samples, then rank); the mean of ten
per-bot p99s is not the p99 of anything.

*Loss is reported, never hidden.* A message a certain member never received has no
latency, so it cannot be in the percentiles; dropping it quietly would make a server
that loses its slowest messages look fast. Every latency figure therefore travels
with its loss count, and the CDF is drawn over delivered *plus* lost pairs, so its
curve stops short of 1 by exactly the fraction lost.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from chatlab.swarm.events import (
    CLOSED,
    CONNECT,
    CONNECT_FAILED,
    JOINED,
    LEAVE,
    REFUSED,
    SEND,
    STALL,
    WHISPER,
    Event,
)

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
BUCKET_NS = NS_PER_S  # the width of a time bucket: one second
HARNESS = "harness"  # the bot label of events the harness records about itself (STALL)

# The percentiles every latency summary reports, as exact fractions so that 99.9 % of
# 1000 samples is rank 999 and not 999.0000000000001 (which would round up to 1000).
PERCENTILES: tuple[tuple[str, Fraction], ...] = (
    ("p50", Fraction(50)),
    ("p90", Fraction(90)),
    ("p99", Fraction(99)),
    ("p99.9", Fraction("99.9")),
)

CDF_POINTS = 500  # at most this many points of the CDF go into to_dict()
LOST_EXAMPLES = 10  # at most this many lost (message, receiver) pairs go into to_dict()


def ns_to_ms(ns: float | None) -> float | None:
    """Nanoseconds as milliseconds, rounded to the nanosecond (None stays None)."""
    return None if ns is None else round(float(ns) / NS_PER_MS, 6)


# ---------------------------------------------------------------------------
# 1. Percentiles
# ---------------------------------------------------------------------------


def nearest_rank(sorted_values: Sequence[int] | np.ndarray, p: float | str | Fraction) -> int | None:
    """The ``p``-th percentile of ascending ``sorted_values`` by the nearest-rank rule.

    The p-th percentile is the smallest sample that at least p % of the samples do
    not exceed: the sample of rank ``ceil(p/100 * n)``, counting from 1. It is always
    one of the measured values (no interpolation invents a latency nobody saw), and
    "p99 = 3.2 ms" reads literally: 99 % of deliveries took 3.2 ms or less. It is the
    rule HdrHistogram and most latency tools use.

    >>> nearest_rank([10, 20, 30, 40], 50)
    20
    >>> nearest_rank([10, 20, 30, 40], 51)
    30
    >>> nearest_rank(list(range(1, 1001)), "99.9")
    999

    Give fractional percentiles as strings or Fractions (``"99.9"``); a float is read
    through its shortest decimal form, so ``99.9`` works too. None for no samples.
    """
    count = len(sorted_values)
    if count == 0:
        return None
    fraction = Fraction(repr(p)) if isinstance(p, float) else Fraction(p)
    if not 0 <= fraction <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {p}")
    rank = max(1, math.ceil(fraction * count / 100))
    return int(sorted_values[rank - 1])


@dataclass(frozen=True, eq=False)
class Distribution:
    """A set of durations, each kept exactly in integer nanoseconds, sorted.

    Build one with :meth:`of`. Merging two distributions means concatenating their
    samples (:meth:`merge`), which is why the samples are kept rather than a few
    summary numbers.
    """

    values_ns: np.ndarray  #: the samples, ascending, dtype int64

    @classmethod
    def of(cls, values_ns: Iterable[int] | np.ndarray) -> Distribution:
        """A distribution of these samples (in any order)."""
        array = np.asarray(values_ns if isinstance(values_ns, np.ndarray) else list(values_ns), dtype=np.int64)
        return cls(np.sort(array))

    def merge(self, other: Distribution) -> Distribution:
        """The distribution of both sets of samples together."""
        return Distribution.of(np.concatenate([self.values_ns, other.values_ns]))

    def __len__(self) -> int:
        return len(self.values_ns)

    def percentile(self, p: float | str | Fraction) -> int | None:
        """The ``p``-th percentile in nanoseconds (see :func:`nearest_rank`)."""
        return nearest_rank(self.values_ns, p)

    @property
    def max_ns(self) -> int | None:
        """The largest sample, or None."""
        return int(self.values_ns[-1]) if len(self) else None

    @property
    def mean_ns(self) -> float | None:
        """The arithmetic mean, or None (exact: summed as Python integers)."""
        return sum(self.values_ns.tolist()) / len(self) if len(self) else None

    def to_dict(self) -> dict[str, Any]:
        """Count, mean, the standard percentiles and max, in milliseconds."""
        summary: dict[str, Any] = {"count": len(self), "mean_ms": ns_to_ms(self.mean_ns)}
        for label, fraction in PERCENTILES:
            summary[f"{label}_ms"] = ns_to_ms(self.percentile(fraction))
        summary["max_ms"] = ns_to_ms(self.max_ns)
        return summary


def _split_by_group(groups: np.ndarray, values: np.ndarray, group_count: int) -> list[Distribution]:
    """One distribution per group code 0 .. group_count-1 (one sort for all, not one per group)."""
    order = np.lexsort((values, groups))  # by group, then by value inside a group
    sorted_values = values[order]
    counts = np.bincount(groups, minlength=group_count)
    ends = np.cumsum(counts)
    return [
        Distribution(sorted_values[end - count : end])
        for count, end in zip(counts.tolist(), ends.tolist(), strict=True)
    ]


# ---------------------------------------------------------------------------
# 2. Fairness
# ---------------------------------------------------------------------------


def jain_index(values: Iterable[float]) -> float | None:
    """Jain's fairness index of a list of non-negative allocations: ``(sum x)² / (n · sum x²)``.

    Think of ``n`` bots sharing a server, ``x`` being what each one got (messages
    delivered per second, say). If all got the same, the index is exactly 1. If one
    bot got everything and the others nothing, it is ``1/n``, its smallest value. In
    between it reads as a head count: an index of 0.75 among 100 bots behaves as if
    75 bots were served equally and 25 not at all. It does not depend on the unit or
    the scale (double every ``x`` and it stays put), so messages per second and
    messages per run give the same index.

    >>> jain_index([5, 5, 5, 5])
    1.0
    >>> jain_index([8, 0, 0, 0])
    0.25

    It measures *equality*, not *justice*: a chatty bot that sends ten times more
    than a lurker lowers the index although nobody was wronged, so compare runs of
    the same scenario rather than reading the number on its own. Jain, Chiu and Hawe
    defined it in 1984 for throughput, where more is better; for a cost such as
    latency, take the inverse first (see :class:`Fairness`).

    None when there is nothing to judge: no values, or all zero.
    """
    array = np.asarray(list(values), dtype=np.float64)
    if len(array) == 0:
        return None
    if np.any(array < 0):
        raise ValueError("Jain's index is defined for non-negative allocations")
    square_sum = float(np.sum(array * array))
    if square_sum == 0.0:
        return None
    return float(np.sum(array)) ** 2 / (len(array) * square_sum)


# ---------------------------------------------------------------------------
# 3. The records
# ---------------------------------------------------------------------------


class DeliveryLike(Protocol):
    """What metrics read from each of the checker's deliveries (``checker.Delivery``).

    One delivery is one (message, receiver session) pair the checker expected
    (``certain``) or observed. Metrics need only these fields.
    """

    @property
    def msg_id(self) -> str: ...  # the message's id tag

    @property
    def sender(self) -> str: ...  # the sending bot's label

    @property
    def receiver(self) -> str: ...  # the receiving bot's label

    @property
    def sent(self) -> Event: ...  # the SEND or WHISPER event

    @property
    def received(self) -> Event | None: ...  # the RECV event, or None if it never came

    @property
    def certain(self) -> bool: ...  # the receiver was certainly a member, so the delivery was due


@dataclass(frozen=True)
class BotStats:
    """One row of the per-bot table."""

    bot: str  #: the bot's label
    sent: int  #: messages it sent (broadcasts and whispers)
    delivered_to_others: int  #: (message, receiver) deliveries of its messages that arrived
    received: int  #: messages of others that reached it
    lost: int  #: messages due to it (it was certainly a member) that never arrived
    undelivered: int  #: deliveries of its own messages, due to certain members, that never arrived
    latency: Distribution  #: its latencies as a receiver, from the planned send time

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values, latency in milliseconds."""
        return {
            "bot": self.bot,
            "sent": self.sent,
            "delivered_to_others": self.delivered_to_others,
            "received": self.received,
            "lost": self.lost,
            "undelivered": self.undelivered,
            "p50_ms": ns_to_ms(self.latency.percentile(50)),
            "p99_ms": ns_to_ms(self.latency.percentile(99)),
            "mean_ms": ns_to_ms(self.latency.mean_ns),
        }


@dataclass(frozen=True)
class Fairness:
    """How evenly the server treated the bots, as two Jain indexes (see :func:`jain_index`).

    *Receivers* are judged by their mean delivery latency. Latency is a cost, so the
    index is taken over its inverse, ``1 / mean latency``, a "speed of service":
    1 means every receiver waited the same on average, and the index is lower the
    more unequal the waits. A receiver that was due messages and got none has speed
    0. Because one slow receiver among ``n`` moves the index only by about ``1/n``,
    the worst-off receiver is named too, with its mean latency next to the median of
    everyone's means: the ratio of the two is the quickest read of "was someone
    left behind?".

    *Senders* are judged by delivered throughput: how many (message, receiver)
    deliveries of theirs arrived per second. Only bots that sent something count (a
    lurker is not starved, it has nothing to say). Whispers reach one receiver and
    broadcasts all, so mix personas with care when reading this one.
    """

    latency_index: float | None  #: Jain over 1 / (mean latency) per receiver; 1 = all waited alike
    receivers: int  #: how many receivers were judged
    latency_worst_bot: str | None  #: the receiver with the highest mean latency (or none received)
    latency_worst_mean_ns: float | None  #: its mean latency (None: it received nothing)
    latency_median_mean_ns: float | None  #: the median of the receivers' mean latencies
    throughput_index: float | None  #: Jain over delivered deliveries per sender; 1 = all served alike
    senders: int  #: how many senders were judged
    throughput_worst_bot: str | None  #: the sender with the fewest deliveries
    throughput_worst_per_s: float | None  #: its deliveries per second
    throughput_median_per_s: float | None  #: the median sender's deliveries per second

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, latency in milliseconds."""
        return {
            "jain_index_definition": "(sum x)^2 / (n * sum x^2): 1 = perfectly fair, 1/n = one takes all",
            "receiver_latency": {
                "jain_index": _round(self.latency_index),
                "computed_over": "1 / mean latency per receiver (higher = fairer)",
                "receivers": self.receivers,
                "worst_off": self.latency_worst_bot,
                "worst_off_mean_ms": ns_to_ms(self.latency_worst_mean_ns),
                "median_mean_ms": ns_to_ms(self.latency_median_mean_ns),
            },
            "sender_throughput": {
                "jain_index": _round(self.throughput_index),
                "computed_over": "delivered (message, receiver) pairs per second per sender (higher = fairer)",
                "senders": self.senders,
                "worst_off": self.throughput_worst_bot,
                "worst_off_per_s": _round(self.throughput_worst_per_s),
                "median_per_s": _round(self.throughput_median_per_s),
            },
        }


@dataclass(frozen=True, eq=False)
class Metrics:
    """Everything :func:`compute` measured about one run.

    Times on charts are seconds since ``t0_ns``, the first thing that happened in
    the run. Buckets are one second wide; bucket ``i`` covers ``[i, i+1)`` s.
    """

    t0_ns: int  #: the run's origin: the earliest time in the log
    duration_s: float  #: the run's length (as given to compute(), else the span of the log)
    bots: list[str]  #: the bots' labels, sorted (the harness excluded)

    latency: Distribution  #: planned send -> receipt, every delivered pair: the honest figure
    latency_from_send: Distribution  #: actual send -> receipt (what a closed-loop tool would report)
    send_lag: Distribution  #: planned send -> actual send, every send with a plan
    expected: int  #: (message, receiver) deliveries that were due (the receiver was certainly a member)
    delivered: int  #: delivered pairs, due or not (the latency samples)
    lost: int  #: due pairs that never arrived
    uncertain_delivered: int  #: delivered pairs the checker could not call due (a receiver joining or leaving)
    lost_pairs: list[tuple[str, str]]  #: (msg_id, receiver) of lost pairs, in send order

    bucket_starts_s: np.ndarray  #: the start of each one-second bucket
    planned_per_s: np.ndarray  #: sends the schedule wanted, per bucket (by planned_ns)
    sent_per_s: np.ndarray  #: sends made, per bucket (by t_ns)
    delivered_per_s: np.ndarray  #: deliveries that arrived, per bucket (by receipt time)
    joins_per_s: np.ndarray  #: connections accepted into the room (JOINED), per bucket
    leaves_per_s: np.ndarray  #: joined connections that ended (first LEAVE or CLOSED), per bucket
    online: np.ndarray  #: joined connections still in the room at the end of each bucket
    latency_over_time: list[Distribution]  #: latencies of the messages planned in each bucket
    lost_over_time: np.ndarray  #: lost pairs per bucket of planned send time
    sends: int  #: messages sent (SEND and WHISPER events)
    intended_send_rate: float | None  #: sends per second implied by the planned times
    achieved_send_rate: float | None  #: sends per second the actual send times achieved

    connections: int  #: connections attempted (CONNECT or CONNECT_FAILED)
    connect_failed: int  #: connections that could not be made
    joined: int  #: connections whose name was accepted
    refused: int  #: connections refused a name and never joined
    join_latency: Distribution  #: CONNECT -> JOINED, per joined connection

    per_bot: dict[str, BotStats]  #: the per-bot table, by label
    fairness: Fairness  #: Jain's indexes and the worst-off bots
    stalls: Distribution  #: how late the harness woke (STALL: t_ns - planned_ns)

    @property
    def loss_fraction(self) -> float:
        """Lost pairs as a fraction of due pairs (0.0 when nothing was due)."""
        return self.lost / self.expected if self.expected else 0.0

    def cdf(self) -> tuple[np.ndarray, np.ndarray]:
        """The empirical CDF of the latency: (sorted latencies in ns, fraction at or below each).

        The fractions count lost pairs in the denominator, as infinitely late: the
        curve ends at ``1 - lost / (delivered + lost)``, so loss shows as a gap
        below 1 rather than vanishing.
        """
        values = self.latency.values_ns
        return values, np.arange(1, len(values) + 1) / max(1, len(values) + self.lost)

    def percentiles_counting_loss(self) -> dict[str, int | None]:
        """Latency percentiles with lost pairs counted as infinitely late.

        The value is None (infinite) for a percentile that falls among the lost
        pairs: with 2 % loss, the p99 of "time until a message arrives" does not
        exist, however fast the other 98 % were.
        """
        total = len(self.latency) + self.lost
        result: dict[str, int | None] = {}
        for label, fraction in PERCENTILES:
            rank = max(1, math.ceil(fraction * total / 100)) if total else 0
            result[label] = int(self.latency.values_ns[rank - 1]) if 0 < rank <= len(self.latency) else None
        return result

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON values; durations in milliseconds, the unit in each key."""
        values, fractions = self.cdf()
        if len(values) > CDF_POINTS:  # the exact samples at evenly spread ranks
            picks = np.unique(np.linspace(0, len(values) - 1, CDF_POINTS).round().astype(np.int64))
            values, fractions = values[picks], fractions[picks]
        latency = {
            "measured_from": "planned send time (open loop, so stalls are not hidden)",
            "expected": self.expected,
            "delivered": self.delivered,
            "delivered_due": self.expected - self.lost,
            "uncertain_delivered": self.uncertain_delivered,
            "lost": self.lost,
            "loss_fraction": _round(self.loss_fraction),
            "note": (
                f"percentiles are over the {self.delivered} delivered pairs; the {self.lost} lost pairs "
                "have no latency and are reported as loss, not left out silently"
            ),
            **self.latency.to_dict(),
            "counting_loss_as_infinite_ms": {
                f"{label}_ms": ("lost" if value is None else ns_to_ms(value))
                for label, value in self.percentiles_counting_loss().items()
            }
            if self.delivered + self.lost
            else {},
            "lost_examples": [
                {"msg_id": msg_id, "receiver": receiver} for msg_id, receiver in self.lost_pairs[:LOST_EXAMPLES]
            ],
        }
        return {
            "run": {"t0_ns": self.t0_ns, "duration_s": _round(self.duration_s), "bots": len(self.bots)},
            "latency": latency,
            "latency_from_actual_send": self.latency_from_send.to_dict(),
            "send_lag": self.send_lag.to_dict(),
            "cdf": {
                "latency_ms": [ns_to_ms(value) for value in values.tolist()],
                "fraction": [_round(fraction) for fraction in fractions.tolist()],
                "samples": len(self.latency),
            },
            "latency_over_time": [
                {
                    "start_s": int(start),
                    "count": len(bucket),
                    "p50_ms": ns_to_ms(bucket.percentile(50)),
                    "p99_ms": ns_to_ms(bucket.percentile(99)),
                    "lost": int(lost),
                }
                for start, bucket, lost in zip(
                    self.bucket_starts_s.tolist(), self.latency_over_time, self.lost_over_time.tolist(), strict=True
                )
            ],
            "throughput": {
                "bucket_s": BUCKET_NS / NS_PER_S,
                "sends": self.sends,
                "intended_send_rate_per_s": _round(self.intended_send_rate),
                "achieved_send_rate_per_s": _round(self.achieved_send_rate),
                "buckets": [
                    {
                        "start_s": int(start),
                        "planned": int(planned),
                        "sent": int(sent),
                        "delivered": int(delivered),
                        "joins": int(joins),
                        "leaves": int(leaves),
                        "online": int(online),
                    }
                    for start, planned, sent, delivered, joins, leaves, online in zip(
                        self.bucket_starts_s.tolist(),
                        self.planned_per_s.tolist(),
                        self.sent_per_s.tolist(),
                        self.delivered_per_s.tolist(),
                        self.joins_per_s.tolist(),
                        self.leaves_per_s.tolist(),
                        self.online.tolist(),
                        strict=True,
                    )
                ],
            },
            "joins": {
                "connections": self.connections,
                "connect_failed": self.connect_failed,
                "joined": self.joined,
                "refused": self.refused,
                "latency": self.join_latency.to_dict(),
            },
            "per_bot": [stats.to_dict() for stats in self.per_bot.values()],
            "fairness": self.fairness.to_dict(),
            "harness_stalls": self.stalls.to_dict(),
        }


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


# ---------------------------------------------------------------------------
# 4. Computing them
# ---------------------------------------------------------------------------


def planned_or_sent_ns(sent: Event) -> int:
    """When a message was meant to go out: its planned time, or its send time if it had no plan (0)."""
    return sent.planned_ns or sent.t_ns


def membership_changes(events: Iterable[Event]) -> list[tuple[int, int]]:
    """(t_ns, +1 or -1) for every connection that joined the room and for its departure.

    A connection joins at its JOINED event and departs at its first LEAVE or CLOSED
    event after that (whichever the bot saw first: its own goodbye or the server
    cutting it off). Sorted by time.
    """
    joined_at: dict[tuple[str, int], int] = {}
    departed_at: dict[tuple[str, int], int] = {}
    for event in events:
        key = (event.bot, event.conn)
        if event.kind == JOINED and key not in joined_at:
            joined_at[key] = event.t_ns
        elif event.kind in (LEAVE, CLOSED) and key in joined_at and key not in departed_at:
            departed_at[key] = event.t_ns
    changes = [(t_ns, +1) for t_ns in joined_at.values()] + [(t_ns, -1) for t_ns in departed_at.values()]
    return sorted(changes)


def compute(events: Iterable[Event], deliveries: Iterable[DeliveryLike], duration_s: float | None = None) -> Metrics:
    """Measure a run from its event log and the checker's deliveries.

    ``deliveries`` holds one record per (message, receiver session) that was due or
    observed (``checker.Delivery``, or anything with the fields of
    :class:`DeliveryLike`). ``duration_s`` is the run's length; without it, the span
    of the log is used. It sets how many buckets the throughput has (at least) and
    the divisor of the per-sender rates.
    """
    events = list(events)
    deliveries = list(deliveries)

    # One pass over the deliveries, into flat lists: numpy does the rest.
    planned, sent_at, received_at, receivers, senders = [], [], [], [], []
    lost_pairs: list[tuple[str, str]] = []
    lost_by_receiver: Counter[str] = Counter()
    lost_by_sender: Counter[str] = Counter()
    expected = uncertain_delivered = 0
    lost_planned: list[int] = []
    for delivery in deliveries:
        expected += delivery.certain
        if delivery.received is not None:
            planned.append(planned_or_sent_ns(delivery.sent))
            sent_at.append(delivery.sent.t_ns)
            received_at.append(delivery.received.t_ns)
            receivers.append(delivery.receiver)
            senders.append(delivery.sender)
            uncertain_delivered += not delivery.certain
        elif delivery.certain:
            lost_planned.append(planned_or_sent_ns(delivery.sent))
            lost_pairs.append((delivery.msg_id, delivery.receiver))
            lost_by_receiver[delivery.receiver] += 1
            lost_by_sender[delivery.sender] += 1
    planned_ns = np.asarray(planned, dtype=np.int64)
    sent_ns = np.asarray(sent_at, dtype=np.int64)
    received_ns = np.asarray(received_at, dtype=np.int64)
    lost_planned_ns = np.asarray(lost_planned, dtype=np.int64)
    lost_pairs = [pair for _, pair in sorted(zip(lost_planned, lost_pairs, strict=True), key=lambda item: item[0])]

    sends = [event for event in events if event.kind in (SEND, WHISPER) and event.bot != HARNESS]
    send_t_ns = np.asarray([event.t_ns for event in sends], dtype=np.int64)
    send_planned_ns = np.asarray([event.planned_ns for event in sends if event.planned_ns], dtype=np.int64)
    send_lag = Distribution.of([event.t_ns - event.planned_ns for event in sends if event.planned_ns])

    # The clock: t0 is the earliest time anywhere in the log, the end the latest.
    starts = [array.min() for array in (planned_ns, sent_ns, lost_planned_ns, send_planned_ns) if len(array)]
    starts += [min(event.t_ns for event in events)] if events else []
    ends = [array.max() for array in (received_ns, send_t_ns) if len(array)]
    ends += [max(event.t_ns for event in events)] if events else []
    t0_ns = int(min(starts)) if starts else 0
    end_ns = int(max(ends)) if ends else t0_ns
    span_s = (end_ns - t0_ns) / NS_PER_S
    bucket_count = max((end_ns - t0_ns) // BUCKET_NS + 1, math.ceil(duration_s or 0))
    run_s = duration_s if duration_s is not None else span_s

    def per_bucket(times_ns: np.ndarray) -> np.ndarray:
        """How many of these times fall in each bucket."""
        if len(times_ns) == 0:
            return np.zeros(bucket_count, dtype=np.int64)
        index = np.clip((times_ns - t0_ns) // BUCKET_NS, 0, bucket_count - 1)
        return np.bincount(index, minlength=bucket_count)

    # Latency, three ways.
    latency_ns = received_ns - planned_ns
    latency = Distribution.of(latency_ns)
    latency_bucket = np.clip((planned_ns - t0_ns) // BUCKET_NS, 0, bucket_count - 1)
    latency_over_time = _split_by_group(latency_bucket, latency_ns, bucket_count)

    # Membership over time.
    changes = membership_changes(events)
    join_times = np.asarray([t for t, delta in changes if delta > 0], dtype=np.int64)
    leave_times = np.asarray([t for t, delta in changes if delta < 0], dtype=np.int64)
    joins_per_s, leaves_per_s = per_bucket(join_times), per_bucket(leave_times)

    # Joins: CONNECT -> JOINED, per connection.
    connected: dict[tuple[str, int], int] = {}
    accepted: dict[tuple[str, int], int] = {}
    refused_conns: set[tuple[str, int]] = set()
    failed_conns: set[tuple[str, int]] = set()
    for event in events:
        key = (event.bot, event.conn)
        if event.kind == CONNECT:
            connected.setdefault(key, event.t_ns)
        elif event.kind == CONNECT_FAILED:
            failed_conns.add(key)
        elif event.kind == JOINED:
            accepted.setdefault(key, event.t_ns)
        elif event.kind == REFUSED:
            refused_conns.add(key)
    join_latency = Distribution.of([accepted[key] - connected[key] for key in accepted if key in connected])

    # The per-bot table: one sort gives every receiver's latencies.
    bots = sorted(
        {event.bot for event in events if event.bot != HARNESS} | set(receivers) | set(senders) | set(lost_by_receiver)
    )
    bot_index = {bot: number for number, bot in enumerate(bots)}
    receiver_codes = np.asarray([bot_index[bot] for bot in receivers], dtype=np.int64)
    by_receiver = _split_by_group(receiver_codes, latency_ns, len(bots))
    sent_by_bot = Counter(event.bot for event in sends)
    delivered_by_sender = Counter(senders)
    per_bot = {
        bot: BotStats(
            bot=bot,
            sent=sent_by_bot[bot],
            delivered_to_others=delivered_by_sender[bot],
            received=len(by_receiver[number]),
            lost=lost_by_receiver[bot],
            undelivered=lost_by_sender[bot],
            latency=by_receiver[number],
        )
        for number, bot in enumerate(bots)
    }

    # Harness stalls: how late the control thread woke.
    stalls = Distribution.of([event.t_ns - event.planned_ns for event in events if event.kind == STALL])

    return Metrics(
        t0_ns=t0_ns,
        duration_s=run_s,
        bots=bots,
        latency=latency,
        latency_from_send=Distribution.of(received_ns - sent_ns),
        send_lag=send_lag,
        expected=expected,
        delivered=len(latency),
        lost=len(lost_pairs),
        uncertain_delivered=uncertain_delivered,
        lost_pairs=lost_pairs,
        bucket_starts_s=np.arange(bucket_count, dtype=np.int64) * (BUCKET_NS // NS_PER_S),
        planned_per_s=per_bucket(send_planned_ns),
        sent_per_s=per_bucket(send_t_ns),
        delivered_per_s=per_bucket(received_ns),
        joins_per_s=joins_per_s,
        leaves_per_s=leaves_per_s,
        online=np.cumsum(joins_per_s) - np.cumsum(leaves_per_s),
        latency_over_time=latency_over_time,
        lost_over_time=per_bucket(lost_planned_ns),
        sends=len(sends),
        intended_send_rate=_rate(send_planned_ns),
        achieved_send_rate=_rate(send_t_ns),
        connections=len(set(connected) | failed_conns),
        connect_failed=len(failed_conns),
        joined=len(accepted),
        refused=len(refused_conns - set(accepted)),
        join_latency=join_latency,
        per_bot=per_bot,
        fairness=_fairness(per_bot, run_s),
        stalls=stalls,
    )


def _rate(times_ns: np.ndarray) -> float | None:
    """Events per second from their spacing: n events span n-1 gaps (None for fewer than 2)."""
    if len(times_ns) < 2:
        return None
    span_ns = int(times_ns.max()) - int(times_ns.min())
    return (len(times_ns) - 1) * NS_PER_S / span_ns if span_ns > 0 else None


def _fairness(per_bot: dict[str, BotStats], run_s: float) -> Fairness:
    """Jain's indexes over receivers' speed of service and senders' delivered throughput."""
    # Receivers: everyone who received something or was due something.
    receivers = [stats for stats in per_bot.values() if stats.received or stats.lost]
    means = {stats.bot: stats.latency.mean_ns for stats in receivers}
    # A receiver that got nothing it was due has speed 0: the worst service there is.
    speeds = {bot: 0.0 if mean is None else 1.0 / max(mean, 1.0) for bot, mean in means.items()}
    known_means = [mean for mean in means.values() if mean is not None]
    worst_receiver = min(speeds, key=lambda bot: (speeds[bot], bot)) if speeds else None

    # Senders: everyone who sent something.
    senders = [stats for stats in per_bot.values() if stats.sent]
    per_s = [stats.delivered_to_others / run_s if run_s > 0 else None for stats in senders]
    worst_sender = min(senders, key=lambda stats: (stats.delivered_to_others, stats.bot)) if senders else None
    known_rates = [rate for rate in per_s if rate is not None]

    return Fairness(
        latency_index=jain_index(speeds.values()),
        receivers=len(receivers),
        latency_worst_bot=worst_receiver,
        latency_worst_mean_ns=means[worst_receiver] if worst_receiver else None,
        latency_median_mean_ns=float(np.median(known_means)) if known_means else None,
        throughput_index=jain_index(stats.delivered_to_others for stats in senders),
        senders=len(senders),
        throughput_worst_bot=worst_sender.bot if worst_sender else None,
        throughput_worst_per_s=(worst_sender.delivered_to_others / run_s if worst_sender and run_s > 0 else None),
        throughput_median_per_s=float(np.median(known_rates)) if known_rates else None,
    )


__all__ = [
    "BUCKET_NS",
    "PERCENTILES",
    "BotStats",
    "DeliveryLike",
    "Distribution",
    "Fairness",
    "Metrics",
    "compute",
    "jain_index",
    "membership_changes",
    "nearest_rank",
    "ns_to_ms",
    "planned_or_sent_ns",
]
