"""The ``chatlab`` command line: one subcommand per tool of the kit.

Every subcommand checks its arguments before doing anything, says what was wrong
in one line and exits non-zero; nothing prints a traceback at a user.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable

from chatlab import __version__, protocol


def _number(kind: Callable[[str], float], accept: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    """An argparse type: parse ``kind`` from the text and insist on ``rule``."""

    def parse(text: str):  # type: ignore[no-untyped-def]
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not accept(value):  # written as "not accept" so that NaN is refused too
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


_positive_int = _number(int, lambda value: value >= 1, "at least 1")
_non_negative_int = _number(int, lambda value: value >= 0, "0 or more")
_positive_float = _number(float, lambda value: value > 0, "more than 0")
_non_negative_float = _number(float, lambda value: value >= 0, "0 or more")
_port = _number(int, lambda value: 0 <= value <= 65535, "between 0 and 65535")


def _add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=protocol.DEFAULT_HOST, help="address (default %(default)s)")
    parser.add_argument("--port", type=_port, default=protocol.DEFAULT_PORT, help="TCP port (default %(default)s)")


# -- chatlab server ---------------------------------------------------------------


def _add_server(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("server", help="run a chat server", description="Run a chat server.")
    _add_address(parser)
    parser.add_argument(
        "--impl",
        choices=["reference", "asyncio", "naive"],
        default="reference",
        help="reference: the correct threaded server; asyncio: its asyncio twin; naive: the original assignment, bugs included",
    )
    parser.add_argument("--max-clients", type=_positive_int, default=protocol.MAX_CLIENTS, help="open connections at most (default %(default)s)")
    parser.add_argument("--max-line", type=_positive_int, default=protocol.MAX_LINE, help="bytes per client line, LF included (default %(default)s)")
    parser.add_argument("--outbox", type=_positive_int, default=protocol.OUTBOX_LIMIT, help="bytes queued per client before it is cut off as too slow (default %(default)s)")
    parser.add_argument("--rate", type=_positive_float, help="flood limit: lines per second per client (off by default)")
    parser.add_argument("--burst", type=_positive_int, help="flood limit: lines a client may send at once")
    parser.add_argument("--name-timeout", type=_positive_float, default=protocol.NAME_TIMEOUT, help="seconds a new connection has to send its name (default %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log message texts too")
    parser.set_defaults(run=_run_server)


def _run_server(args: argparse.Namespace) -> int:
    if (args.rate is None) != (args.burst is None):
        return _fail("server", "--rate and --burst go together: give both, or neither")
    if args.max_line < 2:
        return _fail("server", "--max-line must be at least 2 (one byte and the LF)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.impl == "naive":
        from chatlab.naive import NaiveServer

        server = NaiveServer(args.host, args.port)
    else:
        from chatlab.aserver import AsyncChatServer
        from chatlab.server import ChatServer

        server_class = AsyncChatServer if args.impl == "asyncio" else ChatServer
        server = server_class(
            args.host,
            args.port,
            max_clients=args.max_clients,
            max_line=args.max_line,
            outbox_limit=args.outbox,
            rate=args.rate,
            burst=args.burst,
            name_timeout=args.name_timeout,
            verbose=args.verbose,
        )
    try:
        server.start()
    except OSError as error:
        return _fail("server", f"cannot listen on {args.host}:{args.port}: {error.strerror or error}")
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.set())
    try:
        stop_requested.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


# -- chatlab client -----------------------------------------------------------------


def _add_client(subparsers: argparse._SubParsersAction) -> None:
    from chatlab import terminal

    parser = subparsers.add_parser(
        "client",
        help="chat from the terminal",
        description="Chat from the terminal. With stdin not a terminal, send its lines and print what arrives.",
    )
    terminal.add_arguments(parser)
    parser.add_argument(
        "--impl",
        choices=["reference", "naive"],
        default="reference",
        help="naive: the original assignment's client, with its exit bug (ignores --name, --lang, --no-color)",
    )
    parser.set_defaults(run=_run_client)


def _run_client(args: argparse.Namespace) -> int:
    if args.impl == "naive":
        from chatlab.naive_client import main as naive_main

        return naive_main(args.host, args.port)
    from chatlab import terminal

    return terminal.main(args)


# -- chatlab demo -------------------------------------------------------------------


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="watch a few scripted users chat on a reference server",
        description="Start a reference server and a few scripted users who join, chat, whisper and leave; print the transcript.",
    )
    parser.add_argument("--users", type=_positive_int, default=4, help="how many scripted users (default %(default)s)")
    parser.add_argument("--rounds", type=_positive_int, default=3, help="how many rounds of chatter (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same chat (default %(default)s)")
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from chatlab import demo

    return demo.run(users=args.users, rounds=args.rounds, seed=args.seed)


# -- chatlab swarm -------------------------------------------------------------------


def _target(text: str) -> tuple[str, int]:
    host, separator, port = text.rpartition(":")
    if not separator or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, _port(port)


def _add_swarm(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "swarm",
        help="run a bot scenario against a server and check every delivery",
        description=(
            "Run a scenario of scripted bots against a chat server, check that nothing was lost, "
            "duplicated, reordered or leaked, and measure latency and fairness. "
            "Exit status: 0 when the checker found nothing, 1 when it found violations, 2 on a usage error."
        ),
    )
    parser.add_argument("scenario", help="a scenario file, such as bots/broadcast.py")
    parser.add_argument("--bots", type=_positive_int, help="how many bots in the scenario's mix (default: the scenario's)")
    parser.add_argument("--duration", type=_positive_float, help="seconds of steady phase (default: the scenario's)")
    parser.add_argument("--ramp-up", type=_non_negative_float, help="seconds over which the bots connect (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same run (default %(default)s)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--server", choices=["reference", "asyncio", "naive"], default="reference", help="start this server in-process (default %(default)s)")
    where.add_argument("--target", type=_target, metavar="HOST:PORT", help="test a server that is already running")
    parser.add_argument("--rate", type=_positive_float, help="override every bot's think time: this many tasks per second per bot, at Poisson moments")
    parser.add_argument("--workers", type=_non_negative_int, default=0, help="run the bots in this many separate processes (for hundreds of bots; default: in this process)")
    parser.add_argument("--network", metavar="PROFILE", help="connect every bot through a simulated network (see `chatlab sim --list`), unless the scenario places it on one")
    parser.add_argument("--out", help="folder for the report (default: runs/SCENARIO-TIME)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(run=_run_swarm)


def _run_swarm(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from chatlab.swarm.engine import ScenarioError, progress_printer
    from chatlab.swarm.runner import run

    out = args.out or str(Path("runs") / f"{Path(args.scenario).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        result = run(
            args.scenario,
            bots=args.bots,
            duration=args.duration,
            ramp_up=args.ramp_up,
            seed=args.seed,
            server=args.server,
            target=args.target,
            rate=args.rate,
            workers=args.workers,
            network=args.network,
            out=out,
            progress=None if args.quiet else progress_printer(),
        )
    except ScenarioError as error:
        print(f"chatlab swarm: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        return _fail("swarm", f"cannot run the swarm: {error}")
    print(result.summary_table())
    print(f"report: {result.report_dir / 'report.html'}")
    return 0 if result.ok else 1


# -- chatlab bench -------------------------------------------------------------------


def _names(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """A comma-separated list of names, each one of ``choices``."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"expected names from {', '.join(choices)}, got {text!r}")
        return names

    return parse


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or any(count < 2 for count in counts):
        raise argparse.ArgumentTypeError(f"expected client counts of at least 2, such as 10,200,1000; got {text!r}")
    return counts


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    from chatlab.bench import SERVERS, WORKLOADS

    parser = subparsers.add_parser(
        "bench",
        help="measure the servers side by side: latency, throughput, CPU, memory",
        description=(
            "Run each server in its own process under the same workloads, repeat every cell and report the "
            "medians, the reference server's targets as ratios to its asyncio twin, and charts. "
            f"Workloads: {', '.join(WORKLOADS)}. The full matrix takes about an hour; --quick takes under a minute."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="a tiny matrix that checks the bench works (no meaningful figures)")
    parser.add_argument("--servers", type=_names(SERVERS), help=f"comma-separated, from {', '.join(SERVERS)} (default: all)")
    parser.add_argument("--workloads", type=_names(WORKLOADS), help="comma-separated (default: all)")
    parser.add_argument("--clients", type=_counts, help="client counts for every chosen workload, such as 10,200,1000 (default: each workload's own)")
    parser.add_argument("--repeat", type=_positive_int, help="repetitions per cell; the median is reported (default 3)")
    parser.add_argument("--duration", type=_positive_float, help="seconds of steady load per repetition (default 5)")
    parser.add_argument("--workers", type=_positive_int, help="load-generating processes (default: 1 up to 200 clients, else 2)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the send schedules (default %(default)s)")
    parser.add_argument("--out", help="folder for bench.json, bench.md and the charts (default: runs/bench-TIME)")
    parser.set_defaults(run=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from chatlab.bench import SERVERS
    from chatlab.bench.suite import Matrix, run_bench

    matrix = Matrix.quick(args.servers or SERVERS) if args.quick else Matrix(servers=args.servers or SERVERS)
    if args.workloads:
        matrix.clients = {name: counts for name, counts in matrix.clients.items() if name in args.workloads}
    if args.clients:
        matrix.clients = {name: list(args.clients) for name in matrix.clients}
    for name in ("repeat", "duration", "workers"):
        if getattr(args, name) is not None:
            setattr(matrix, name, getattr(args, name))
    matrix.seed = args.seed
    out = Path(args.out or Path("runs") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        run_bench(matrix, out, echo=print)
    except OSError as error:
        return _fail("bench", f"cannot run the benchmark: {error}")
    return 0


# -- chatlab sim ---------------------------------------------------------------------


def _add_sim(subparsers: argparse._SubParsersAction) -> None:
    from chatlab.sim.network import PROFILES

    parser = subparsers.add_parser(
        "sim",
        help="put a simulated network between clients and a server",
        description=(
            "Relay TCP connections from --listen to --upstream through a simulated network: latency, jitter, "
            "bandwidth, fragments, coalescing, stalls, slow reading and faults, each direction on its own. "
            "Point `chatlab client` or `nc` at the --listen address to feel it."
        ),
    )
    parser.add_argument("--list", action="store_true", help="print every profile with its exact parameters, and exit")
    parser.add_argument("--listen", type=_target, default=("127.0.0.1", 1235), metavar="HOST:PORT", help="where clients connect (default 127.0.0.1:1235)")
    parser.add_argument("--upstream", type=_target, default=("127.0.0.1", protocol.DEFAULT_PORT), metavar="HOST:PORT", help=f"the real server (default 127.0.0.1:{protocol.DEFAULT_PORT})")
    parser.add_argument("--profile", choices=list(PROFILES), default="lan", help="the network to start from (default %(default)s)")
    parser.add_argument("--latency", type=_non_negative_float, metavar="SECONDS", help="both directions: the least delay of every byte")
    parser.add_argument("--jitter", type=_non_negative_float, metavar="SECONDS", help="both directions: extra random delay (uniform 0..SECONDS unless jitter_distribution=normal)")
    parser.add_argument("--bandwidth", type=_non_negative_float, metavar="BYTES_PER_S", help="both directions: the link's capacity (0: no limit)")
    parser.add_argument("--fragment", metavar="MIN,MAX", help="both directions: cut every write into pieces of MIN to MAX bytes")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="any setting, for both directions (latency=0.1) or one (down.fault=reset); repeatable; see --list for the names",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same network (default %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not log connections, windows and faults")
    parser.set_defaults(run=_run_sim)


def _run_sim(args: argparse.Namespace) -> int:
    from chatlab.sim import NetworkError, NetworkSimulator, describe_profiles, get_profile

    if args.list:
        print(describe_profiles())
        return 0
    shortcuts = [f"{name}={value}" for name, value in (
        ("latency", args.latency), ("jitter", args.jitter), ("bandwidth", args.bandwidth), ("fragment", args.fragment),
    ) if value is not None]
    try:
        network = get_profile(args.profile).with_settings(shortcuts + args.set)
    except NetworkError as error:
        print(f"chatlab sim: {error}", file=sys.stderr)
        return 2

    def show(event) -> None:  # type: ignore[no-untyped-def]
        span = f" for {event.end - event.start:.3f} s" if event.end > event.start else ""
        where = f" {event.direction}" if event.direction else ""
        print(f"connection {event.connection} {event.client[0]}:{event.client[1]}{where}: {event.kind}{span}"
              f"{' (' + event.detail + ')' if event.detail else ''}", file=sys.stderr, flush=True)

    simulator = NetworkSimulator(args.upstream, network, host=args.listen[0], port=args.listen[1], seed=args.seed,
                                 on_event=None if args.quiet else show)
    try:
        simulator.start()
    except OSError as error:
        return _fail("sim", f"cannot listen on {args.listen[0]}:{args.listen[1]}: {error.strerror or error}")
    host, port = simulator.address
    print(f"chatlab sim: {host}:{port} -> {args.upstream[0]}:{args.upstream[1]} through\n{network.describe()}",
          file=sys.stderr, flush=True)
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.set())
    try:
        stop_requested.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


# -- chatlab ex ----------------------------------------------------------------------


def _add_ex(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ex",
        help="the classroom exercises: list, check, hint, watch, reset, next",
        description="Work through the exercises from the seed's server to the reference one. "
        "Exit status: 0 when the check passed, 1 when it failed, 2 on a usage error.",
    )
    parser.add_argument("--exercises", metavar="DIR", help="the exercises folder (default: ./exercises)")
    commands = parser.add_subparsers(dest="ex_command", metavar="COMMAND", required=True)
    commands.add_parser("list", help="every exercise with its status, and a progress bar")
    check = commands.add_parser("check", help="run an exercise's checks (default: the first one not done)")
    check.add_argument("exercise", nargs="?", help="number or name")
    hint = commands.add_parser("hint", help="the next hint for an exercise, one at a time")
    hint.add_argument("exercise", nargs="?", help="number or name (default: the current one)")
    commands.add_parser("watch", help="check the current exercise on every save (Enter checks now, q quits)")
    reset = commands.add_parser("reset", help="put an exercise's starter back, keeping your version as a backup")
    reset.add_argument("exercise", help="number or name")
    reset.add_argument("--yes", action="store_true", help="do not ask first")
    commands.add_parser("next", help="what to do next")
    parser.set_defaults(run=_run_ex)


def _run_ex(args: argparse.Namespace) -> int:
    from chatlab.exercises.runner import main as ex_main

    return ex_main(args.exercises, args.ex_command, getattr(args, "exercise", None), getattr(args, "yes", False))


# -- chatlab grade -------------------------------------------------------------------


def _add_grade(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "grade",
        help="grade a chat server against PROTOCOL.md: scorecard, results.json, report.html",
        description=(
            "Run the conformance checks against a chat server, by category, with points from a rubric. "
            "Give a running server (--target), a command that starts one on {port} (--cmd: a fresh server "
            "per category), or a folder of submissions (--batch, with --cmd run inside each). "
            "Exit status: 0 with full marks, 1 otherwise, 2 on a usage error."
        ),
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", type=_target, metavar="HOST:PORT", help="grade a server that is already running")
    where.add_argument("--cmd", metavar="COMMAND", help='start the server with this command, e.g. "python server.py --port {port}" ({python} is this Python)')
    where.add_argument("--list-checks", action="store_true", help="list the checks of the rubric and exit")
    parser.add_argument("--batch", metavar="FOLDER", help="grade every subfolder of FOLDER with --cmd run inside it; write one CSV")
    parser.add_argument("--rubric", metavar="FILE", help="points per check (TOML; default: the shipped rubric)")
    parser.add_argument("--categories", metavar="A,B", help="grade only these categories (comma-separated)")
    parser.add_argument("--seed", type=int, default=1, help="seed for names and swarms (default %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="write Gradescope's results.json here")
    parser.add_argument("--html", metavar="FILE", default="report.html", help="write the HTML report here (default %(default)s)")
    parser.add_argument("--out", metavar="FOLDER", default="grades", help="batch mode: folder for grades.csv and the reports (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(run=_run_grade)


def _run_grade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from chatlab.grade import checks
    from chatlab.grade.grader import GradeError, Rubric, grade, grade_batch

    try:
        rubric = Rubric.load(args.rubric)
        categories = [word.strip() for word in args.categories.split(",") if word.strip()] if args.categories else None
        if categories:
            rubric = rubric.only(categories)
        if args.list_checks:
            known = checks.by_key()
            for key, points in rubric.points.items():
                print(f"{key:<32} {points:>4g}  {known[key].title}")
            return 0
        if args.batch:
            if not args.cmd:
                return _fail("grade", "--batch needs --cmd, the command that starts one submission's server")
            csv_path = grade_batch(Path(args.batch), args.cmd, Path(args.out), rubric=rubric, seed=args.seed, progress=not args.quiet)
            print(Path(csv_path).read_text(encoding="utf-8"), end="")
            print(f"grades: {csv_path}")
            return 0
        result = grade(target=args.target, command=args.cmd, rubric=rubric, seed=args.seed, progress=not args.quiet)
        result.write(args.json, args.html)
    except GradeError as error:
        print(f"chatlab grade: {error}", file=sys.stderr)
        return 2
    print(result.scorecard())
    if args.json:
        print(f"results: {args.json}")
    print(f"report: {args.html}")
    return 0 if result.score == result.max_score else 1


# -- entry point ---------------------------------------------------------------------


def _fail(command: str, message: str) -> int:
    print(f"chatlab {command}: {message}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, for ``main`` and for tests."""
    parser = argparse.ArgumentParser(prog="chatlab", description="chatlab: a lab kit for concurrent network programming.")
    parser.add_argument("--version", action="version", version=f"chatlab {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in (_add_server, _add_client, _add_demo, _add_swarm, _add_bench, _add_sim, _add_ex, _add_grade):
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
