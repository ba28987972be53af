"""Tests for chatlab.swarm.metrics: hand-written logs in, hand-computed numbers out."""

from __future__ import annotations

import json

import pytest

from chatlab.swarm.checker import Delivery
from chatlab.swarm.events import CONNECT, JOINED, LEAVE, RECV, REFUSED, SEND, STALL, Event
from chatlab.swarm.metrics import Distribution, compute, jain_index, nearest_rank

MS = 1_000_000
S = 1_000_000_000


def send(bot: str, seq: int, planned_ns: int, late_ns: int = 0) -> Event:
    """A broadcast planned at ``planned_ns`` and made ``late_ns`` later."""
    return Event(t_ns=planned_ns + late_ns, bot=bot, kind=SEND, msg_id=f"{bot}-{seq}", text="hi", planned_ns=planned_ns)


def deliver(sent: Event, receiver: str, at_ns: int | None, certain: bool = True) -> Delivery:
    """The delivery of ``sent`` to ``receiver`` at ``at_ns`` (None: it never came)."""
    received = None if at_ns is None else Event(t_ns=at_ns, bot=receiver, kind=RECV, text=f"{sent.bot}: hi")
    return Delivery(sent.msg_id, sent.bot, receiver, 0, sent, received, certain)


def log_of(deliveries: list[Delivery]) -> list[Event]:
    """The events behind some deliveries: each send once, each receipt."""
    sends = {delivery.msg_id: delivery.sent for delivery in deliveries}
    receipts = [delivery.received for delivery in deliveries if delivery.received is not None]
    return sorted([*sends.values(), *receipts], key=lambda event: event.t_ns)


# -- percentiles -----------------------------------------------------------------------


def test_nearest_rank_on_a_hand_computed_example() -> None:
    samples = sorted([15, 20, 35, 40, 50])  # the textbook example of the nearest-rank method
    assert nearest_rank(samples, 5) == 15
    assert nearest_rank(samples, 30) == 20
    assert nearest_rank(samples, 40) == 20
    assert nearest_rank(samples, 50) == 35
    assert nearest_rank(samples, 100) == 50
    assert nearest_rank([], 50) is None


def test_fractional_percentiles_are_exact() -> None:
    samples = list(range(1, 1001))
    assert nearest_rank(samples, "99.9") == 999  # not 1000, as 99.9 * 1000 / 100 in floats would give
    assert nearest_rank(samples, 99.9) == 999
    with pytest.raises(ValueError):
        nearest_rank(samples, 101)


