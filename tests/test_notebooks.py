"""The walkthrough notebooks: committed clean, and each one runs top to bottom in a real kernel.

Each notebook is executed with nbclient in a ``python3`` kernel (the ipykernel of
the virtualenv running the tests, which the first added cell checks) at its default sizes, from the ``notebooks``
folder as students open it. Two cells are added around it at test time: the first
remembers which threads the kernel had, the last fails if the notebook left any
thread of its own running (a server, a client's receiver, a simulator), after
giving them a few seconds (``grace``) to finish. Every thread chatlab starts has a name; the
kernel itself may start anonymous daemon threads (``Thread-N``) mid-run, and
those are not the notebook's.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = ["01_tour", "02_seed_bugs", "03_latency", "04_fairness", "05_network", "06_scaling"]
CELL_TIMEOUT_S = 120  # a generous bound on one cell, so a hung server fails the test instead of hanging it

BEFORE = """\
import sys as _sys, threading as _threading
assert _sys.prefix == {prefix}, f"the kernel runs in {{_sys.prefix}}, not in the tests' environment {prefix}"
_threads_before = set(_threading.enumerate())
"""

AFTER = """\
import re as _re, threading as _threading, time as _time
def _ours(thread):
    # every thread chatlab starts is named; the kernel may start anonymous daemons (Thread-N) of its own
    return not thread.daemon or not _re.fullmatch(r"Thread-\\d+( \\(.*\\))?", thread.name)
_deadline = _time.monotonic() + {grace}
for _thread in set(_threading.enumerate()) - _threads_before:
    if _ours(_thread):
        _thread.join(max(0.0, _deadline - _time.monotonic()))
_left = sorted(_t.name for _t in set(_threading.enumerate()) - _threads_before if _t.is_alive() and _ours(_t))
assert not _left, f"threads still running at the end of the notebook: {_left}"
"""

# A cell that draws its own chart (rather than calling one of the kit's plot_* functions, which label theirs).
DRAWS = re.compile(r"\.subplots\(|\.add_subplot\(")


def _load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def test_every_walkthrough_is_there() -> None:
    assert [path.stem for path in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_clean(path: Path) -> None:
    """No outputs, a parameters cell for papermill, and every hand-drawn chart titled and labelled."""
    notebook = _load(path)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    dirty = [index for index, cell in enumerate(code) if cell.outputs or cell.execution_count is not None]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; strip them before committing"
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one code cell tagged 'parameters'"
    charts = 0
    for cell in code:
        if DRAWS.search(cell.source):
            charts += 1
            for call in ("set_title", "set_xlabel", "set_ylabel"):
                assert call in cell.source, f"{path.name}: a chart without {call}:\n{cell.source}"
            if cell.source.count("label=") > 1:
                assert "legend(" in cell.source, f"{path.name}: several series and no legend:\n{cell.source}"
        charts += cell.source.count(".plot_")
    assert charts, f"{path.name}: a walkthrough with no chart"
    assert "exercises/" in "".join(cell.source for cell in notebook.cells), f"{path.name}: no pointer to an exercise"


def _execute(notebook: nbformat.NotebookNode, grace: float = 5.0) -> None:
    """Run ``notebook`` in a fresh python3 kernel from the notebooks folder, between the two thread-check cells."""
    notebook.cells.insert(0, nbformat.v4.new_code_cell(BEFORE.format(prefix=repr(sys.prefix))))
    notebook.cells.append(nbformat.v4.new_code_cell(AFTER.replace("{grace}", repr(grace))))
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_and_leaves_nothing_running(path: Path) -> None:
    try:
        _execute(_load(path))
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{error}")


def test_a_server_left_running_is_caught() -> None:
    """The thread check is not a formality: a notebook that never stops its server fails it."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from chatlab.server import ChatServer\n"
        "server = ChatServer(host='127.0.0.1', port=0).start()\n"
        "_threading = None  # a notebook may even shadow the check's names\n"
    )])
    with pytest.raises(CellExecutionError, match="threads still running.*accept"):
        _execute(notebook, grace=0.5)
