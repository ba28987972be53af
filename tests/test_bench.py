"""``chatlab bench``: the quick matrix runs every server end to end and writes a well-formed report.

These tests check the benchmark's code, never a server's speed: no figure is
compared with a threshold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chatlab.bench import SERVERS, WORKLOADS
from chatlab.bench.runner import Measurement, summarize
from chatlab.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One ``chatlab bench --quick`` for the whole module, as a user runs it (about 40 s)."""
    out = tmp_path_factory.mktemp("bench")
    finished = subprocess.run(
        [sys.executable, "-m", "chatlab", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    return finished, out


@pytest.mark.timeout(300)
def test_quick_bench_measures_every_server_under_every_workload(quick_run) -> None:
    finished, out = quick_run
    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr and "Warning" not in finished.stderr, finished.stderr
    document = json.loads((out / "bench.json").read_text())
    cells = document["cells"]
    assert {(cell["server"], cell["workload"]) for cell in cells} == {(s, w) for s in SERVERS for w in WORKLOADS}
    for cell in cells:
        for run in cell["runs"]:
            assert run["failed"] == "", f"{cell['server']} {cell['workload']}: {run['failed']}"
            assert run["threads"] > 0 and run["rss_mb"] > 0
    for cell in cells:
        if cell["workload"] in ("busy", "fixed", "sweep"):
            run = cell["runs"][0]
            assert run["sent"] > 0 and run["due"] == run["sent"] * (cell["clients"] - 1)
            assert run["received"] > 0 and run["p99_ms"] is not None
            assert run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"] <= run["max_ms"]
            if cell["server"] != "naive":  # the naive server merges lines, which counts as loss
                assert run["loss"] == 0.0, f"{cell['server']} {cell['workload']} lost lines"
        if cell["workload"] == "saturate":
            assert cell["median"]["deliveries_per_s"] > 0
        if cell["workload"] == "connections":
            assert cell["median"]["memory_per_client_kib"] is not None


@pytest.mark.timeout(300)
def test_quick_bench_writes_the_report_and_prints_the_table(quick_run) -> None:
    finished, out = quick_run
    for chart in ("latency_vs_clients.png", "latency_vs_load.png", "saturation.png", "memory.png"):
        assert (out / chart).read_bytes()[:8] == PNG_MAGIC
    markdown = (out / "bench.md").read_text()
    assert "| server | workload | N |" in markdown
    assert markdown.count("\n| reference |") == sum(1 for line in finished.stdout.splitlines() if line.startswith("reference "))
    document = json.loads((out / "bench.json").read_text())
    assert [target["name"] for target in document["targets"]][:3] == ["p99 at busy N=200", "p99 at classroom N=1000", "p99 at fixed N=1000"]
    assert all(target["met"] is None for target in document["targets"])  # the quick matrix measures none of them
    assert "Targets (reference server against its asyncio twin" in finished.stdout
    assert f"report: {out / 'bench.md'}" in finished.stdout
    assert list((out / "logs").glob("reference-busy-*.log"))


def _run(harness_bound: bool, p99: float) -> Measurement:
    return Measurement("reference", "busy", 10, 450.0, p99_ms=p99, harness_bound=harness_bound)


def test_a_cell_where_the_harness_was_the_bottleneck_is_not_published() -> None:
    cell = summarize([_run(True, 30.0), _run(True, 31.0), _run(False, 3.0)])
    assert not cell.published and "harness" in cell.note
    assert cell.median["p99_ms"] == 30.0  # still shown, as the median of what ran


def test_a_cell_is_published_when_most_runs_were_not_harness_bound() -> None:
    cell = summarize([_run(False, 3.0), _run(True, 31.0), _run(False, 4.0)])
    assert cell.published and cell.median["p99_ms"] == 4.0


def test_failed_repetitions_are_left_out_of_the_medians() -> None:
    failed = Measurement("naive", "busy", 10, 450.0, failed="the naive server exited with status 1 before listening")
    cell = summarize([failed, _run(False, 5.0)])
    assert cell.published and cell.median["p99_ms"] == 5.0
    cell = summarize([failed])
    assert not cell.published and cell.note.startswith("failed: the naive server exited")


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["bench", "--servers", "reference,nginx"], "expected names from reference, asyncio, naive"),
        (["bench", "--workloads", "lunch"], "expected names from classroom"),
        (["bench", "--clients", "1"], "expected client counts of at least 2"),
        (["bench", "--repeat", "0"], "--repeat"),
    ],
)
def test_bench_rejects_bad_options_with_a_clear_message(argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err
