"""Run benchmark cells: one server in its own process, load from worker processes, medians of repeats.

A *cell* is one server under one workload with N clients. Each repetition starts a
fresh server process (``python -m chatlab server --impl ...``) on a free port,
connects every client, runs the steady phase, waits for what is due to arrive,
and reads the server's CPU time, memory and thread count from the operating system
(psutil). The median over repetitions is what gets reported.
"""

from __future__ import annotations

import multiprocessing
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

from chatlab.bench import SERVERS, WORKLOADS  # noqa: F401  (re-exported)
from chatlab.bench.loadgen import Outcome, Plan, run_worker

START_TIMEOUT = 20.0  # seconds for a server process to say it listens
READY_TIMEOUT = 60.0  # seconds for every worker to connect its clients
DRAIN_TIMEOUT = 10.0  # seconds after the steady phase for due lines to arrive
LINE_SIZE = 100  # bytes of text per chat line
KNEE_P99_MS = 100.0  # the sweep stops once p99 passes this
FIXED_DELIVERIES = 20_000  # deliveries per second in the "fixed" workload
WINDOW_LINES_PER_CLIENT = 4000  # saturate: lines in flight per recipient (about 440 KB)...
WINDOW_LINES = 1_000_000  # ...and in all, so that what is in flight drains in seconds
PROBES = 16  # clients that time every line they receive; the others are read in bulk and counted

#: Harness limits. A run was limited by the harness, not the server, when the busiest
#: load process used more than HARNESS_CPU_SHARE of a core, or when its sends left
#: late: p99 lateness above HARNESS_LATENESS_P99_MS *and* above HARNESS_LATENESS_SHARE
#: of the p99 latency it measured (every late send adds its lateness to a latency).
HARNESS_LATENESS_P99_MS = 5.0
HARNESS_LATENESS_SHARE = 0.25
HARNESS_CPU_SHARE = 0.9


class BenchError(Exception):
    """The benchmark could not run (a server did not start, clients could not connect)."""


# -- one server process ---------------------------------------------------------------


class ServerProcess:
    """``python -m chatlab server --impl IMPL --port 0`` as a child process, with its measurements."""

    def __init__(self, impl: str, log_path: Path | None = None) -> None:
        self.impl = impl
        self.log_path = log_path
        self.address: tuple[str, int] | None = None
        self._listening = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_thread: threading.Thread | None = None
        self.info: psutil.Process | None = None

    def start(self) -> ServerProcess:
        command = [sys.executable, "-m", "chatlab", "server", "--impl", self.impl, "--host", "127.0.0.1", "--port", "0"]
        if self.impl != "naive":
            command += ["--max-clients", "5000"]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._log_thread = threading.Thread(target=self._read_log, name=f"log-{self.impl}")
        self._log_thread.start()
        if not self._listening.wait(START_TIMEOUT) or self.address is None:
            status = self._process.poll()
            self.stop()
            if status is not None:
                raise BenchError(f"the {self.impl} server exited with status {status} before listening")
            raise BenchError(f"the {self.impl} server did not start listening within {START_TIMEOUT:.0f} s")
        self.info = psutil.Process(self._process.pid)
        return self

    def _read_log(self) -> None:
        """Watch the server's log for its address, and keep draining it so the pipe never fills."""
        assert self._process is not None and self._process.stderr is not None
        sink = None
        try:
            if self.log_path:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                sink = open(self.log_path, "wb")
            for raw in self._process.stderr:
                if sink:
                    sink.write(raw)
                if not self._listening.is_set() and b"listening on " in raw:
                    host, _, port = raw.rsplit(b"listening on ", 1)[1].strip().decode().rpartition(":")
                    self.address = (host, int(port))
                    self._listening.set()
        finally:
            self._listening.set()  # a server that died before listening wakes start() too
            if sink:
                sink.close()

    def cpu_seconds(self) -> float:
        assert self.info is not None
        times = self.info.cpu_times()
        return times.user + times.system

    def rss_bytes(self) -> int:
        assert self.info is not None
        return self.info.memory_info().rss

    def threads(self) -> int:
        assert self.info is not None
        return self.info.num_threads()

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        if self._log_thread is not None:
            self._log_thread.join(5)
        self._process = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- worker processes ---------------------------------------------------------------------


@contextmanager
def _workers(plans: list[Plan], total_clients: int) -> Iterator[list[tuple[multiprocessing.Process, object]]]:
    """Start one process per plan (spawned: a fresh interpreter each), and always end them."""
    context = multiprocessing.get_context("spawn")
    counters = context.Array("q", 2 * len(plans), lock=False)
    started = []
    try:
        for slot, plan in enumerate(plans):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=run_worker, args=(child_end, plan, counters, slot, total_clients), name=f"bench-worker-{slot}"
            )
            process.start()
            child_end.close()
            started.append((process, parent_end))
        yield started
    finally:
        for process, pipe in started:
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)
            pipe.close()  # type: ignore[attr-defined]


