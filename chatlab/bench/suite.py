"""The benchmark's workloads and matrix: which cells to run, in which order, and the sweep.

Six workloads, each a question an instructor or a student asks:

=============  =====================================================================
``classroom``  N clients, each sending a line every 5 s on average (Poisson): a real
               class. Deliveries per second grow as N squared: 1000 clients make
               about 200,000 deliveries/s.
``busy``       N clients at 5 lines/s each: a lively room.
``fixed``      20,000 deliveries/s in total, however many clients share them: what
               does the *number* of connections cost, at the same work?
``saturate``   every client sends as fast as the server takes lines (pipelined, with a
               bounded window): the most deliveries per second the server can do.
``connections`` N idle clients: memory per client and threads.
``sweep``      the offered load stepped up, at one N, until p99 passes 100 ms: the knee.
=============  =====================================================================

Every cell is measured for every server in the same run, one after the other, so
the ratios between servers compare like with like on the same machine.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chatlab.bench import SERVERS, WORKLOADS, report
from chatlab.bench.runner import FIXED_DELIVERIES, KNEE_P99_MS, Cell, run_cell


def rate_per_client(workload: str, clients: int, offered: float = 0.0) -> float:
    """Lines per second each client sends, so that the workload offers what it promises."""
    others = max(1, clients - 1)
    if workload == "classroom":
        return 0.2
    if workload == "busy":
        return 5.0
    if workload == "fixed":
        return FIXED_DELIVERIES / (clients * others)
    if workload == "sweep":
        return offered / (clients * others)
    return 0.0


@dataclass
class Matrix:
    """What one ``chatlab bench`` run measures."""

    servers: Sequence[str] = SERVERS
    #: clients per workload; a workload that is not a key is not run
    clients: dict[str, list[int]] = field(
        default_factory=lambda: {
            "classroom": [10, 50, 200, 1000],
            "busy": [10, 50, 200],
            "fixed": [10, 50, 200, 1000],
            "saturate": [50, 200, 1000],
            "connections": [10, 200, 1000],
            "sweep": [200],
        }
    )
    #: the sweep's offered loads (deliveries/s), tried in order until p99 passes the knee
    sweep_steps: list[float] = field(
        default_factory=lambda: [10_000, 25_000, 50_000, 100_000, 200_000, 300_000, 400_000, 600_000, 800_000]
    )
    repeat: int = 3
    duration: float = 5.0  #: seconds of steady load per repetition
    workers: int | None = None  #: load processes; None picks 1 up to 200 clients, else 2
    seed: int = 1

    @classmethod
    def quick(cls, servers: Sequence[str] = SERVERS) -> Matrix:
        """A small matrix that runs in well under a minute: it checks the bench, not the servers."""
        return cls(
            servers=servers,
            clients={workload: [8] for workload in WORKLOADS},
            sweep_steps=[500, 2_000],
            repeat=1,
            duration=0.5,
            workers=1,
        )

    def validate(self) -> None:
        unknown = [server for server in self.servers if server not in SERVERS]
        if unknown:
            raise ValueError(f"unknown server {unknown[0]!r}: choose from {', '.join(SERVERS)}")
        unknown = [workload for workload in self.clients if workload not in WORKLOADS]
        if unknown:
            raise ValueError(f"unknown workload {unknown[0]!r}: choose from {', '.join(WORKLOADS)}")
        for workload, counts in self.clients.items():
            if any(count < 2 for count in counts):
                raise ValueError(f"{workload}: a chat needs at least 2 clients")

    def workers_for(self, clients: int) -> int:
        if self.workers is not None:
            return min(self.workers, clients)
        return 1 if clients <= 200 else 2


def run_matrix(matrix: Matrix, log_dir: Path | None = None, progress: Callable[[str], None] = lambda text: None) -> list[Cell]:
    """Run every cell of ``matrix``, servers side by side within each cell; return the cells."""
    matrix.validate()
    cells: list[Cell] = []
    for workload in WORKLOADS:
        for clients in matrix.clients.get(workload, []):
            if workload == "sweep":
                cells += _sweep(matrix, clients, log_dir, progress)
                continue
            progress(f"{workload}, {clients} clients")
            for server in matrix.servers:
                cells.append(
                    run_cell(
                        server,
                        workload,
                        clients,
                        rate=rate_per_client(workload, clients),
                        repeat=matrix.repeat,
                        duration=matrix.duration,
                        workers=matrix.workers_for(clients),
                        seed=matrix.seed,
                        log_dir=log_dir,
                        progress=progress,
                    )
                )
    return cells


def _sweep(matrix: Matrix, clients: int, log_dir: Path | None, progress: Callable[[str], None]) -> list[Cell]:
    """Step the offered load up for each server until its p99 passes the knee (or it loses lines)."""
    cells = []
    for server in matrix.servers:
        for offered in matrix.sweep_steps:
            progress(f"sweep, {clients} clients, {offered:,.0f} deliveries/s offered")
            cell = run_cell(
                server,
                "sweep",
                clients,
                rate=rate_per_client("sweep", clients, offered),
                repeat=matrix.repeat,
                duration=matrix.duration,
                workers=matrix.workers_for(clients),
                seed=matrix.seed,
                log_dir=log_dir,
                progress=progress,
            )
            cells.append(cell)
            p99 = cell.median.get("p99_ms")
            if not cell.published or (p99 is not None and p99 > KNEE_P99_MS) or (cell.median.get("loss") or 0) > 0:
                break
    return cells


def run_bench(matrix: Matrix, out: Path, echo: Callable[[str], None] = print) -> list[Cell]:
    """Run ``matrix``, print the table and the targets, and write the report into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cells = run_matrix(matrix, log_dir=out / "logs", progress=echo)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "repeat": matrix.repeat,
        "duration_s": matrix.duration,
        "seed": matrix.seed,
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
    report.write(out, cells, meta)
    echo("")
    echo(report.table(cells))
    echo("")
    echo("Targets (reference server against its asyncio twin, same run):")
    echo(report.targets_text(report.targets(cells)))
    for server, load in report.knees(cells).items():
        echo(f"knee of {server}: " + (f"p99 under {KNEE_P99_MS:.0f} ms up to {load:,.0f} deliveries/s" if load else "not under the knee at any step"))
    echo(f"report: {out / 'bench.md'}")
    return cells