def test_latency_percentiles_from_the_planned_send_time() -> None:
    # 100 messages planned at 1 s, sent 0.5 ms late, each received k ms after its plan (k = 1..100).
    deliveries = [deliver(send("a", k, S, late_ns=MS // 2), "b", S + k * MS) for k in range(1, 101)]
    metrics = compute(log_of(deliveries), deliveries)
    latency = metrics.latency
    assert latency.percentile(50) == 50 * MS
    assert latency.percentile(90) == 90 * MS
    assert latency.percentile(99) == 99 * MS
    assert latency.percentile("99.9") == 100 * MS
    assert latency.max_ns == 100 * MS
    assert metrics.latency_from_send.percentile(50) == 50 * MS - MS // 2
    assert metrics.send_lag.max_ns == MS // 2
    summary = metrics.to_dict()["latency"]
    assert (summary["p50_ms"], summary["p99_ms"], summary["p99.9_ms"], summary["max_ms"]) == (50.0, 99.0, 100.0, 100.0)


def test_latencies_are_stored_exactly_to_the_nanosecond() -> None:
    deliveries = [deliver(send("a", 0, S), "b", S + 1_000_001)]
    metrics = compute(log_of(deliveries), deliveries)
    assert metrics.latency.values_ns.tolist() == [1_000_001]
    assert metrics.to_dict()["latency"]["p50_ms"] == 1.000001


def test_percentiles_merge_samples_and_never_average_percentiles() -> None:
    # b waits 1 ms 99 times; c waits 100 ms once. The mean of their p99s is 50.5 ms, which no message waited.
    deliveries = [deliver(send("a", k, S + k * MS), "b", S + k * MS + MS) for k in range(99)]
    deliveries.append(deliver(send("a", 99, 2 * S), "c", 2 * S + 100 * MS))
    metrics = compute(log_of(deliveries), deliveries)
    assert metrics.latency.percentile(99) == 1 * MS
    assert metrics.latency.percentile(100) == 100 * MS
    merged = metrics.per_bot["b"].latency.merge(metrics.per_bot["c"].latency)
    assert merged.values_ns.tolist() == metrics.latency.values_ns.tolist()


def test_a_send_without_a_plan_is_measured_from_its_send_time() -> None:
    unplanned = Event(t_ns=S, bot="a", kind=SEND, msg_id="a-0", text="hi")
    deliveries = [deliver(unplanned, "b", S + 3 * MS)]
    assert compute(log_of(deliveries), deliveries).latency.values_ns.tolist() == [3 * MS]


# -- loss -------------------------------------------------------------------------------


def test_loss_is_counted_and_not_hidden() -> None:
    deliveries = [deliver(send("a", k, S + k * 100 * MS), "b", S + k * 100 * MS + 2 * MS) for k in range(9)]
    lost = deliver(send("a", 9, 2 * S + 500 * MS), "b", None)
    not_due = deliver(send("a", 10, 3 * S), "c", None, certain=False)  # c was leaving: not owed anything
    deliveries += [lost, not_due]
    metrics = compute(log_of(deliveries), deliveries)

    assert (metrics.expected, metrics.delivered, metrics.lost) == (10, 9, 1)
    assert metrics.loss_fraction == pytest.approx(0.1)
    assert metrics.lost_pairs == [("a-9", "b")]
    assert metrics.per_bot["b"].lost == 1
    assert metrics.per_bot["a"].undelivered == 1
    assert metrics.lost_over_time.tolist() == [0, 1, 0]  # planned 1.5 s after the first plan (t0)

    # The CDF stops short of 1 by the fraction lost.
    values, fractions = metrics.cdf()
    assert len(values) == 9
    assert fractions[-1] == pytest.approx(0.9)
    # Counting loss as infinitely late, p99 does not exist.
    assert metrics.percentiles_counting_loss()["p99"] is None
    assert metrics.percentiles_counting_loss()["p50"] == 2 * MS

    summary = metrics.to_dict()["latency"]
    assert summary["lost"] == 1 and summary["loss_fraction"] == 0.1
    assert "lost" in summary["note"] and "9 delivered" in summary["note"]
    assert summary["counting_loss_as_infinite_ms"]["p99_ms"] == "lost"
    assert summary["lost_examples"] == [{"msg_id": "a-9", "receiver": "b"}]


def test_an_uncertain_delivery_that_arrived_still_has_a_latency() -> None:
    deliveries = [deliver(send("a", 0, S), "b", S + 4 * MS, certain=False)]
    metrics = compute(log_of(deliveries), deliveries)
    assert (metrics.expected, metrics.delivered, metrics.uncertain_delivered, metrics.lost) == (0, 1, 1, 0)
    assert metrics.latency.values_ns.tolist() == [4 * MS]


# -- fairness ---------------------------------------------------------------------------


def test_jain_index_on_known_vectors() -> None:
    assert jain_index([3, 3, 3, 3]) == pytest.approx(1.0)
    assert jain_index([7, 0, 0, 0, 0]) == pytest.approx(1 / 5)
    assert jain_index([1, 2, 3, 4]) == pytest.approx(100 / 120)  # (1+2+3+4)^2 / (4 * (1+4+9+16))
    assert jain_index([1, 2, 3, 4]) == pytest.approx(jain_index([10, 20, 30, 40]))  # the scale does not matter
    assert jain_index([]) is None
    assert jain_index([0, 0]) is None
    with pytest.raises(ValueError):
        jain_index([1, -1])


def test_fairness_names_the_worst_off_receiver_and_sender() -> None:
    deliveries = []
    for k in range(10):
        message = send("a", k, S + k * 100 * MS)
        base = message.planned_ns
        deliveries += [deliver(message, "b", base + 1 * MS), deliver(message, "c", base + 1 * MS)]
        deliveries.append(deliver(message, "d", base + 8 * MS))  # d is served slowly
    for k in range(2):  # e sends little
        message = send("e", k, 2 * S + k * MS)
        deliveries += [deliver(message, "b", message.planned_ns + MS)]
    metrics = compute(log_of(deliveries), deliveries)
    fairness = metrics.fairness

    assert fairness.latency_worst_bot == "d"
    assert fairness.latency_worst_mean_ns == 8 * MS
    assert fairness.receivers == 3
    speeds = [1 / MS, 1 / MS, 1 / (8 * MS)]  # b, c and d: the inverse of their mean latency
    assert fairness.latency_index == pytest.approx(jain_index(speeds))
    assert fairness.throughput_worst_bot == "e"
    assert fairness.senders == 2
    assert fairness.throughput_index == pytest.approx(jain_index([30, 2]))


def test_a_receiver_that_got_nothing_is_the_worst_off() -> None:
    deliveries = [deliver(send("a", 0, S), "b", S + MS), deliver(send("a", 0, S), "c", None)]
    fairness = compute(log_of(deliveries), deliveries).fairness
    assert fairness.latency_worst_bot == "c"
    assert fairness.latency_worst_mean_ns is None
    assert fairness.latency_index == pytest.approx(0.5)  # speeds (1/1ms, 0): one takes all, 1/n


# -- throughput and time ----------------------------------------------------------------------


def test_throughput_buckets_count_sends_and_deliveries_per_second() -> None:
    start = Event(t_ns=10 * S, bot="a", kind=CONNECT)  # t0: the run starts here
    sends = [
        send("a", 0, 10 * S),
        send("a", 1, 10 * S + 500 * MS),
        send("a", 2, 11 * S + 200 * MS, late_ns=900 * MS),  # planned in second 1, made in second 2
        send("a", 3, 12 * S + 980 * MS),
    ]
    deliveries = [deliver(message, "b", message.t_ns + 50 * MS) for message in sends]
    metrics = compute([start, *log_of(deliveries)], deliveries, duration_s=5)

    assert metrics.t0_ns == 10 * S
    assert metrics.bucket_starts_s.tolist() == [0, 1, 2, 3, 4]  # duration_s stretches the buckets
    assert metrics.planned_per_s.tolist() == [2, 1, 1, 0, 0]
    assert metrics.sent_per_s.tolist() == [2, 0, 2, 0, 0]
    assert metrics.delivered_per_s.tolist() == [2, 0, 1, 1, 0]  # 12.98 s + 50 ms lands in second 3
    assert [len(bucket) for bucket in metrics.latency_over_time] == [2, 1, 1, 0, 0]
    assert metrics.latency_over_time[1].percentile(99) == 950 * MS
    buckets = metrics.to_dict()["throughput"]["buckets"]
    assert buckets[0] == {"start_s": 0, "planned": 2, "sent": 2, "delivered": 2, "joins": 0, "leaves": 0, "online": 0}


def test_intended_versus_achieved_send_rate() -> None:
    # Planned every 100 ms, but each send slips 100 ms more than the one before: made every 200 ms.
    sends = [send("a", k, S + k * 100 * MS, late_ns=k * 100 * MS) for k in range(11)]
    metrics = compute(sends, [])
    assert metrics.intended_send_rate == pytest.approx(10.0)
    assert metrics.achieved_send_rate == pytest.approx(5.0)
    assert metrics.send_lag.max_ns == 1000 * MS
    assert metrics.sends == 11


def test_join_latency_membership_and_per_bot_table() -> None:
    events = [
        Event(t_ns=0, bot="a", kind=CONNECT),
        Event(t_ns=2 * MS, bot="a", kind=JOINED, name="alice"),
        Event(t_ns=S, bot="b", kind=CONNECT),
        Event(t_ns=S + 5 * MS, bot="b", kind=JOINED, name="bob"),
        Event(t_ns=S + 10 * MS, bot="c", kind=CONNECT),
        Event(t_ns=S + 11 * MS, bot="c", kind=REFUSED, name="bob"),
        Event(t_ns=2 * S, bot="a", kind=LEAVE, text="quit"),
        Event(t_ns=3 * S, bot="c", kind=CONNECT, conn=1),
        Event(t_ns=3 * S + 1 * MS, bot="c", kind=JOINED, conn=1, name="carol"),
    ]
    message = send("b", 0, S + 100 * MS)
    deliveries = [deliver(message, "a", message.t_ns + 3 * MS)]
    metrics = compute(events + log_of(deliveries), deliveries)

    assert sorted(metrics.join_latency.values_ns.tolist()) == [1 * MS, 2 * MS, 5 * MS]
    assert (metrics.connections, metrics.joined, metrics.refused, metrics.connect_failed) == (4, 3, 1, 0)
    assert metrics.joins_per_s.tolist() == [1, 1, 0, 1]
    assert metrics.leaves_per_s.tolist() == [0, 0, 1, 0]
    assert metrics.online.tolist() == [1, 2, 1, 2]

    assert metrics.bots == ["a", "b", "c"]
    row = metrics.per_bot["b"].to_dict()
    assert (row["sent"], row["delivered_to_others"], row["received"], row["lost"]) == (1, 1, 0, 0)
    row = metrics.per_bot["a"].to_dict()
    assert (row["sent"], row["received"], row["p50_ms"], row["p99_ms"]) == (0, 1, 3.0, 3.0)


def test_harness_stalls_are_measured_apart_from_the_bots() -> None:
    stalls = [
        Event(t_ns=k * S + late * MS, bot="harness", kind=STALL, planned_ns=k * S) for k, late in enumerate([1, 2, 40])
    ]
    metrics = compute(stalls, [])
    assert metrics.stalls.max_ns == 40 * MS
    assert metrics.stalls.percentile(99) == 40 * MS
    assert metrics.bots == []  # the harness is not a bot
    assert metrics.to_dict()["harness_stalls"]["max_ms"] == 40.0


# -- to_dict ---------------------------------------------------------------------------------


def test_to_dict_survives_json() -> None:
    deliveries = [
        deliver(send(f"b{k % 3}", k, S + k * MS), f"b{(k + 1) % 3}", S + k * MS + (k % 7) * MS) for k in range(600)
    ]
    deliveries.append(deliver(send("b0", 999, 2 * S), "b1", None))
    events = [Event(t_ns=0, bot="b0", kind=CONNECT), Event(t_ns=MS, bot="b0", kind=JOINED), *log_of(deliveries)]
    events.append(Event(t_ns=S, bot="harness", kind=STALL, planned_ns=S - MS))
    data = json.loads(json.dumps(compute(events, deliveries).to_dict(), allow_nan=False))
    assert data["latency"]["delivered"] == 600
    assert len(data["cdf"]["latency_ms"]) == len(data["cdf"]["fraction"]) <= 500
    assert data["cdf"]["fraction"][-1] == pytest.approx(600 / 601)
    assert {row["bot"] for row in data["per_bot"]} == {"b0", "b1", "b2"}


def test_an_empty_run_is_measured_without_errors() -> None:
    metrics = compute([], [])
    data = json.loads(json.dumps(metrics.to_dict(), allow_nan=False))
    assert data["latency"]["p99_ms"] is None
    assert data["fairness"]["receiver_latency"]["jain_index"] is None
    assert len(metrics.bucket_starts_s) == 1


def test_distribution_of_any_order() -> None:
    distribution = Distribution.of([30, 10, 20])
    assert distribution.values_ns.tolist() == [10, 20, 30]
    assert distribution.mean_ns == 20
    assert distribution.to_dict()["count"] == 3