def _receive(pipe: object, expected: str, timeout: float) -> object:
    if not pipe.poll(timeout):  # type: ignore[attr-defined]
        raise BenchError(f"a load worker did not answer ({expected!r}) within {timeout:.0f} s")
    try:
        message = pipe.recv()  # type: ignore[attr-defined]
    except EOFError:
        raise BenchError(f"a load worker died (waiting for {expected!r})") from None
    if message[0] == "failed":
        raise BenchError(f"a load worker failed: {message[1]}")
    if message[0] != expected:
        raise BenchError(f"a load worker said {message[0]!r} instead of {expected!r}")
    return message[1]


# -- one run ------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One repetition of one cell. Times in milliseconds, rates per second."""

    server: str
    workload: str
    clients: int
    offered: float  #: deliveries per second asked for (0 for saturate and connections)
    deliveries_per_s: float = 0.0
    sent: int = 0
    due: int = 0
    received: int = 0
    loss: float = 0.0  #: fraction of due deliveries that never arrived
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    cpu_cores: float = 0.0  #: server CPU seconds per second of steady load
    rss_mb: float = 0.0
    threads: int = 0
    memory_per_client_kib: float | None = None
    harness_lateness_p99_ms: float = 0.0
    harness_cpu_share: float = 0.0  #: the busiest worker's CPU seconds per second
    harness_bound: bool = False  #: the harness, not the server, limited this run
    disconnected: int = 0
    errors: list[str] = field(default_factory=list)
    failed: str = ""  #: why this repetition could not run at all ("" when it ran)


def _split(names: list[str], workers: int) -> list[list[str]]:
    return [names[index::workers] for index in range(workers) if names[index::workers]]


def measure(
    impl: str,
    workload: str,
    clients: int,
    *,
    rate: float = 0.0,
    duration: float = 5.0,
    workers: int = 1,
    seed: int = 1,
    log_path: Path | None = None,
) -> Measurement:
    """Run one repetition: a fresh server, ``clients`` clients, the steady phase, the drain."""
    mode = {"saturate": "saturate", "connections": "idle"}.get(workload, "poisson")
    result = Measurement(impl, workload, clients, offered=rate * clients * (clients - 1) if mode == "poisson" else 0.0)
    names = [f"c{index}" for index in range(clients)]
    every = -(-clients // PROBES)  # ceil: every so many clients, one is a probe
    probe = {name: mode == "poisson" and index % every == 0 for index, name in enumerate(names)}
    window = min(WINDOW_LINES_PER_CLIENT * clients, WINDOW_LINES)
    round_lines = max(1, min(32, window // clients // (2 * max(1, clients - 1))))
    plans = [
        Plan(
            address=("", 0),
            names=share,
            mode=mode,
            rate=rate,
            duration=duration if mode != "idle" else 0.5,
            line_size=LINE_SIZE,
            seed=seed * 1000 + slot,
            window=window,
            round_lines=round_lines,
            probes=[probe[name] for name in share],
        )
        for slot, share in enumerate(_split(names, workers))
    ]
    with ServerProcess(impl, log_path) as server:
        assert server.address is not None
        for plan in plans:
            plan.address = server.address
        rss_before = server.rss_bytes()
        with _workers(plans, clients) as started:
            connected = sum(int(_receive(pipe, "connected", READY_TIMEOUT)) for _, pipe in started)  # type: ignore[arg-type]
            if connected != clients:
                raise BenchError(f"only {connected} of {clients} clients joined")
            for _, pipe in started:  # everyone is in: now let the join notices arrive
                pipe.send(("settle", None))  # type: ignore[attr-defined]
            for _, pipe in started:
                _receive(pipe, "ready", READY_TIMEOUT)
            rss_connected = server.rss_bytes()
            cpu_before = server.cpu_seconds()
            start_ns = time.monotonic_ns() + 200_000_000  # everyone starts together, 0.2 s from now
            for _, pipe in started:
                pipe.send(("go", start_ns))  # type: ignore[attr-defined]
            sent_by = [int(_receive(pipe, "sent", duration + READY_TIMEOUT)) for _, pipe in started]  # type: ignore[arg-type]
            steady = (time.monotonic_ns() - start_ns) / 1e9
            result.cpu_cores = (server.cpu_seconds() - cpu_before) / max(steady, 1e-9)
            result.threads = server.threads()
            result.rss_mb = server.rss_bytes() / 2**20
            total_sent = sum(sent_by)
            deadline_ns = time.monotonic_ns() + int(DRAIN_TIMEOUT * 1e9)
            dues = [total_sent * len(plan.names) - sent for plan, sent in zip(plans, sent_by, strict=True)]
            for (_, pipe), due in zip(started, dues, strict=True):
                pipe.send(("expect", due, deadline_ns))  # type: ignore[attr-defined]
            outcomes: list[Outcome] = [_receive(pipe, "done", DRAIN_TIMEOUT + READY_TIMEOUT) for _, pipe in started]  # type: ignore[misc]
    result.sent = total_sent
    result.due = sum(dues)
    result.received = sum(outcome.received for outcome in outcomes)
    result.loss = max(0, result.due - result.received) / result.due if result.due else 0.0
    in_steady = sum(outcome.received_in_steady for outcome in outcomes)
    steady_seconds = max(outcome.steady_seconds for outcome in outcomes)
    result.deliveries_per_s = (in_steady if mode == "saturate" else result.received) / max(steady_seconds, 1e-9)
    if workload == "connections":
        result.memory_per_client_kib = max(0, rss_connected - rss_before) / clients / 1024
    latencies = np.concatenate([np.frombuffer(outcome.latencies_ns, dtype=np.int64) for outcome in outcomes])
    if latencies.size:
        p50, p99, p999 = np.percentile(latencies, [50, 99, 99.9]) / 1e6
        result.p50_ms, result.p99_ms, result.p999_ms = float(p50), float(p99), float(p999)
        result.max_ms = float(latencies.max() / 1e6)
    lateness = np.concatenate([np.frombuffer(outcome.lateness_ns, dtype=np.int64) for outcome in outcomes])
    if lateness.size:
        result.harness_lateness_p99_ms = float(np.percentile(lateness, 99) / 1e6)
    result.harness_cpu_share = max(outcome.cpu_seconds / max(outcome.steady_seconds, 1e-9) for outcome in outcomes)
    late = result.harness_lateness_p99_ms
    result.harness_bound = (late > HARNESS_LATENESS_P99_MS and late > HARNESS_LATENESS_SHARE * (result.p99_ms or 0.0)) or (
        result.harness_cpu_share > HARNESS_CPU_SHARE and mode != "idle"
    )
    result.disconnected = sum(outcome.disconnected for outcome in outcomes)
    result.errors = [error for outcome in outcomes for error in outcome.errors][:5]
    return result


# -- cells: repetitions and medians -----------------------------------------------------------


@dataclass
class Cell:
    """The median of the repetitions of one (server, workload, clients, offered load)."""

    server: str
    workload: str
    clients: int
    offered: float
    runs: list[Measurement]
    median: dict[str, float | None] = field(default_factory=dict)
    published: bool = True  #: False when the harness was the bottleneck in most runs
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["runs"] = [asdict(run) for run in self.runs]
        return data


MEDIAN_FIELDS = (
    "deliveries_per_s", "loss", "p50_ms", "p99_ms", "p999_ms", "max_ms", "cpu_cores", "rss_mb", "threads",
    "memory_per_client_kib", "harness_lateness_p99_ms", "harness_cpu_share",
)


def summarize(runs: list[Measurement]) -> Cell:
    """The cell of ``runs``: medians over the repetitions that ran, and whether it may be published."""
    first = runs[0]
    cell = Cell(first.server, first.workload, first.clients, first.offered, runs)
    ran = [run for run in runs if not run.failed]
    for name in MEDIAN_FIELDS:
        values = [getattr(run, name) for run in ran if getattr(run, name) is not None]
        cell.median[name] = float(statistics.median(values)) if values else None
    bound = sum(run.harness_bound for run in ran)
    if not ran:
        cell.published = False
        cell.note = f"failed: {runs[0].failed}"
    elif bound * 2 > len(ran):
        cell.published = False
        cell.note = f"not published: the harness was the bottleneck in {bound} of {len(runs)} runs"
    elif any(run.disconnected for run in runs):
        cell.note = f"{max(run.disconnected for run in runs)} clients disconnected by the server"
    return cell


def run_cell(
    impl: str,
    workload: str,
    clients: int,
    *,
    rate: float = 0.0,
    repeat: int = 3,
    duration: float = 5.0,
    workers: int = 1,
    seed: int = 1,
    log_dir: Path | None = None,
    progress: Callable[[str], None] = lambda text: None,
) -> Cell:
    runs = []
    for attempt in range(repeat):
        log_path = log_dir / f"{impl}-{workload}-{clients}-{attempt}.log" if log_dir else None
        try:
            run = measure(impl, workload, clients, rate=rate, duration=duration, workers=workers, seed=seed + attempt, log_path=log_path)
        except BenchError as error:  # the server could not take this cell: say so, go on with the next
            run = Measurement(impl, workload, clients, offered=rate * clients * (clients - 1), failed=str(error))
        runs.append(run)
        progress(_one_line(run))
    return summarize(runs)


def _one_line(run: Measurement) -> str:
    if run.failed:
        return f"  {run.server:<9} {run.workload:<11} N={run.clients:<5} failed: {run.failed}"
    latency = f"p99 {run.p99_ms:.1f} ms" if run.p99_ms is not None else "no latency"
    flag = "  (harness-bound)" if run.harness_bound else ""
    return (
        f"  {run.server:<9} {run.workload:<11} N={run.clients:<5} {run.deliveries_per_s:>12,.0f} deliveries/s  "
        f"loss {run.loss:.2%}  {latency}  cpu {run.cpu_cores:.2f}{flag}"
    )
